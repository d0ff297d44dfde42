// The detections (SPEC.md, "Monitoring and containment"; docs/monitoring.md): each a small, named,
// pure function of one subject's baseline, the event just learnt and the tenant's policy, which
// says in words what it saw and keeps the evidence (hosts, counts, the requests and tokens
// involved). Whether a finding opens a new incident or belongs to one already open is decided
// after them (incidents.ts), so these may fire on every event that meets their condition.
import type { Baseline, Mark, Novelty, Observed, SubjectKey } from './baseline.ts';
import type { DetectionName, MonitoringPolicy, Response } from './policy.ts';

export interface Evidence {
  /** The hosts concerned (the new ones of a burst, the host of a first contact). */
  readonly hosts: readonly string[];
  /** How many times the condition held within the window (new hosts, denials, bytes). */
  readonly count: number;
  /** The policy's threshold it was measured against; null where there is none. */
  readonly threshold: number | null;
  readonly windowMs: number | null;
  /** The requests that make it up (the latest, at most MAX_IDS). */
  readonly requestIds: readonly string[];
  /** The tokens involved: what `revoke` revokes. */
  readonly jtis: readonly string[];
}

export interface Finding {
  readonly detection: DetectionName;
  readonly response: Response;
  readonly subject: SubjectKey;
  /** When the condition was met (ms since the epoch, the event's time). */
  readonly time: number;
  /** What happened, in an operator's words. */
  readonly summary: string;
  readonly evidence: Evidence;
}

/** A finding names at most this many requests (the latest). */
export const MAX_IDS = 20;

/**
 * Below this many bytes in a window, an agent's own baseline is too thin to multiply: an agent
 * that sent nothing for a day and then 10 kB is not a spike.
 */
export const MIN_BYTES_BASELINE = 64_000;

interface Context {
  readonly baseline: Baseline;
  readonly event: Observed;
  readonly novelty: Novelty;
  readonly policy: MonitoringPolicy;
}

type Detection = (context: Context) => Finding | undefined;

/** Every detection the event meets, in DETECTIONS order. */
export function detect(
  baseline: Baseline,
  event: Observed,
  novelty: Novelty,
  policy: MonitoringPolicy,
): Finding[] {
  const context: Context = { baseline, event, novelty, policy };
  const findings: Finding[] = [];
  for (const detection of ORDER) {
    const finding = detection(context);
    if (finding !== undefined) findings.push(finding);
  }
  return findings;
}

const newDestination: Detection = ({ baseline, event, novelty, policy }) => {
  const rule = policy.newDestination;
  if (rule === undefined || novelty.learning || !novelty.newHost || event.host === null) return undefined;
  return finding('new_destination', rule.response, baseline, event, {
    summary: `${who(baseline.key)} contacted ${event.host} for the first time since its learning period ended (${outcome(event)})`,
    hosts: [event.host],
    count: 1,
    threshold: null,
    windowMs: null,
    marks: [mark(event)],
  });
};

const destinationBurst: Detection = ({ baseline, event, novelty, policy }) => {
  const rule = policy.destinationBurst;
  if (rule === undefined || novelty.learning || !novelty.newHost) return undefined;
  const recent = baseline.newHosts; // kept for rule.withinMs (monitor.ts)
  if (recent.length < rule.newHosts) return undefined;
  const hosts = recent.map((m) => m.host ?? '');
  return finding('destination_burst', rule.response, baseline, event, {
    summary:
      `${who(baseline.key)} contacted ${recent.length} hosts it had never contacted before within ` +
      `${words(rule.withinMs)} (the policy allows ${rule.newHosts - 1}): ${hosts.join(', ')}`,
    hosts,
    count: recent.length,
    threshold: rule.newHosts,
    windowMs: rule.withinMs,
    marks: recent,
  });
};

const denialSpike: Detection = ({ baseline, event, policy }) => {
  const rule = policy.denialSpike;
  if (rule === undefined || event.decision !== 'denied') return undefined;
  const recent = baseline.recentDenials; // kept for rule.withinMs
  if (recent.length < rule.denials) return undefined;
  const hosts = [...new Set(recent.map((m) => m.host).filter((h): h is string => h !== null))];
  return finding('denial_spike', rule.response, baseline, event, {
    summary:
      `${who(baseline.key)} was refused ${recent.length} times within ${words(rule.withinMs)} ` +
      `(threshold ${rule.denials}), toward ${hosts.length === 0 ? 'no named host' : hosts.join(', ')}`,
    hosts,
    count: recent.length,
    threshold: rule.denials,
    windowMs: rule.withinMs,
    marks: recent,
  });
};

