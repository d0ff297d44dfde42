// Hysteresis: one incident is one finding, not a thousand. A detection that keeps firing for the
// same subject (and, for per-host detections, the same host) belongs to the incident already open;
// an incident closes after a quiet spell as long as its detection's window (forbidden_address,
// which has none: QUIET_MS), and the next firing after that opens a new one.
// Pure: time comes in with each call.
import type { SubjectKey } from './baseline.ts';
import type { Finding } from './detections.ts';
import type { MonitoringPolicy } from './policy.ts';

/** How long forbidden_address stays quiet about the same host once it has told. */
export const QUIET_MS = 10 * 60_000;

export class Incidents {
  /** Open incidents: key → time of the latest firing. */
  readonly #open = new Map<string, { last: number; quietMs: number }>();
  #checks = 0;

  /** Whether `finding` opens an incident (report it) or belongs to an open one (count it only). */
  opens(finding: Finding, policy: MonitoringPolicy): boolean {
    const key = incidentKey(finding);
    const quietMs = quietFor(finding, policy);
    const open = this.#open.get(key);
    this.#open.set(key, { last: finding.time, quietMs });
    if (++this.#checks % 1024 === 0) this.#prune(finding.time);
    return open === undefined || finding.time - open.last > open.quietMs;
  }

  get size(): number {
    return this.#open.size;
  }

  #prune(now: number): void {
    for (const [key, open] of this.#open) if (now - open.last > open.quietMs) this.#open.delete(key);
  }
}

function incidentKey(finding: Finding): string {
  const scope =
    finding.detection === 'new_destination' ||
    finding.detection === 'forbidden_address' ||
    finding.detection === 'new_method'
      ? (finding.evidence.hosts[0] ?? '')
      : '';
  return [subjectId(finding.subject), finding.detection, scope].join('\0');
}

export function subjectId(key: SubjectKey): string {
  return [key.tenant, key.agent, key.user ?? ''].join('\0');
}

function quietFor(finding: Finding, policy: MonitoringPolicy): number {
  switch (finding.detection) {
    case 'destination_burst':
      return policy.destinationBurst?.withinMs ?? QUIET_MS;
    case 'denial_spike':
      return policy.denialSpike?.withinMs ?? QUIET_MS;
    case 'bytes_out_spike':
      return policy.bytesOutSpike?.withinMs ?? QUIET_MS;
    default:
      return QUIET_MS;
  }
}
