// One tenant's draft → its compiled model, running every semantic check on the way: grants and
// rules resolve, names point at agents and tenants that exist, credentials are well-formed,
// lifetimes fit the tenant's maximum, no user subject is a client id, monitoring and budgets read
// as milliseconds and bytes. Every grant gets its effective egress = grant ∩ ceiling.
import { formatRule, intersectRules, type Rule, simplifyRules } from '../egress/index.ts';
import { checkClientAuth, checkIssuer } from './credentials.ts';
import { describe } from './describe.ts';
import { type Diagnostic, error, formatPosition, type Position } from './diagnostic.ts';
import { type GrantContext, parseIntegrations, type ResolvedGrant, resolveGrant } from './grants.ts';
import {
  type AgentModel,
  type AppModel,
  type ClientAuthModel,
  DEFAULT_DELEGATION_DEPTH,
  DEFAULT_GROUPS_CLAIM,
  DEFAULT_ISSUER_ALGORITHMS,
  DEFAULT_MAX_TOKEN_TTL,
  DEFAULT_ROLES_CLAIM,
  DEFAULT_SUBJECT_CLAIM,
  DEFAULT_TOKEN_TTL,
  type FederationModel,
  type TenantModel,
  type TrustedIssuerModel,
  type UserRightModel,
} from './model.ts';
import { compileBudget, compileMonitoring } from './monitoring.ts';
import {
  checkAgentNames,
  checkFederationTenant,
  checkMatchIssuer,
  type ReferenceContext,
} from './references.ts';
import type { AgentData, AuthData, UserRightData } from './shape.ts';
import { checkUserSubjects } from './subjects.ts';
import type { Located, TenantDraft } from './tenants.ts';
import { list, matchModel, renderMatch } from './user-match.ts';

/** What the warnings need besides the model: rules as values and where each grant entry is. */
export interface ResolvedTenant {
  readonly id: string;
  readonly ceiling: readonly Rule[] | null;
  readonly owns: readonly Rule[];
  /** Peer tenant → what of this tenant's owned destinations its agents may reach. */
  readonly federation: ReadonlyMap<string, readonly Rule[]>;
  readonly principals: readonly ResolvedPrincipal[];
}

export interface ResolvedPrincipal {
  readonly kind: 'agent' | 'user rule';
  readonly name: string;
  readonly at: Position;
  readonly grant: ResolvedGrant;
}

export interface CompiledTenant {
  readonly model: TenantModel;
  readonly resolved: ResolvedTenant;
}

