// The RFC 8693 `act` claim as a list of actors, newest first (§4.1: "the most recent actor is
// the outermost"). PURE.
//
// Only `sub` is kept from each level: RFC 8693 §4.1 says claims of prior actors other than
// identifiers are informational and must not be used for access control, so nothing else is
// carried into the next token.

/** `{ sub, act?: { sub, act? … } }`. */
export interface ActClaim {
  readonly sub: string;
  readonly act?: ActClaim;
}

/** Bounds the walk of a claim from a token we did not build (we never nest deeper than this). */
const MAX_WALK = 32;

/**
 * The actors of an `act` claim, newest first; [] for an absent claim; null when it is malformed
 * (a level without a string `sub`, or deeper than any chain reins issues).
 */
export function actorsOf(act: unknown): string[] | null {
  const actors: string[] = [];
  let level = act;
  while (level !== undefined) {
    if (typeof level !== 'object' || level === null || Array.isArray(level)) return null;
    const { sub, act: inner } = level as { sub?: unknown; act?: unknown };
    if (typeof sub !== 'string' || sub === '' || actors.length >= MAX_WALK) return null;
    actors.push(sub);
    level = inner;
  }
  return actors;
}

/** The `act` claim for actors listed newest first; undefined for none. */
export function actClaimOf(actors: readonly string[]): ActClaim | undefined {
  let claim: ActClaim | undefined;
  for (let i = actors.length - 1; i >= 0; i--) {
    const sub = actors[i] as string;
    claim = claim === undefined ? { sub } : { sub, act: claim };
  }
  return claim;
}
