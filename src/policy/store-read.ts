// Reads the applied policy back from the database as the same PolicyModel validate produces,
// so plan can compare the two and servers can load it. I/O.
import type { Db, Queryable } from '../store/db.ts';
import { compareText } from './diagnostic.ts';
import type {
  AgentModel,
  AppModel,
  BudgetModel,
  ClientAuthModel,
  MonitoringModel,
  PolicyModel,
  TenantModel,
  TrustedIssuerModel,
  UserMatchModel,
  UserRightModel,
} from './model.ts';
import type { AuthMethod, JwksData } from './shape.ts';

export interface PolicyVersion {
  readonly version: number;
  readonly contentHash: string;
  readonly appliedAt: Date;
  readonly files: readonly string[];
  readonly summary: string;
}

export interface AppliedPolicy {
  /** null: nothing applied yet. */
  readonly version: PolicyVersion | null;
  readonly model: PolicyModel;
}

export const EMPTY_POLICY: PolicyModel = { tenants: [] };

interface VersionRow {
  version: number;
  content_hash: string;
  applied_at: Date | string;
  files: string[];
  summary: string;
}

export async function readLatestVersion(db: Queryable): Promise<PolicyVersion | null> {
  const { rows } = await db.query<VersionRow>(
    'select version, content_hash, applied_at, files, summary from policy_versions order by version desc limit 1',
  );
  const row = rows[0];
  if (!row) return null;
  return {
    version: Number(row.version),
    contentHash: row.content_hash,
    appliedAt: new Date(row.applied_at),
    files: row.files,
    summary: row.summary,
  };
}

/** Whether migration 002 has run here (plan must work on a database nothing was applied to). */
export async function hasPolicyTables(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ present: boolean }>(
    "select to_regclass('policy_versions') is not null as present",
  );
  return rows[0]?.present === true;
}

/**
 * The latest applied policy, read in one repeatable-read transaction: an apply committing
 * meanwhile is seen entirely or not at all, never half.
 */
export function readAppliedPolicy(db: Db): Promise<AppliedPolicy> {
  return db.transaction(async (tx) => {
    await tx.query('set transaction isolation level repeatable read, read only');
    return readIn(tx);
  });
}

async function readIn(db: Queryable): Promise<AppliedPolicy> {
  if (!(await hasPolicyTables(db))) return { version: null, model: EMPTY_POLICY };
  const version = await readLatestVersion(db);
  const q = async <R>(sql: string) => (await db.query<R>(sql)).rows;
  const [tenants, integrations, clients, issuers, users, owned, federation] = [
    await q<TenantRow>('select id, max_token_ttl, delegation_depth, egress_ceiling, monitoring from tenants'),
    await q<IntegrationRow>('select tenant, name, rules from integrations'),
    await q<ClientRow>(`select client_id, tenant, kind, description, auth_method, jwks, jwks_uri, secret_env, secret_hash,
                         token_ttl, may_act, integrations, egress, effective_egress, may_delegate_to,
                         budget_requests_per_minute, budget_bytes_out_per_hour from clients`),
    await q<IssuerRow>(`select tenant, issuer, jwks, jwks_uri, audience, subject_claim, groups_claim, roles_claim,
                         algorithms from trusted_issuers`),
    await q<UserRow>('select tenant, id, match, integrations, egress, effective_egress from user_rights'),
    await q<OwnedRow>('select tenant, position, rule from owned_destinations'),
    await q<FederationRow>('select tenant, peer_tenant, egress from federation'),
  ];
  const of = <R extends { tenant: string }>(rows: R[], id: string) => rows.filter((r) => r.tenant === id);
  const model: PolicyModel = {
    tenants: tenants
      .map(
        (t): TenantModel => ({
          id: t.id,
          maxTokenTtl: t.max_token_ttl,
          delegationDepth: t.delegation_depth,
          ceiling: t.egress_ceiling,
          owns: of(owned, t.id)
            .sort((a, b) => a.position - b.position)
            .map((o) => o.rule),
          federation: of(federation, t.id)
            .map((f) => ({ tenant: f.peer_tenant, egress: f.egress }))
            .sort((a, b) => compareText(a.tenant, b.tenant)),
          integrations: of(integrations, t.id)
            .map((i) => ({ name: i.name, rules: i.rules }))
            .sort((a, b) => compareText(a.name, b.name)),
          agents: of(clients, t.id)
            .filter((c) => c.kind === 'agent')
            .map(agentOf)
            .sort((a, b) => compareText(a.clientId, b.clientId)),
          apps: of(clients, t.id)
            .filter((c) => c.kind === 'app')
            .map(appOf)
            .sort((a, b) => compareText(a.clientId, b.clientId)),
          trustedIssuers: of(issuers, t.id)
            .map(issuerOf)
            .sort((a, b) => compareText(a.issuer, b.issuer)),
          users: of(users, t.id)
            .map(userOf)
            .sort((a, b) => compareText(a.id, b.id)),
          monitoring: t.monitoring,
        }),
      )
      .sort((a, b) => compareText(a.id, b.id)),
  };
  return { version, model };
}

