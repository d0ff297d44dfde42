// The token ledger (issued_tokens, migrations/001_foundation.sql): every jti reins signs, so
// that introspection and revocation can answer for JWTs oidc-provider does not store, and so
// that a signing key retires only after the last token it signed has expired.
//
// The row is written before the token is answered: a token the ledger does not know could
// never be revoked. On the token path concurrent rows are written together in one INSERT
// (group commit, ledger-batch.ts); each token still waits for its own row to be durable.
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

/** Parameters per row of insertIssued; PostgreSQL allows 65,535 per statement. */
export const PARAMS_PER_ROW = 10;

export async function recordIssued(db: Queryable, token: IssuedToken): Promise<void> {
  await insertIssued(db, [token]);
}

/** Inserts `tokens` in one statement: all rows are committed, or none. */
export async function insertIssued(db: Queryable, tokens: readonly IssuedToken[]): Promise<void> {
  if (tokens.length === 0) return;
  const values: string[] = [];
  const params: unknown[] = [];
  for (const token of tokens) {
    const n = params.length;
    values.push(
      `($${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5}, $${n + 6}, $${n + 7}, $${n + 8}, to_timestamp($${n + 9}), to_timestamp($${n + 10}))`,
    );
    params.push(
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
    );
  }
  await db.query(
    `insert into issued_tokens (jti, tenant, client_id, sub, agent, parent_jti, kind, kid, issued_at, expires_at)
     values ${values.join(', ')}`,
    params,
  );
}
