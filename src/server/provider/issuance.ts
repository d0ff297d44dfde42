// What an agent's client-credentials token grants (SPEC.md, "Grants"): the agent's effective
// egress (registration ∩ tenant ceiling), narrowed by what the request asks for. PURE: no I/O,
// no clock; a refusal is a value, never an exception.
//
// Narrowing is an intersection, but over-asking is refused, not cut: an agent that asks for a
// destination it is not registered for has a wrong idea of its own rights, and a silently
// smaller token would surface as a confusing denial at the gateway later.
//
// The rules come parsed once per policy version (policy-rules.ts), and a request that narrows
// nothing (the common case) gets the decision made once per agent and policy version: it depends
// on the tenant and agent models only, which an apply replaces rather than changes.
import {
  type EgressDetail,
  formatEgressDetails,
  formatRule,
  intersectRules,
  parseEgressDetails,
  type Rule,
  rulesCover,
  simplifyRules,
} from '../../egress/index.ts';
import { DEFAULT_TOKEN_TTL } from '../../policy/index.ts';
import type { AgentModel, TenantModel } from '../../policy/model.ts';
import { policyRules } from './policy-rules.ts';

export interface IssuanceRequest {
  /** The raw `scope` parameter, if sent. */
  readonly scope?: string | undefined;
  /** The parsed `authorization_details` parameter, if sent (already shape-checked by oidc-provider). */
  readonly authorizationDetails?: readonly unknown[] | undefined;
}

export type IssuanceRefusal = 'invalid_scope' | 'invalid_authorization_details';

export type Issuance =
  | {
      readonly ok: true;
      /** Canonical rule texts the token grants. */
      readonly egress: readonly string[];
      readonly authorizationDetails: readonly EgressDetail[];
      /** Space-separated `egress:<integration>` scopes, '' when none. */
      readonly scope: string;
      /** Seconds. */
      readonly ttl: number;
      /** The latest `exp` the token may carry (a delegated token: its subject token's). */
      readonly notAfter?: number;
    }
  | { readonly ok: false; readonly error: IssuanceRefusal; readonly detail: string };

const SCOPE_PREFIX = 'egress:';

/** Decisions for requests that narrow nothing, per tenant model and agent model. */
const unnarrowed = new WeakMap<TenantModel, WeakMap<AgentModel, Issuance>>();

export function decideIssuance(tenant: TenantModel, agent: AgentModel, request: IssuanceRequest): Issuance {
  if (narrowsNothing(request)) {
    let byAgent = unnarrowed.get(tenant);
    if (byAgent === undefined) {
      byAgent = new WeakMap();
      unnarrowed.set(tenant, byAgent);
    }
    let decision = byAgent.get(agent);
    if (decision === undefined) {
      // Shared by every request of this agent until the next apply: frozen, so that no caller
      // can change what the next token grants.
      decision = deepFreeze(decide(tenant, agent, {}));
      byAgent.set(agent, decision);
    }
    return decision;
  }
  return decide(tenant, agent, request);
}

function decide(tenant: TenantModel, agent: AgentModel, request: IssuanceRequest): Issuance {
  const narrowed = narrowGrant(tenant, agent.integrations, policyRules(agent.effectiveEgress), request, {
    within: "the agent's registered egress",
    cutBy: "the tenant's egress ceiling",
  });
  if (!narrowed.ok) return narrowed;
  return { ...narrowed, ttl: Math.min(agent.tokenTtl || DEFAULT_TOKEN_TTL, tenant.maxTokenTtl) };
}

function narrowsNothing(request: IssuanceRequest): boolean {
  return (
    (request.scope === undefined || request.scope.trim() === '') &&
    (request.authorizationDetails === undefined || request.authorizationDetails.length === 0)
  );
}

/** What narrowGrant says a refused request reached beyond, e.g. "the agent's registered egress". */
export interface NarrowingWording {
  readonly within: string;
  /** Why an integration the agent has can still reach nothing, e.g. "the tenant's egress ceiling". */
  readonly cutBy: string;
}

