// What an agent's client-credentials token grants (SPEC.md, "Grants"): the agent's effective
// egress (registration ∩ tenant ceiling), narrowed by what the request asks for. PURE: no I/O,
// no clock; a refusal is a value, never an exception.
//
// Narrowing is an intersection, but over-asking is refused, not cut: an agent that asks for a
// destination it is not registered for has a wrong idea of its own rights, and a silently
// smaller token would surface as a confusing denial at the gateway later.
import {
  formatRule,
  intersectRules,
  parseRule,
  type Rule,
  rulesCover,
  simplifyRules,
} from '../../egress/index.ts';
import { DEFAULT_TOKEN_TTL } from '../../policy/index.ts';
import type { AgentModel, TenantModel } from '../../policy/model.ts';

/** RFC 9396 entry of type `egress` (SPEC.md, "Tokens"). */
export interface EgressDetail {
  readonly type: 'egress';
  /** Rules without methods, canonical text. */
  readonly locations: readonly string[];
  /** Methods; absent when any method is allowed. */
  readonly actions?: readonly string[];
}

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

export function decideIssuance(tenant: TenantModel, agent: AgentModel, request: IssuanceRequest): Issuance {
  const narrowed = narrowGrant(tenant, agent.integrations, parseAll(agent.effectiveEgress), request, {
    within: "the agent's registered egress",
    cutBy: "the tenant's egress ceiling",
  });
  if (!narrowed.ok) return narrowed;
  return { ...narrowed, ttl: Math.min(agent.tokenTtl || DEFAULT_TOKEN_TTL, tenant.maxTokenTtl) };
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
    const requested = requestedRules(request.authorizationDetails);
    if (!requested.ok) return requested;
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
    authorizationDetails: egressDetails(issued),
    scope: scopeOf(tenant, integrations, issued, scopeNames),
  };
}

/** One entry per distinct method set; `actions` omitted for "any method". Deterministic order. */
export function egressDetails(rules: readonly Rule[]): EgressDetail[] {
  const groups = new Map<string, { methods: readonly string[] | null; locations: string[] }>();
  for (const rule of simplifyRules(rules)) {
    const key = rule.methods === null ? '' : rule.methods.join(',');
    const group = groups.get(key) ?? { methods: rule.methods, locations: [] };
    group.locations.push(formatRule({ ...rule, methods: null }));
    groups.set(key, group);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, { methods, locations }]) =>
      methods === null
        ? { type: 'egress', locations: locations.sort() }
        : { type: 'egress', locations: locations.sort(), actions: methods },
    );
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
    const within = intersectRules(available, parseAll(integration.rules));
    if (within.length === 0) {
      return refuse('invalid_scope', `${value} lies entirely outside ${wording.cutBy}`);
    }
    names.add(name);
    rules.push(...within);
  }
  return { ok: true, names, rules: simplifyRules(rules) };
}

export type Requested = { ok: true; rules: Rule[] } | Extract<Issuance, { ok: false }>;

export function requestedRules(details: readonly unknown[]): Requested {
  const rules: Rule[] = [];
  for (const [index, detail] of details.entries()) {
    const checked = checkEgressDetail(detail);
    if (!checked.ok) return refuse('invalid_authorization_details', `entry ${index}: ${checked.message}`);
    const methods = checked.actions === undefined ? '' : `${checked.actions.join(',')} `;
    for (const location of checked.locations) {
      const parsed = parseRule(`${methods}${location}`);
      if (!parsed.ok) {
        return refuse(
          'invalid_authorization_details',
          `entry ${index}: ${location}: ${parsed.error.message}`,
        );
      }
      rules.push(parsed.rule);
    }
  }
  return { ok: true, rules };
}

export type DetailCheck =
  | { ok: true; locations: readonly string[]; actions: readonly string[] | undefined }
  | { ok: false; message: string };

const DETAIL_MEMBERS = new Set(['type', 'locations', 'actions']);

/** The shape of one requested `egress` entry; also oidc-provider's type validator. */
export function checkEgressDetail(detail: unknown): DetailCheck {
  if (typeof detail !== 'object' || detail === null || Array.isArray(detail)) {
    return { ok: false, message: 'must be an object' };
  }
  const entry = detail as Record<string, unknown>;
  if (entry.type !== 'egress') return { ok: false, message: 'type must be "egress"' };
  for (const member of Object.keys(entry)) {
    if (!DETAIL_MEMBERS.has(member)) return { ok: false, message: `unknown member ${member}` };
  }
  const { locations, actions } = entry;
  if (!isStringList(locations) || locations.length === 0) {
    return { ok: false, message: 'locations must be a non-empty list of rules without methods' };
  }
  for (const location of locations) {
    if (/\s/.test(location))
      return { ok: false, message: `${location}: put methods in actions, not in locations` };
  }
  if (actions !== undefined && (!isStringList(actions) || actions.length === 0)) {
    return { ok: false, message: 'actions must be a non-empty list of methods, or absent for any method' };
  }
  return {
    ok: true,
    locations,
    actions: actions === undefined ? undefined : actions.map((a) => a.toUpperCase()),
  };
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '');
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
    return integration !== undefined && intersectRules(issued, parseAll(integration.rules)).length > 0;
  });
  return names.map((name) => `${SCOPE_PREFIX}${name}`).join(' ');
}

// The policy model holds canonical rule text written by formatRule, so parsing cannot fail; a
// rule that does not parse is dropped rather than widening anything.
export function parseAll(texts: readonly string[]): Rule[] {
  const rules: Rule[] = [];
  for (const text of texts) {
    const parsed = parseRule(text);
    if (parsed.ok) rules.push(parsed.rule);
  }
  return rules;
}

function refuse(error: IssuanceRefusal, detail: string): Extract<Issuance, { ok: false }> {
  return { ok: false, error, detail };
}