interface TenantRow {
  id: string;
  max_token_ttl: number;
  delegation_depth: number;
  egress_ceiling: string[] | null;
  /** The MonitoringModel exactly as apply wrote it (migration 008). */
  monitoring: MonitoringModel | null;
}
interface IntegrationRow {
  tenant: string;
  name: string;
  rules: string[];
}
interface ClientRow {
  client_id: string;
  tenant: string;
  kind: 'agent' | 'app';
  description: string | null;
  auth_method: AuthMethod;
  jwks: JwksData | null;
  jwks_uri: string | null;
  secret_env: string | null;
  secret_hash: string | null;
  token_ttl: number | null;
  may_act: string[];
  integrations: string[];
  egress: string[];
  effective_egress: string[];
  may_delegate_to: string[];
  budget_requests_per_minute: number | null;
  /** int8: both drivers give a number while it is exact, and validation keeps it below 2^53. */
  budget_bytes_out_per_hour: number | null;
}
interface IssuerRow {
  tenant: string;
  issuer: string;
  jwks: JwksData | null;
  jwks_uri: string | null;
  audience: string[];
  subject_claim: string;
  groups_claim: string;
  roles_claim: string;
  algorithms: string[];
}
interface UserRow {
  tenant: string;
  id: string;
  match: UserMatchModel;
  integrations: string[];
  egress: string[];
  effective_egress: string[];
}
interface OwnedRow {
  tenant: string;
  position: number;
  rule: string;
}
interface FederationRow {
  tenant: string;
  peer_tenant: string;
  egress: string[];
}

function authOf(row: ClientRow): ClientAuthModel {
  return {
    method: row.auth_method,
    jwks: row.jwks,
    jwksUri: row.jwks_uri,
    secretEnv: row.secret_env,
    secretHash: row.secret_hash,
  };
}

function agentOf(row: ClientRow): AgentModel {
  return {
    clientId: row.client_id,
    description: row.description,
    auth: authOf(row),
    tokenTtl: row.token_ttl ?? 0,
    mayAct: row.may_act,
    integrations: row.integrations,
    egress: row.egress,
    effectiveEgress: row.effective_egress,
    budget: budgetOf(row),
  };
}

/** null when neither limit is set: validation never compiles an empty budget. */
function budgetOf(row: ClientRow): BudgetModel | null {
  const requestsPerMinute = row.budget_requests_per_minute;
  const bytesOutPerHour = row.budget_bytes_out_per_hour;
  if (requestsPerMinute === null && bytesOutPerHour === null) return null;
  return { requestsPerMinute, bytesOutPerHour };
}

function appOf(row: ClientRow): AppModel {
  return {
    clientId: row.client_id,
    description: row.description,
    auth: authOf(row),
    mayDelegateTo: row.may_delegate_to,
  };
}

function issuerOf(row: IssuerRow): TrustedIssuerModel {
  return {
    issuer: row.issuer,
    jwks: row.jwks,
    jwksUri: row.jwks_uri,
    audience: row.audience,
    subjectClaim: row.subject_claim,
    groupsClaim: row.groups_claim,
    rolesClaim: row.roles_claim,
    algorithms: row.algorithms,
  };
}

function userOf(row: UserRow): UserRightModel {
  return {
    id: row.id,
    match: row.match,
    integrations: row.integrations,
    egress: row.egress,
    effectiveEgress: row.effective_egress,
  };
}
