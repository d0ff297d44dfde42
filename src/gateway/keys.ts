// The keys the gateway verifies tokens with: the published key set, held in memory and refreshed
// from where it lives (the database) only when a token names a `kid` the set does not hold, and
// then at most once per cooldown.
//
// Threat: anyone who can reach the gateway can send well-formed tokens that name random key ids.
// If an unknown kid read the key set, a flood of them would become a flood of database reads,
// and every refusal would wait for one. So:
// - nothing is remembered per kid (random kids would grow that memory without bound): between
//   refreshes the one set in memory answers every kid, and a kid it does not hold is refused at
//   once, without I/O;
// - a refresh starts at most once per cooldown, counted from the start of the previous attempt
//   whether it succeeded or not (an unreachable database must not be retried per request);
// - misses that arrive while a refresh is in flight wait for that one (single flight).
// A key rotated in by another process is accepted from the first token that names it once the
// cooldown since the last refresh has passed: within one cooldown of its publication.
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

/** How often, at most, the key set is read again because a token named a kid it lacks. */
export const KEY_REFRESH_COOLDOWN_MS = 5_000;

export interface KeySetOptions {
  /** Default KEY_REFRESH_COOLDOWN_MS. */
  readonly cooldownMs?: number;
  /** Milliseconds on a monotonic clock; tests drive it. Default performance.now. */
  readonly now?: () => number;
  /** Told why a refresh failed (the set in memory stays as it was). */
  readonly onError?: (err: unknown) => void;
}

/** Whether a refresh may start: never tried yet, or the cooldown since the last try has passed. */
export function refreshDue(lastAttempt: number | null, now: number, cooldownMs: number): boolean {
  return lastAttempt === null || now - lastAttempt >= cooldownMs;
}

/**
 * What every unknown kid is refused with: one instance, made once. Building an error captures a
 * stack trace, which was most of what refusing an unknown kid cost (tens of µs each, several
 * times the rest of the check); this one carries nothing about any request.
 */
const UNKNOWN_KEY = Object.freeze(
  new errors.JWKSNoMatchingKey('the token names a key this gateway does not know'),
);

export class KeySet {
  #resolve: JWTVerifyGetKey | null = null;
  #kids: ReadonlySet<string> = new Set();
  #text = '';
  #lastAttempt: number | null = null;
  #refreshing: Promise<void> | null = null;
  readonly #cooldownMs: number;
  readonly #now: () => number;

  constructor(
    private readonly load: () => Promise<JSONWebKeySet>,
    private readonly options: KeySetOptions = {},
  ) {
    this.#cooldownMs = options.cooldownMs ?? KEY_REFRESH_COOLDOWN_MS;
    this.#now = options.now ?? (() => performance.now());
  }

  /** jose's key resolver: the key a token's header names, or a JWKSNoMatchingKey. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    // As jose reads it: a flattened JWS may carry the kid in its unprotected header.
    const { kid } = { ...header, ...token?.header };
    // reins names its key in every token it signs; a token without a kid would cost a signature
    // check per key held, so it is refused like an unknown one.
    if (typeof kid !== 'string' || kid === '') throw UNKNOWN_KEY;
    if (!this.#kids.has(kid)) {
      if (this.#refreshing === null && !refreshDue(this.#lastAttempt, this.#now(), this.#cooldownMs)) {
        throw UNKNOWN_KEY;
      }
      await this.#refresh();
      if (!this.#kids.has(kid)) throw UNKNOWN_KEY;
    }
    return (this.#resolve as JWTVerifyGetKey)(header, token);
  };

  /** Starts a refresh, or joins the one in flight; never rejects (a failure keeps the old set). */
  #refresh(): Promise<void> {
    this.#refreshing ??= this.#attempt().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #attempt(): Promise<void> {
    this.#lastAttempt = this.#now();
    try {
      const set = await this.load();
      const text = JSON.stringify(set);
      // Unchanged: keep the resolver, and with it the keys it has already imported.
      if (text === this.#text && this.#resolve !== null) return;
      const resolve = createLocalJWKSet(set);
      this.#resolve = resolve;
      this.#kids = new Set(set.keys.flatMap((k) => (typeof k.kid === 'string' ? [k.kid] : [])));
      this.#text = text;
    } catch (err) {
      this.options.onError?.(err);
    }
  }
}

/** Keys of a server in the same process (or sharing its database): the set `load` reads. */
export function localKeys(load: () => Promise<JSONWebKeySet>, options: KeySetOptions = {}): JWTVerifyGetKey {
  return new KeySet(load, options).getKey;
}
