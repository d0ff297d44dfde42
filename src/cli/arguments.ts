// Option values several commands share: `--since` (a duration back from now or a time) and
// whole-number counts, each refused with what to write instead.
import { CliError, EXIT } from './failure.ts';

const UNITS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d{1,9})([smhd])$/;
// A calendar date, optionally with a time of day and an offset (RFC 3339 / ISO 8601 extended).
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

/** `--since`: a duration back from `now` (30m, 1h, 2d) or an ISO 8601 time; undefined if neither. */
export function parseSince(text: string, now: Date): Date | undefined {
  const duration = DURATION.exec(text);
  if (duration) {
    const [, amount = '0', unit = 's'] = duration;
    const since = new Date(now.getTime() - Number(amount) * UNITS[unit as keyof typeof UNITS]);
    return Number.isNaN(since.getTime()) ? undefined : since;
  }
  if (!ISO_TIME.test(text)) return undefined;
  const since = new Date(text);
  return Number.isNaN(since.getTime()) ? undefined : since;
}

export function sinceOption(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const since = parseSince(text, new Date());
  if (since === undefined) {
    throw new CliError(
      `--since ${JSON.stringify(text)}: give a duration back from now (90s, 30m, 1h, 2d) or an ISO 8601 time (2025-06-01T12:00:00Z)`,
      EXIT.usage,
    );
  }
  return since;
}

export function countOption(name: string, text: string, min: number): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < min) {
    throw new CliError(`${name} ${JSON.stringify(text)}: give a whole number, at least ${min}`, EXIT.usage);
  }
  return Number(text);
}
