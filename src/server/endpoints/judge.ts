// The one decision behind introspection and revocation (pure: no I/O, no clock; `now` comes in).
// Input: the token's verified claims (or why verification failed), its ledger row, the caller's
// ability. Output: active with the RFC 7662 answer, or inactive with a reason. Every inactive
// reason answers the same `{"active": false}` on the wire (RFC 7662 §2.2), so a caller cannot
// tell a foreign token from an unknown one; the reason is for tests and logs only.
import type { JWTPayload } from 'jose';
import { may, type TokenAbility, type TokenAction } from './abilities.ts';

export const INACTIVE_REASONS = [
  'malformed', // not a JWT of ours: bad signature, unknown kid, wrong typ/iss, missing jti
  'expired',
  'unknown', // signed by us but not in the ledger (never recorded, or swept after expiry)
  'revoked', // the token, or a token it was exchanged from
  'ledger_mismatch', // claims disagree with the ledger's tenant/client: never trust either
  'forbidden', // another tenant's token (introspect), or another client's (revoke)
] as const;
export type InactiveReason = (typeof INACTIVE_REASONS)[number];

/** issued_tokens, as far as the decision needs it. */
export interface LedgerRow {
  readonly tenant: string;
  readonly client_id: string;
  readonly expires_at: Date;
  readonly revoked_at: Date | null;
  /** A token it was exchanged from is revoked: it dies with its ancestor. */
  readonly ancestor_revoked: boolean;
}

export interface JudgeInput {
  readonly action: TokenAction;
  /** Claims after signature, typ and issuer checks; undefined when that verification failed. */
  readonly claims: JWTPayload | undefined;
  /** undefined when the jti is not in the ledger (or there was no jti). */
  readonly row: LedgerRow | undefined;
  readonly ability: TokenAbility;
  readonly now: Date;
}

/** RFC 7662 §2.2 answer for an active token. */
export interface ActiveAnswer {
  readonly active: true;
  readonly token_type: 'Bearer';
  readonly [claim: string]: unknown;
}

export type Judgement =
  | { readonly active: true; readonly jti: string; readonly answer: ActiveAnswer }
  | { readonly active: false; readonly reason: InactiveReason };

/** The claims an active answer repeats from the token (RFC 7662 §2.2, RFC 9068, RFC 9396). */
const ANSWERED_CLAIMS = [
  'client_id',
  'sub',
  'tenant',
  'scope',
  'exp',
  'iat',
  'iss',
  'aud',
  'jti',
  'act',
  'authorization_details',
  'cnf',
] as const;

export function judge(input: JudgeInput): Judgement {
  const { claims, row, now } = input;
  if (claims === undefined || typeof claims.jti !== 'string' || typeof claims.exp !== 'number') {
    return { active: false, reason: 'malformed' };
  }
  const nowSeconds = Math.floor(now.getTime() / 1000);
  if (claims.exp <= nowSeconds) return { active: false, reason: 'expired' };
  if (row === undefined) return { active: false, reason: 'unknown' };
  if (row.revoked_at !== null || row.ancestor_revoked) return { active: false, reason: 'revoked' };
  if (row.expires_at.getTime() <= now.getTime()) return { active: false, reason: 'expired' };
  if (claims.tenant !== row.tenant || claims.client_id !== row.client_id) {
    return { active: false, reason: 'ledger_mismatch' };
  }
  if (!may(input.ability, input.action, row)) return { active: false, reason: 'forbidden' };
  const answer: Record<string, unknown> = { active: true, token_type: 'Bearer' };
  for (const name of ANSWERED_CLAIMS) {
    if (claims[name] !== undefined) answer[name] = claims[name];
  }
  return { active: true, jti: claims.jti, answer: answer as ActiveAnswer };
}