const bytesOutSpike: Detection = ({ baseline, event, novelty, policy }) => {
  const rule = policy.bytesOutSpike;
  if (rule === undefined || novelty.learning || event.bytesOut === 0) return undefined;
  const recent = baseline.recentBytesSum;
  // The agent's own rate before this window, scaled to one window.
  const before = baseline.bytesOut - recent;
  const span = event.time - rule.withinMs - baseline.firstSeen;
  const usual = span > 0 ? (before / span) * rule.withinMs : 0;
  const threshold = rule.factor * Math.max(usual, MIN_BYTES_BASELINE);
  if (recent <= threshold) return undefined;
  const seconds = baseline.recentBytes;
  return finding('bytes_out_spike', rule.response, baseline, event, {
    summary:
      `${who(baseline.key)} sent ${bytes(recent)} within ${words(rule.withinMs)}, more than ${rule.factor}× ` +
      `its usual ${bytes(usual)} per ${words(rule.withinMs)}`,
    hosts: event.host === null ? [] : [event.host],
    count: recent,
    threshold: Math.round(threshold),
    windowMs: rule.withinMs,
    marks: seconds.map((s) => ({ time: s.time, requestId: s.requestId, jti: s.jti, host: null })),
  });
};

const forbiddenAddress: Detection = ({ baseline, event, policy }) => {
  const rule = policy.forbiddenAddress;
  if (rule === undefined || event.reason !== 'forbidden_address') return undefined;
  const host = event.host ?? 'a destination';
  return finding('forbidden_address', rule.response, baseline, event, {
    summary: `${who(baseline.key)} asked for ${host}, which resolved to an address the gateway refuses (private, loopback, metadata or reserved)`,
    hosts: event.host === null ? [] : [event.host],
    count: 1,
    threshold: null,
    windowMs: null,
    marks: [mark(event)],
  });
};

/**
 * The detection of our own choosing (docs/monitoring.md): the first use of a method on a host the
 * subject already knows, after learning — typically the first POST or PUT to a host it only ever
 * read from. A manipulated agent that cannot reach a new host exfiltrates through one it may
 * reach, by writing to it; an honest agent's methods toward a host rarely change.
 */
const newMethod: Detection = ({ baseline, event, novelty, policy }) => {
  const rule = policy.newMethod;
  if (rule === undefined || novelty.learning || !novelty.newMethod || event.host === null) return undefined;
  const method = (event.method ?? '').toUpperCase();
  const known = baseline.hosts.get(event.host)?.methods.filter((m) => m !== method) ?? [];
  return finding('new_method', rule.response, baseline, event, {
    summary:
      `${who(baseline.key)} used ${method} toward ${event.host} for the first time since its learning period ` +
      `ended (it had used ${known.join(', ') || 'no other method'}; ${outcome(event)})`,
    hosts: [event.host],
    count: 1,
    threshold: null,
    windowMs: null,
    marks: [mark(event)],
  });
};

const ORDER: readonly Detection[] = [
  newDestination,
  destinationBurst,
  denialSpike,
  bytesOutSpike,
  forbiddenAddress,
  newMethod,
];

function finding(
  detection: DetectionName,
  response: Response,
  baseline: Baseline,
  event: Observed,
  found: {
    summary: string;
    hosts: readonly string[];
    count: number;
    threshold: number | null;
    windowMs: number | null;
    marks: readonly Mark[];
  },
): Finding {
  const latest = found.marks.slice(-MAX_IDS);
  const jtis = [...new Set(found.marks.map((m) => m.jti).filter((j): j is string => j !== null))];
  return {
    detection,
    response,
    subject: baseline.key,
    time: event.time,
    summary: found.summary,
    evidence: {
      hosts: found.hosts,
      count: found.count,
      threshold: found.threshold,
      windowMs: found.windowMs,
      requestIds: latest.map((m) => m.requestId),
      jtis,
    },
  };
}

function mark(event: Observed): Mark {
  return { time: event.time, requestId: event.requestId, jti: event.jti, host: event.host };
}

function who(key: SubjectKey): string {
  return key.user === null ? `agent ${key.agent}` : `agent ${key.agent} acting for ${key.user}`;
}

function outcome(event: Observed): string {
  return event.decision === 'allowed' ? 'allowed' : `refused: ${event.reason ?? 'denied'}`;
}

function words(ms: number): string {
  if (ms % 3_600_000 === 0) return plural(ms / 3_600_000, 'hour');
  if (ms % 60_000 === 0) return plural(ms / 60_000, 'minute');
  return plural(Math.round(ms / 1000), 'second');
}

function plural(n: number, unit: string): string {
  return n === 1 ? `1 ${unit}` : `${n} ${unit}s`;
}

function bytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${Math.round(n)} bytes`;
}
