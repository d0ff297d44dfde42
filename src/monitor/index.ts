// Monitoring's pure core (SPEC.md, "Monitoring and containment"; docs/monitoring.md): baselines
// learnt from decision events, the detections, hysteresis, and the policy's numbers.
// Pure: no I/O, no clock. The runtime feeds it and carries out the responses.
export type { BaselineSnapshot, HostSeen, SubjectKey } from './baseline.ts';
export { Baseline } from './baseline.ts';
export { type Evidence, type Finding, MIN_BYTES_BASELINE } from './detections.ts';
export { QUIET_MS } from './incidents.ts';
export { Monitor, type MonitoredEvent } from './monitor.ts';
export {
  DEFAULT_LEARNING_PERIOD_MS,
  DETECTIONS,
  type DetectionName,
  type MonitoringPolicy,
  parseDuration,
  parseSize,
  RESPONSES,
  type Response,
} from './policy.ts';
