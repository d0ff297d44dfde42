// The token ledger (issued_tokens, migrations/001_foundation.sql): every jti reins signs, so
// that introspection and revocation can answer for JWTs oidc-provider does not store, and so
// that a signing key retires only after the last token it signed has expired.
//
// The row is written before the token is answered: a token the ledger does not know could
// never be revoked. On the token path concurrent rows are written together in one INSERT
// (group commit, ledger-batch.ts); each token still waits for its own row to be durable.
import type { Db, Queryable } from '../../store/db.ts';

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

/** A token's ledger row, as introspection, revocation and token exchange read it. */
export interface LedgerEntry {
  readonly tenant: string;
  readonly client_id: string;
  readonly kind: string;
  readonly expires_at: Date;
  readonly revoked_at: Date | null;
  /**
   * Whether a token it was exchanged from (its parent, grandparent, …) is revoked. Revocation
   * marks descendants too (revokeTree); this covers a child recorded while its parent was
   * being revoked, which the cascade's snapshot could not see.
   */
  readonly ancestor_revoked: boolean;
}

/** Chains are capped by the tenant's delegation depth; this only bounds a corrupt ledger. */
const MAX_ANCESTORS = 32;

export async function readLedgerEntry(db: Queryable, jti: string): Promise<LedgerEntry | undefined> {
  const { rows } = await db.query<LedgerEntry>(
    `with recursive up (jti, parent_jti, revoked_at, depth) as (
       select jti, parent_jti, revoked_at, 0 from issued_tokens where jti = $1
       union all
       select t.jti, t.parent_jti, t.revoked_at, up.depth + 1
         from issued_tokens t join up on t.jti = up.parent_jti
        where up.depth < $2
     )
     select t.tenant, t.client_id, t.kind, t.expires_at, t.revoked_at,
            exists (select 1 from up where up.depth > 0 and up.revoked_at is not null) as ancestor_revoked
       from issued_tokens t where t.jti = $1`,
    [jti, MAX_ANCESTORS],
  );
  return rows[0];
}

/**
 * Revokes a token and every token exchanged from it, transitively (RFC 8693 chains: a delegated
 * token must not outlive the authority it came from), and appends each to the revocation feed,
 * in one transaction: the feed trigger numbers the rows and NOTIFYs `reins_revocations` at
 * commit, which is how gateways learn it within a second. Tokens already revoked are left as
 * they are (no second feed row). Returns the jtis revoked now.
 */
export async function revokeTree(db: Db, jti: string, reason: string): Promise<string[]> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{ jti: string; tenant: string; expires_at: Date }>(
      `with recursive down (jti, depth) as (
         select $1::text, 0
         union
         select t.jti, down.depth + 1 from issued_tokens t join down on t.parent_jti = down.jti
          where down.depth < $3
       )
       update issued_tokens set revoked_at = now(), revocation_reason = $2
        where jti in (select jti from down) and revoked_at is null
       returning jti, tenant, expires_at`,
      [jti, reason, MAX_ANCESTORS],
    );
    for (const row of rows) {
      await tx.query(
        `insert into revocations (kind, tenant, jti, reason, expires_at) values ('token', $1, $2, $3, $4)`,
        [row.tenant, row.jti, reason, row.expires_at],
      );
    }
    return rows.map((row) => row.jti);
  });
}
