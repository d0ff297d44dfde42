// applyPolicy: writes a compiled policy to the database, all or nothing. I/O.
//
// - One transaction: every policy row is replaced and the version recorded together, so a
//   failure at any point (a constraint, a lost connection) leaves the previous policy intact,
//   and readers never see half of an apply.
// - Idempotent: the same files (same content hash as the latest version) write nothing.
// - Removed agents and apps are deleted, not flagged: the token endpoint and the gateway look a
//   client up on every request, so a removed agent stops getting tokens and its outstanding
//   tokens stop passing the gateway as soon as the transaction commits.
// - Concurrent applies (several servers starting at once) queue on a table lock; the later ones
//   then see the hash already applied.
// - On commit, NOTIFY reins_policy '<version>' tells listening servers and gateways to reload
//   (a hint: they also re-read on reconnect).
import type { Db, Queryable } from '../store/db.ts';
import type { AgentModel, AppModel, ClientAuthModel, PolicyModel, TenantModel } from './model.ts';
import { type PolicyVersion, readLatestVersion } from './store-read.ts';
import { summarise } from './summary.ts';

export const POLICY_CHANNEL = 'reins_policy';

export interface ApplyInput {
  readonly model: PolicyModel;
  /** contentHash() of the files the model was compiled from. */
  readonly contentHash: string;
  /** Their names relative to the policy directory. */
  readonly files: readonly string[];
}

export type ApplyOutcome =
  | { readonly status: 'applied'; readonly version: PolicyVersion; readonly previous: PolicyVersion | null }
  | { readonly status: 'unchanged'; readonly version: PolicyVersion };

export function applyPolicy(db: Db, input: ApplyInput): Promise<ApplyOutcome> {
  return db.transaction(async (tx): Promise<ApplyOutcome> => {
    // EXCLUSIVE lets readers read on but queues every other apply behind this one.
    await tx.query('lock table policy_versions in exclusive mode');
    const previous = await readLatestVersion(tx);
    if (previous && previous.contentHash === input.contentHash)
      return { status: 'unchanged', version: previous };

    await clear(tx);
    for (const tenant of input.model.tenants) await writeTenant(tx, tenant);
    // Federation references peer tenants: written once every tenant exists.
    for (const tenant of input.model.tenants) await writeFederation(tx, tenant);

    const number = (previous?.version ?? 0) + 1;
    const summary = summarise(input.model);
    await tx.query(
      'insert into policy_versions (version, content_hash, files, summary) values ($1, $2, $3::jsonb, $4)',
      [number, input.contentHash, json(input.files), summary],
    );
    // Delivered at commit, and only if the transaction commits.
    await tx.query('select pg_notify($1, $2)', [POLICY_CHANNEL, String(number)]);
    const version = await readLatestVersion(tx);
    if (!version) throw new Error('the policy version just written cannot be read back');
    return { status: 'applied', version, previous };
  });
}

async function clear(tx: Queryable): Promise<void> {
  // Children first; `tenants` last (the foreign keys would cascade, but explicit is clearer).
  for (const table of [
    'federation',
    'owned_destinations',
    'user_rights',
    'trusted_issuers',
    'clients',
    'integrations',
  ]) {
    await tx.query(`delete from ${table}`);
  }
  await tx.query('delete from tenants');
}

async function writeTenant(tx: Queryable, t: TenantModel): Promise<void> {
  await tx.query(
    `insert into tenants (id, max_token_ttl, delegation_depth, egress_ceiling, monitoring)
     values ($1, $2, $3, $4::jsonb, $5::jsonb)`,
    [t.id, t.maxTokenTtl, t.delegationDepth, nullableJson(t.ceiling), nullableJson(t.monitoring)],
  );
  for (const i of t.integrations) {
    await tx.query('insert into integrations (tenant, name, rules) values ($1, $2, $3::jsonb)', [
      t.id,
      i.name,
      json(i.rules),
    ]);
  }
  for (const [position, rule] of t.owns.entries()) {
    await tx.query('insert into owned_destinations (tenant, position, rule) values ($1, $2, $3)', [
      t.id,
      position,
      rule,
    ]);
  }
  for (const agent of t.agents) await writeAgent(tx, t.id, agent);
  for (const app of t.apps) await writeApp(tx, t.id, app);
  for (const i of t.trustedIssuers) {
    await tx.query(
      `insert into trusted_issuers (tenant, issuer, jwks, jwks_uri, audience, subject_claim, groups_claim, roles_claim,
                                    algorithms)
       values ($1, $2, $3::jsonb, $4, $5::jsonb, $6, $7, $8, $9::jsonb)`,
      [
        t.id,
        i.issuer,
        nullableJson(i.jwks),
        i.jwksUri,
        json(i.audience),
        i.subjectClaim,
        i.groupsClaim,
        i.rolesClaim,
        json(i.algorithms),
      ],
    );
  }
  for (const u of t.users) {
    await tx.query(
      `insert into user_rights (tenant, id, match, integrations, egress, effective_egress)
       values ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb)`,
      [t.id, u.id, json(u.match), json(u.integrations), json(u.egress), json(u.effectiveEgress)],
    );
  }
}

async function writeFederation(tx: Queryable, t: TenantModel): Promise<void> {
  for (const f of t.federation) {
    await tx.query('insert into federation (tenant, peer_tenant, egress) values ($1, $2, $3::jsonb)', [
      t.id,
      f.tenant,
      json(f.egress),
    ]);
  }
}

const CLIENT_COLUMNS =
  'client_id, tenant, kind, description, auth_method, jwks, jwks_uri, secret_env, secret_hash, ' +
  'token_ttl, may_act, integrations, egress, effective_egress, may_delegate_to, ' +
  'budget_requests_per_minute, budget_bytes_out_per_hour';
const CLIENT_VALUES =
  '$1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13::jsonb, $14::jsonb, $15::jsonb, ' +
  '$16, $17';

function authValues(auth: ClientAuthModel): unknown[] {
  return [auth.method, nullableJson(auth.jwks), auth.jwksUri, auth.secretEnv, auth.secretHash];
}

async function writeAgent(tx: Queryable, tenant: string, a: AgentModel): Promise<void> {
  await tx.query(`insert into clients (${CLIENT_COLUMNS}) values (${CLIENT_VALUES})`, [
    a.clientId,
    tenant,
    'agent',
    a.description,
    ...authValues(a.auth),
    a.tokenTtl,
    json(a.mayAct),
    json(a.integrations),
    json(a.egress),
    json(a.effectiveEgress),
    json([]),
    a.budget?.requestsPerMinute ?? null,
    a.budget?.bytesOutPerHour ?? null,
  ]);
}

async function writeApp(tx: Queryable, tenant: string, a: AppModel): Promise<void> {
  await tx.query(`insert into clients (${CLIENT_COLUMNS}) values (${CLIENT_VALUES})`, [
    a.clientId,
    tenant,
    'app',
    a.description,
    ...authValues(a.auth),
    null,
    json([]),
    json([]),
    json([]),
    json([]),
    json(a.mayDelegateTo),
    null,
    null,
  ]);
}

// Parameters are sent as JSON text and cast to jsonb in SQL: both drivers then store the same
// value (pg would otherwise encode a JS array as a PostgreSQL array).
function json(value: unknown): string {
  return JSON.stringify(value);
}

function nullableJson(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}