export type Narrowing = Omit<Extract<Issuance, { ok: true }>, 'ttl'> | Extract<Issuance, { ok: false }>;

/**
 * `available` narrowed by the request's `scope` and `authorization_details`; asking for anything
 * outside `available` is refused, never cut. `integrations` are the acting agent's (the names
 * `scope=egress:<name>` may use). Shared by client credentials and token exchange.
 */
export function narrowGrant(
  tenant: TenantModel,
  integrations: readonly string[],
  available: readonly Rule[],
  request: IssuanceRequest,
  wording: NarrowingWording,
): Narrowing {
  let issued: readonly Rule[] = available;

  let scopeNames: ReadonlySet<string> | null = null;
  if (request.scope !== undefined && request.scope.trim() !== '') {
    const narrowed = narrowByScope(tenant, integrations, available, request.scope, wording);
    if (!narrowed.ok) return narrowed;
    scopeNames = narrowed.names;
    issued = intersectRules(issued, narrowed.rules);
  }

  if (request.authorizationDetails !== undefined && request.authorizationDetails.length > 0) {
    const requested = parseEgressDetails(request.authorizationDetails);
    if (!requested.ok) return refuse('invalid_authorization_details', requested.message);
    for (const rule of requested.rules) {
      if (!rulesCover(available, rule)) {
        return refuse('invalid_authorization_details', `${formatRule(rule)} is not within ${wording.within}`);
      }
    }
    issued = intersectRules(issued, requested.rules);
  }

  if (issued.length === 0) {
    // Both narrowings were each within what is available but do not overlap each other.
    return refuse(
      'invalid_authorization_details',
      'the requested scope and authorization_details have nothing in common',
    );
  }

  return {
    ok: true,
    egress: issued.map(formatRule),
    authorizationDetails: formatEgressDetails(issued),
    scope: scopeOf(tenant, integrations, issued, scopeNames),
  };
}

type Narrowed = { ok: true; names: ReadonlySet<string>; rules: Rule[] } | Extract<Issuance, { ok: false }>;

function narrowByScope(
  tenant: TenantModel,
  integrations: readonly string[],
  available: readonly Rule[],
  scope: string,
  wording: NarrowingWording,
): Narrowed {
  const names = new Set<string>();
  const rules: Rule[] = [];
  for (const value of scope.split(' ').filter((s) => s !== '')) {
    if (!value.startsWith(SCOPE_PREFIX)) {
      return refuse('invalid_scope', `unknown scope ${value}; agents ask for egress:<integration>`);
    }
    const name = value.slice(SCOPE_PREFIX.length);
    const integration = tenant.integrations.find((i) => i.name === name);
    if (!integration || !integrations.includes(name)) {
      return refuse('invalid_scope', `${value} is not part of ${wording.within}`);
    }
    const within = intersectRules(available, policyRules(integration.rules));
    if (within.length === 0) {
      return refuse('invalid_scope', `${value} lies entirely outside ${wording.cutBy}`);
    }
    names.add(name);
    rules.push(...within);
  }
  return { ok: true, names, rules: simplifyRules(rules) };
}

/** The agent's integrations (∩ those asked for by scope) that the issued grant still reaches. */
function scopeOf(
  tenant: TenantModel,
  integrations: readonly string[],
  issued: readonly Rule[],
  asked: ReadonlySet<string> | null,
): string {
  const names = integrations.filter((name) => {
    if (asked !== null && !asked.has(name)) return false;
    const integration = tenant.integrations.find((i) => i.name === name);
    return integration !== undefined && intersectRules(issued, policyRules(integration.rules)).length > 0;
  });
  return names.map((name) => `${SCOPE_PREFIX}${name}`).join(' ');
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const member of Object.values(value)) deepFreeze(member);
    Object.freeze(value);
  }
  return value;
}

function refuse(error: IssuanceRefusal, detail: string): Extract<Issuance, { ok: false }> {
  return { ok: false, error, detail };
}
