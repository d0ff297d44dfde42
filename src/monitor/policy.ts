// A tenant's `monitoring:` policy as the detections use it (SPEC.md, "Monitoring and containment"):
// durations in milliseconds, sizes in bytes, every detection optional. Parsing the YAML spelling
// (`24h`, `50MB`) lives here too, so that validation and the detections read the same numbers.
// Pure: no I/O, no clock.

/**
 * What a detection does (SPEC.md): every finding is an alert; `revoke` also revokes the tokens
 * involved (cascading), `quarantine` also quarantines the acting agent (its tokens stay valid for
 * when it is released; every gateway refuses them meanwhile).
 */
export const RESPONSES = ['alert', 'revoke', 'quarantine'] as const;
export type Response = (typeof RESPONSES)[number];

/** Every detection, by its policy key. */
export const DETECTIONS = [
  'new_destination',
  'destination_burst',
  'denial_spike',
  'bytes_out_spike',
  'forbidden_address',
  'new_method',
] as const;
export type DetectionName = (typeof DETECTIONS)[number];

export interface MonitoringPolicy {
  /** No first-contact detection (new_destination, new_method) before an agent has been seen this long. */
  readonly learningPeriodMs: number;
  readonly newDestination?: { readonly response: Response };
  readonly destinationBurst?: {
    readonly newHosts: number;
    readonly withinMs: number;
    readonly response: Response;
  };
  readonly denialSpike?: { readonly denials: number; readonly withinMs: number; readonly response: Response };
  readonly bytesOutSpike?: {
    readonly factor: number;
    readonly withinMs: number;
    readonly response: Response;
  };
  readonly forbiddenAddress?: { readonly response: Response };
  readonly newMethod?: { readonly response: Response };
}

/** SPEC.md's example default: a day of learning before first contacts alert. */
export const DEFAULT_LEARNING_PERIOD_MS = 24 * 3_600_000;

const DURATION_UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000 };

/** `Ns`, `Nm`, `Nh` (a whole number of them) in milliseconds; undefined for anything else. */
export function parseDuration(text: string): number | undefined {
  const match = /^([0-9]{1,9})(s|m|h)$/.exec(text);
  if (match === null) return undefined;
  return Number(match[1]) * (DURATION_UNITS[match[2] as string] as number);
}

// Decimal (SI) multiples, as disks and network links count them: 50MB is 50,000,000 bytes.
const SIZE_UNITS: Record<string, number> = { '': 1, kB: 1e3, MB: 1e6, GB: 1e9 };

/** `N`, `NkB`, `NMB`, `NGB` in bytes; undefined for anything else (`50mb`, `1.5MB`, `5 MB`). */
export function parseSize(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : undefined;
  const match = /^([0-9]{1,12})(kB|MB|GB)?$/.exec(text);
  if (match === null) return undefined;
  return Number(match[1]) * (SIZE_UNITS[match[2] ?? ''] as number);
}
