// The token ledger (issued_tokens, migrations/001_foundation.sql): every jti reins signs, so
// that introspection and revocation can answer for JWTs oidc-provider does not store, and so
// that a signing key retires only after the last token it signed has expired.
//
// The row is written before the token is answered: a token the ledger does not know could
// never be revoked. One awaited INSERT per token for now; batching concurrent inserts into one
// commit (group commit) is the benchmark's next step (issue 4, "Benchmark").
import type { Queryable } from '../../store/db.ts';

export interface IssuedToken {
  readonly jti: string;
  readonly tenant: string;
  readonly clientId: string;
  readonly sub: string;
  /** The acting agent (the client itself for client credentials). */
  readonly agent: string | null;
  readonly parentJti: string | null;
  readonly kind: 'client_credentials' | 'token_exchange';
  readonly kid: string | null;
  /** Epoch seconds, as in the token. */
  readonly iat: number;
  readonly exp: number;
}

export async function recordIssued(db: Queryable, token: IssuedToken): Promise<void> {
  await db.query(
    `insert into issued_tokens (jti, tenant, client_id, sub, agent, parent_jti, kind, kid, issued_at, expires_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9), to_timestamp($10))`,
    [
      token.jti,
      token.tenant,
      token.clientId,
      token.sub,
      token.agent,
      token.parentJti,
      token.kind,
      token.kid,
      token.iat,
      token.exp,
    ],
  );
}
