// The interception CA's life cycle as pure decisions: no database, no clock (time comes in as
// `now`), no logging. authority.ts reads the rows, asks these functions, and writes the answer.
//
//   active ──reins ca rotate──▶ trusted (in the bundle, signs nothing) ──overlap over──▶ retired
//     └──────────── not_after passed ────────────▶ expired
//
// - at most one CA is active (the database enforces it): it signs every new leaf;
// - a CA that rotation replaced stays in the trusted bundle until `trustedUntil`: leaves it signed
//   (and gateways that have not yet restarted onto the new CA) keep verifying at agents that
//   already hold the new bundle;
// - nothing past its notAfter is ever in the bundle: no client would accept what it signed.

export const CA_STATES = ['active', 'trusted', 'retired', 'expired'] as const;
export type CaState = (typeof CA_STATES)[number];

/** What the decisions need to know of a stored CA (never its private key). */
export interface CaRecord {
  readonly id: string;
  readonly createdAt: Date;
  readonly notAfter: Date;
  /** When rotation replaced it; null while it is the active CA. */
  readonly retiredAt: Date | null;
  /** The end of its overlap; null while it is the active CA. */
  readonly trustedUntil: Date | null;
}

/** Where a CA stands at `now`. */
export function caState(ca: CaRecord, now: Date): CaState {
  const t = now.getTime();
  if (ca.retiredAt === null) return ca.notAfter.getTime() > t ? 'active' : 'expired';
  const until = Math.min(ca.trustedUntil?.getTime() ?? 0, ca.notAfter.getTime());
  return until > t ? 'trusted' : 'retired';
}

/** Whether a CA in `state` belongs in the bundle agents trust. */
export function isTrusted(state: CaState): boolean {
  return state === 'active' || state === 'trusted';
}

// Newest first, then by id, so that the order is total and every process prints the same bundle.
function newestFirst(a: CaRecord, b: CaRecord): number {
  return b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** The bundle `reins ca export` prints: the active CA first, then those in their overlap, newest first. */
export function trustedCas<C extends CaRecord>(cas: readonly C[], now: Date): C[] {
  const order = (ca: C) => (caState(ca, now) === 'active' ? 0 : 1);
  return cas
    .filter((ca) => isTrusted(caState(ca, now)))
    .sort((a, b) => order(a) - order(b) || newestFirst(a, b));
}

export type SigningChoice =
  /** `id` signs; `expiresSoon` when its notAfter is within the warning period. */
  | { readonly verdict: 'sign'; readonly id: string; readonly expiresSoon: boolean }
  /** No CA is active: the first start creates one. */
  | { readonly verdict: 'create' }
  /**
   * The active CA has expired. Not replaced on its own: agents must be given a new bundle, so the
   * operator rotates (`reins ca rotate`) and distributes it.
   */
  | { readonly verdict: 'expired'; readonly id: string; readonly notAfter: Date };

/** Which CA signs leaves at `now`. */
export function chooseSigningCa(cas: readonly CaRecord[], now: Date, warningMs: number): SigningChoice {
  const [active] = cas.filter((ca) => ca.retiredAt === null).sort(newestFirst);
  if (!active) return { verdict: 'create' };
  const left = active.notAfter.getTime() - now.getTime();
  if (left <= 0) return { verdict: 'expired', id: active.id, notAfter: active.notAfter };
  return { verdict: 'sign', id: active.id, expiresSoon: left <= warningMs };
}

/** Until when a CA that rotation replaces at `now` stays trusted: the overlap, never past its notAfter. */
export function overlapEnd(ca: CaRecord, now: Date, overlapMs: number): Date {
  return new Date(Math.min(now.getTime() + overlapMs, ca.notAfter.getTime()));
}
