// oidc-provider's storage on our Db (PostgreSQL or PGlite): one row per (model, id) in
// `oidc_models` (migrations/001_foundation.sql). oidc-provider asks for one adapter per model
// name ('Grant', 'ClientCredentials', 'ReplayDetection', 'Session', …) and treats the payload as
// opaque; the columns beside it exist only for the lookups the adapter contract needs.
//
// Behaviour per model mirrors oidc-provider's own reference (lib/adapters/memory_adapter.js):
// - `grant_id` is recorded only for the grant-bound token models (GRANT_BOUND_MODELS), so
//   revokeByGrantId removes tokens, codes and requests of a grant, never the Grant itself, an
//   Interaction or a Session that happen to name it;
// - `uid` is recorded only for Session (the only model found by uid);
// - `user_code` is recorded for any payload that carries one (DeviceCode).
//
// Expiry is enforced in SQL against the database clock (`now()`), not this process's clock, so
// that several reins processes on one PostgreSQL agree on what has expired.
import type { Adapter, AdapterFactory, AdapterPayload } from 'oidc-provider';
import type { Queryable } from '../../store/db.ts';

/** Models whose rows revokeByGrantId removes (as in oidc-provider's memory adapter). */
export const GRANT_BOUND_MODELS: ReadonlySet<string> = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

export type AdapterErrorCode = 'replay_detected' | 'foreign_adapter';

export class AdapterError extends Error {
  constructor(
    readonly code: AdapterErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AdapterError';
  }
}

export interface AdapterOptions {
  /**
   * Where the `Client` model is read from instead of the table, e.g. the agents and apps of the
   * applied policies held in memory. Without it, clients are rows like any other model (and
   * oidc-provider's static `clients` configuration is consulted before the adapter either way).
   */
  findClient?: (clientId: string) => Promise<AdapterPayload | undefined>;
}

interface PayloadRow {
  payload: AdapterPayload;
}

// Rows whose expires_at has passed are invisible to every read, whether or not the sweeper has
// removed them yet.
const LIVE = '(expires_at is null or expires_at > now())';

export class DbAdapter implements Adapter {
  constructor(
    private readonly db: Queryable,
    readonly model: string,
    private readonly options: AdapterOptions = {},
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    if (this.model === 'ReplayDetection') {
      // Fail closed: this path is only reached when installAtomicReplayDetection was not called.
      // oidc-provider's stock ReplayDetection.unique() is find-then-upsert, so concurrent uses
      // of one assertion all pass its find; only one of them may land here and win.
      if (!(await this.claim(id, payload, expiresIn))) {
        throw new AdapterError('replay_detected', 'this client assertion (or DPoP proof) was already used');
      }
      return;
    }
    await this.db.query(
      `insert into oidc_models (model, id, payload, grant_id, user_code, uid, expires_at)
       values ($1, $2, $3::jsonb, $4, $5, $6, now() + $7::float8 * interval '1 second')
       on conflict (model, id) do update set
         payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code,
         uid = excluded.uid, expires_at = excluded.expires_at, consumed_at = null`,
      [this.model, id, ...this.columns(payload), expiresIn ?? null],
    );
  }

  /**
   * Stores the row only if no live row with this id exists, in one statement. Returns whether
   * this call stored it. Of N concurrent claims of one id exactly one returns true: the losers
   * wait on the winner's unique-index entry, then take the conflict branch, whose WHERE sees the
   * winner's live row and updates nothing. A row that has expired (not yet swept) is taken over.
   */
  async claim(id: string, payload: AdapterPayload, expiresIn?: number): Promise<boolean> {
    const result = await this.db.query(
      `insert into oidc_models (model, id, payload, grant_id, user_code, uid, expires_at)
       values ($1, $2, $3::jsonb, $4, $5, $6, now() + $7::float8 * interval '1 second')
       on conflict (model, id) do update set
         payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code,
         uid = excluded.uid, expires_at = excluded.expires_at, consumed_at = null
       where oidc_models.expires_at is not null and oidc_models.expires_at <= now()
       returning id`,
      [this.model, id, ...this.columns(payload), expiresIn ?? null],
    );
    return result.rowCount === 1;
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    if (this.model === 'Client' && this.options.findClient) return this.options.findClient(id);
    return this.findWhere('id = $2', id);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.findWhere('uid = $2', uid);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.findWhere('user_code = $2', userCode);
  }

  /** Marks a one-time artefact (authorization code, device code, …) as used. */
  async consume(id: string): Promise<void> {
    await this.db.query(
      `update oidc_models
         set consumed_at = now(),
             payload = payload || jsonb_build_object('consumed', floor(extract(epoch from now()))::bigint)
       where model = $1 and id = $2`,
      [this.model, id],
    );
  }

  async destroy(id: string): Promise<void> {
    await this.db.query('delete from oidc_models where model = $1 and id = $2', [this.model, id]);
  }

  /**
   * Removes every grant-bound row of the grant, whichever model this adapter serves (oidc-provider
   * calls this once per grant-bound model; the later calls find nothing left).
   */
  async revokeByGrantId(grantId: string): Promise<void> {
    await this.db.query('delete from oidc_models where grant_id = $1', [grantId]);
  }

  private async findWhere(condition: string, value: string): Promise<AdapterPayload | undefined> {
    const result = await this.db.query<PayloadRow>(
      `select payload from oidc_models where model = $1 and ${condition} and ${LIVE}`,
      [this.model, value],
    );
    return result.rows[0]?.payload;
  }

  // payload, grant_id, user_code, uid. The payload goes as text with a ::jsonb cast: `pg` would
  // turn a JS array inside it into a PostgreSQL array.
  private columns(payload: AdapterPayload): [string, string | null, string | null, string | null] {
    return [
      JSON.stringify(payload),
      GRANT_BOUND_MODELS.has(this.model) ? (payload.grantId ?? null) : null,
      payload.userCode ?? null,
      this.model === 'Session' ? (payload.uid ?? null) : null,
    ];
  }
}

/** The value for oidc-provider's `adapter` configuration: one DbAdapter per model name. */
export function createAdapterFactory(db: Queryable, options: AdapterOptions = {}): AdapterFactory {
  return (model: string) => new DbAdapter(db, model, options);
}