export function compileTenant(draft: TenantDraft, refs: ReferenceContext, out: Diagnostic[]): CompiledTenant {
  const context: GrantContext = {
    tenant: draft.id,
    integrations: parseIntegrations(draft.integrations, out),
    complete: refs.complete,
  };
  const setting = <T>(key: 'max_token_ttl' | 'delegation_depth' | 'egress_ceiling') =>
    draft.settings.get(key) as Located<T> | undefined;

  const maxTokenTtl = setting<number>('max_token_ttl')?.value ?? DEFAULT_MAX_TOKEN_TTL;
  const delegationDepth = setting<number>('delegation_depth')?.value ?? DEFAULT_DELEGATION_DEPTH;
  const ceilingList = setting<readonly string[]>('egress_ceiling');
  const ceiling = ceilingList ? resolveGrant(ceilingList, context, out).rules : null;
  const effective = (rules: readonly Rule[]) => (ceiling ? intersectRules(rules, ceiling) : [...rules]);

  const owns = simplifyRules(draft.owns.flatMap((list) => resolveGrant(list, context, out).rules));
  const federation = new Map<string, Rule[]>();
  for (const entry of draft.federation) {
    const grant = resolveGrant(
      { ...entry, value: entry.value.egress, path: [...entry.path, 'egress'] },
      context,
      out,
    );
    if (!checkFederationTenant(entry, refs, out)) continue;
    federation.set(
      entry.value.tenant,
      simplifyRules([...(federation.get(entry.value.tenant) ?? []), ...grant.rules]),
    );
  }

  const principals: ResolvedPrincipal[] = [];
  const agents: AgentModel[] = [];
  for (const [clientId, agent] of draft.agents) {
    checkClientAuth(agent, out);
    const grant = resolveGrant(
      { ...agent, value: agent.value.egress, path: [...agent.path, 'egress'] },
      context,
      out,
    );
    principals.push({ kind: 'agent', name: clientId, at: agent.file.locateKey(agent.path), grant });
    agents.push({
      clientId,
      description: agent.value.description ?? null,
      auth: authModel(agent.value.auth),
      tokenTtl: tokenTtl(agent, maxTokenTtl, out),
      mayAct: checkAgentNames(agent, 'may_act', agent.value.may_act ?? [], refs, out),
      integrations: grant.integrations,
      egress: grant.rules.map(formatRule),
      effectiveEgress: effective(grant.rules).map(formatRule),
      budget: compileBudget(agent, out),
    });
  }

  const apps: AppModel[] = [];
  for (const [clientId, app] of draft.apps) {
    checkClientAuth(app, out);
    apps.push({
      clientId,
      description: app.value.description ?? null,
      auth: authModel(app.value.auth),
      mayDelegateTo: checkAgentNames(app, 'may_delegate_to', app.value.may_delegate_to ?? [], refs, out),
    });
  }

  const trustedIssuers: TrustedIssuerModel[] = draft.issuers.map((issuer) => {
    checkIssuer(issuer, out);
    const { value } = issuer;
    return {
      issuer: value.issuer,
      jwks: value.jwks ?? null,
      jwksUri: value.jwks_uri ?? null,
      audience: value.audience === undefined ? [] : list(value.audience),
      subjectClaim: value.subject_claim ?? DEFAULT_SUBJECT_CLAIM,
      groupsClaim: value.groups_claim ?? DEFAULT_GROUPS_CLAIM,
      rolesClaim: value.roles_claim ?? DEFAULT_ROLES_CLAIM,
      algorithms: list(value.algorithms ?? DEFAULT_ISSUER_ALGORITHMS),
    };
  });

  const users: UserRightModel[] = [];
  const userIds = new Map<string, Located<UserRightData>>();
  for (const user of draft.users) {
    checkMatchIssuer(user, refs, out);
    checkUserSubjects(user, refs.clients, out);
    const id = user.value.name ?? renderMatch(matchModel(user.value.match));
    const first = userIds.get(id);
    if (first) {
      out.push(duplicateUserRule(user, first, id));
      continue;
    }
    userIds.set(id, user);
    const grant = resolveGrant(
      { ...user, value: user.value.egress, path: [...user.path, 'egress'] },
      context,
      out,
    );
    principals.push({ kind: 'user rule', name: id, at: user.file.locate([...user.path, 'match']), grant });
    users.push({
      id,
      match: matchModel(user.value.match),
      integrations: grant.integrations,
      egress: grant.rules.map(formatRule),
      effectiveEgress: effective(grant.rules).map(formatRule),
    });
  }

  const model: TenantModel = {
    id: draft.id,
    maxTokenTtl,
    delegationDepth,
    ceiling: ceiling ? ceiling.map(formatRule) : null,
    owns: owns.map(formatRule),
    federation: [...federation]
      .map(([tenant, rules]): FederationModel => ({ tenant, egress: rules.map(formatRule) }))
      .sort(byKey((f) => f.tenant)),
    integrations: [...context.integrations]
      .map(([name, rules]) => ({ name, rules: rules.map(formatRule) }))
      .sort(byKey((i) => i.name)),
    agents: agents.sort(byKey((a) => a.clientId)),
    apps: apps.sort(byKey((a) => a.clientId)),
    trustedIssuers: trustedIssuers.sort(byKey((i) => i.issuer)),
    users: users.sort(byKey((u) => u.id)),
    monitoring: compileMonitoring(draft.monitoring, out),
  };
  return { model, resolved: { id: draft.id, ceiling, owns, federation, principals } };
}

function tokenTtl(agent: Located<AgentData>, maxTokenTtl: number, out: Diagnostic[]): number {
  const own = agent.value.token_ttl;
  if (own === undefined) return Math.min(DEFAULT_TOKEN_TTL, maxTokenTtl);
  if (own > maxTokenTtl) {
    const path = [...agent.path, 'token_ttl'];
    out.push(
      error(
        agent.file.locate(path),
        `${describe(path)} is ${own} seconds, above the tenant's max_token_ttl of ${maxTokenTtl}; lower it or raise settings.max_token_ttl`,
      ),
    );
    return maxTokenTtl;
  }
  return own;
}

function authModel(auth: AuthData): ClientAuthModel {
  return {
    method: auth.method,
    jwks: auth.jwks ?? null,
    jwksUri: auth.jwks_uri ?? null,
    secretEnv: auth.secret_env ?? null,
    secretHash: auth.secret_hash ?? null,
  };
}

function duplicateUserRule(
  user: Located<UserRightData>,
  first: Located<UserRightData>,
  id: string,
): Diagnostic {
  const where = formatPosition(first.file.locate(first.path));
  const reason = user.value.name
    ? `a user rule named '${id}' is already declared at ${where}; give each rule its own name`
    : `a user rule with the same match (${id}) is already declared at ${where}; merge their egress into one rule or give each a 'name'`;
  return error(user.file.locate(user.path), `${describe(user.path)}: ${reason}`);
}

function byKey<T>(key: (item: T) => string): (a: T, b: T) => number {
  return (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}
