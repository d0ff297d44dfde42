// The signing keys' life cycle as pure decisions: no database, no clock (time comes in as `now`),
// no logging. store.ts reads the rows, asks these functions what to do, and writes the answer.
//
//   pending ──▶ active ──rotate──▶ retiring ──last token expired──▶ retired
//
// - exactly one key is active: it signs every new token;
// - pending keys are published before they sign (so verifiers may cache them early); rotation as
//   built today activates a fresh key at once and never creates pending ones, but rows written as
//   pending are published and never sign;
// - a retiring key no longer signs but stays published until every token it signed has expired:
//   retiring it earlier would turn valid tokens into ones no verifier can check;
// - a retired key is no longer published.

export const KEY_STATES = ['pending', 'active', 'retiring', 'retired'] as const;
export type KeyState = (typeof KEY_STATES)[number];

/** What the decisions need to know of a stored key (never its private part). */
export interface KeyRecord {
  readonly kid: string;
  readonly state: KeyState;
  readonly createdAt: Date;
  readonly activatedAt: Date | null;
  readonly retiredAt: Date | null;
}

export type TransitionReason =
  /** A rotation moved the active key aside: it stops signing and stays published. */
  | 'rotated_out'
  /** More than one key was active (a bug or a hand edit): the newest signs, the others retire. */
  | 'duplicate_active';

export interface Transition {
  readonly kid: string;
  readonly from: KeyState;
  readonly to: KeyState;
  readonly reason: TransitionReason;
}

/** Whether a key in `state` belongs in the published JWKS. */
export function isPublished(state: KeyState): boolean {
  return state !== 'retired';
}

// Newest first: by activation (or creation, for keys never active), then by kid so that the order
// is total and two processes reading the same rows decide the same thing.
function newestFirst(a: KeyRecord, b: KeyRecord): number {
  const at = (k: KeyRecord) => (k.activatedAt ?? k.createdAt).getTime();
  return at(b) - at(a) || (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0);
}

const PUBLICATION_ORDER: Record<KeyState, number> = { active: 0, pending: 1, retiring: 2, retired: 3 };

/**
 * The keys to publish, in the order oidc-provider should hold them: the active key first (it signs
 * with the first key fitting the algorithm), then pending, then retiring keys, newest first.
 */
export function publishedKeys<K extends KeyRecord>(keys: readonly K[]): K[] {
  return keys
    .filter((k) => isPublished(k.state))
    .sort((a, b) => PUBLICATION_ORDER[a.state] - PUBLICATION_ORDER[b.state] || newestFirst(a, b));
}

export type SigningChoice =
  /** `kid` signs; `repairs` retire any other key that was also active. */
  | { readonly verdict: 'sign'; readonly kid: string; readonly repairs: readonly Transition[] }
  /** No key is active: a new one must be created (first start, or every key retired). */
  | { readonly verdict: 'create' };

/** Which key signs. Exactly one is active; if several are, the newest wins and the rest retire. */
export function chooseSigningKey(keys: readonly KeyRecord[]): SigningChoice {
  const [newest, ...others] = keys.filter((k) => k.state === 'active').sort(newestFirst);
  if (!newest) return { verdict: 'create' };
  return {
    verdict: 'sign',
    kid: newest.kid,
    repairs: others.map((k) => ({ kid: k.kid, from: 'active', to: 'retiring', reason: 'duplicate_active' })),
  };
}

export interface RotationPlan {
  /** The new key, inserted as active. */
  readonly activate: string;
  /** Every key that was active becomes retiring (still published). */
  readonly transitions: readonly Transition[];
}

/** What `reins keys rotate` does: `newKid` becomes the one active key; the old active key retires. */
export function planRotation(keys: readonly KeyRecord[], newKid: string): RotationPlan {
  return {
    activate: newKid,
    transitions: keys
      .filter((k) => k.state === 'active')
      .sort(newestFirst)
      .map((k) => ({ kid: k.kid, from: 'active', to: 'retiring', reason: 'rotated_out' })),
  };
}

export type RetirementReason =
  /** Retire: the key signed tokens and the last of them has expired. */
  | 'tokens_expired'
  /** Retire: the ledger holds no token signed by the key. */
  | 'no_tokens'
  /** Keep: a token the key signed is still valid. */
  | 'unexpired_tokens'
  /** Keep: its successor became active less than `graceMs` ago. */
  | 'grace_period'
  /** Keep: no later key was ever activated, so when it stopped signing is unknown. */
  | 'no_successor';

export interface RetirementDecision {
  readonly kid: string;
  readonly verdict: 'retire' | 'keep';
  readonly reason: RetirementReason;
}

export interface RetirementInput {
  readonly keys: readonly KeyRecord[];
  /** Per kid, the latest `expires_at` of the tokens it signed (absent: it signed none). */
  readonly lastExpiry: ReadonlyMap<string, Date>;
  readonly now: Date;
  /**
   * How long a retiring key stays published after its successor became active, whatever the
   * ledger says. Threat: a process that has not yet reloaded the key set still signs with the old
   * key; a token it signs after the ledger was read would fail verification everywhere.
   */
  readonly graceMs: number;
}

/** For every retiring key: may it be retired now? Active, pending and retired keys are left alone. */
export function planRetirement(input: RetirementInput): RetirementDecision[] {
  const { keys, lastExpiry, now, graceMs } = input;
  return keys
    .filter((k) => k.state === 'retiring')
    .sort(newestFirst)
    .map((key) => ({ kid: key.kid, ...decideRetirement(key, keys, lastExpiry.get(key.kid), now, graceMs) }));
}

function decideRetirement(
  key: KeyRecord,
  keys: readonly KeyRecord[],
  lastExpiry: Date | undefined,
  now: Date,
  graceMs: number,
): Pick<RetirementDecision, 'verdict' | 'reason'> {
  // A key stopped signing when the next key was activated.
  const since = (key.activatedAt ?? key.createdAt).getTime();
  const successorActivations = keys
    .filter((k) => k.kid !== key.kid && k.activatedAt !== null && k.activatedAt.getTime() >= since)
    .map((k) => (k.activatedAt as Date).getTime());
  if (successorActivations.length === 0) return { verdict: 'keep', reason: 'no_successor' };
  if (now.getTime() - Math.min(...successorActivations) < graceMs) {
    return { verdict: 'keep', reason: 'grace_period' };
  }
  // RFC 7519 §4.1.4: a token is not accepted on or after its `exp`.
  if (lastExpiry === undefined) return { verdict: 'retire', reason: 'no_tokens' };
  if (lastExpiry.getTime() > now.getTime()) return { verdict: 'keep', reason: 'unexpired_tokens' };
  return { verdict: 'retire', reason: 'tokens_expired' };
}
