// When a token is refreshed, how long it is handed out, and how long to wait after a failed
// refresh. PURE: times are milliseconds on the caller's clock, passed in.
//
// The gateway closes a connection or tunnel when the token it was opened with expires, and
// refuses a token whose `exp` has passed. So a token is replaced well before it expires (a
// tunnel opened just before the refresh keeps at least the rest of the old lifetime), and the
// last moments of a lifetime are never handed out: a request that leaves with a token must
// still carry a valid one when it reaches the gateway.

/** Refresh at this fraction of the lifetime… */
export const REFRESH_FRACTION = 0.8;
/** …or this long before expiry, whichever is earlier… */
export const REFRESH_LEAD_MS = 30_000;
/** …but never before half the lifetime: short-lived tokens would otherwise refresh at once. */
export const REFRESH_FLOOR_FRACTION = 0.5;
/** A token is not handed out in its last 5 s (or last quarter of a shorter lifetime). */
export const MAX_EXPIRY_MARGIN_MS = 5_000;
/** A token that arrives with less than this to live counts as a failed attempt. */
export const MIN_LIFETIME_MS = 1_000;
/** Retries after a failure: 1 s, 2 s, 4 s … up to 30 s, each with up to half of it jittered. */
export const BACKOFF_FIRST_MS = 1_000;
export const BACKOFF_MAX_MS = 30_000;
/** Never retry sooner than this, however little the old token has left. */
export const MIN_RETRY_MS = 500;

/** One token's life on the local clock. */
export interface Lifetime {
  /** When the request that obtained it was sent: the token was issued no earlier. */
  readonly obtainedAt: number;
  readonly expiresAt: number;
}

/** How long before expiry a token stops being handed out. */
export function expiryMargin(t: Lifetime): number {
  return Math.min(MAX_EXPIRY_MARGIN_MS, (t.expiresAt - t.obtainedAt) / 4);
}

/** The last moment the token is handed out. */
export function usableUntil(t: Lifetime): number {
  return t.expiresAt - expiryMargin(t);
}

/** When to start obtaining the next token. */
export function refreshAt(t: Lifetime): number {
  const lifetime = t.expiresAt - t.obtainedAt;
  const planned = Math.min(t.obtainedAt + REFRESH_FRACTION * lifetime, t.expiresAt - REFRESH_LEAD_MS);
  return Math.max(planned, t.obtainedAt + REFRESH_FLOOR_FRACTION * lifetime);
}

/** Whether a freshly obtained token lives long enough to be used at all. */
export function longEnough(t: Lifetime): boolean {
  return t.expiresAt - t.obtainedAt >= MIN_LIFETIME_MS;
}

/**
 * The wait before attempt `failures + 1`, after `failures` failures in a row (≥ 1). While the
 * current token is still usable, the wait is at most half of what it has left, so that several
 * attempts fit before it lapses. `random` is in [0, 1): the jitter that keeps many agents from
 * retrying in step after an outage of the server.
 */
export function retryDelay(
  failures: number,
  now: number,
  current: Lifetime | undefined,
  random: number,
): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, failures - 1));
  let delay = base / 2 + (base / 2) * random;
  if (current !== undefined) {
    const left = usableUntil(current) - now;
    if (left > 0) delay = Math.min(delay, left / 2);
  }
  return Math.max(MIN_RETRY_MS, delay);
}
