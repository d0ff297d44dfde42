// Durations and sizes as policy files spell them (`24h`, `50MB`): back to text for plan, and the
// fix to suggest when a file spells one the way other tools do (`1d`, `50mb`, `50MiB`). Parsing
// is parseDuration / parseSize in src/monitor/policy.ts, so validation and the detections read the
// same numbers. Pure.

const DURATION_UNITS = [
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
] as const;

// Decimal, as parseSize counts: 50MB is 50,000,000 bytes.
const SIZE_UNITS = [
  ['GB', 1e9],
  ['MB', 1e6],
  ['kB', 1e3],
] as const;

/** Milliseconds as the largest unit that divides them: 86400000 → `24h`, 90000 → `90s`. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of DURATION_UNITS) if (ms > 0 && ms % size === 0) return `${ms / size}${unit}`;
  return ms === 0 ? '0s' : `${ms}ms`;
}

/** Bytes as the largest decimal unit that divides them: 50000000 → `50MB`, 1500 → `1500`. */
export function formatSize(bytes: number): string {
  for (const [unit, size] of SIZE_UNITS) if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

const DURATION_WORDS: Record<string, string> = {
  s: 's',
  sec: 's',
  secs: 's',
  second: 's',
  seconds: 's',
  m: 'm',
  min: 'm',
  mins: 'm',
  minute: 'm',
  minutes: 'm',
  h: 'h',
  hr: 'h',
  hrs: 'h',
  hour: 'h',
  hours: 'h',
  d: 'd',
  day: 'd',
  days: 'd',
};

const MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * The duration someone probably meant by `text`, in the policy's spelling, or null: `1d` → `24h`,
 * `5 min` → `5m`, `1.5h` → `90m`. Only for text that is not already a duration.
 */
export function suggestDuration(text: string): string | null {
  const match = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)\s*$/i.exec(text);
  if (!match) return null;
  const unit = DURATION_WORDS[(match[2] as string).toLowerCase()];
  if (unit === undefined) return null;
  const ms = Number(match[1]) * (MS[unit] as number);
  if (!Number.isSafeInteger(ms) || ms % 1_000 !== 0) return null;
  const suggestion = formatDuration(ms);
  return suggestion === text ? null : suggestion;
}

/**
 * The size someone probably meant by `value`, in the policy's spelling, or null: `50mb` → `50MB`,
 * `50 MB` → `50MB`, `1.5MB` → `1500kB`, `1MiB` → `1048576` (binary units are spelt out in bytes).
 */
export function suggestSize(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const match = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?)(b|bytes?)?\s*$/i.exec(value);
  if (!match) return null;
  const [, number, prefix = '', binary = '', suffix] = match;
  if (prefix === '' && (binary !== '' || suffix === undefined)) return null;
  const power = ' kmgt'.indexOf(prefix.toLowerCase() || ' ');
  const bytes = Number(number) * (binary === '' ? 1000 : 1024) ** power;
  if (!Number.isSafeInteger(bytes)) return null;
  const suggestion = binary === '' ? formatSize(bytes) : String(bytes);
  return suggestion === value ? null : suggestion;
}
