// The applied policy as the gateway's decision reads it: every rule list of the PolicyModel
// parsed and compiled into a RuleSet once per applied version, so a request costs map probes,
// never a parse (STYLE.md: canonicalise once). PURE: no I/O, no clock.
//
// A request's reach is the token's egress ∩ the agent's *current* registration ∩ the tenant's
// ceiling, minus what other tenants own unless they federate it (SPEC.md, "The gateway"); this
// view supplies the last three terms.
import { compileRuleSet, parseRule, type Rule, type RuleSet } from '../egress/index.ts';
import type { BudgetModel, PolicyModel, TenantModel } from '../policy/model.ts';

export interface OwnedDestinations {
  readonly tenant: string;
  readonly owns: RuleSet;
  /** What `tenant` federates to the caller's tenant; null: nothing. */
  readonly federatedToCaller: RuleSet | null;
}

export interface GatewayPolicyView {
  /** The applied policy version this view was built from; null: nothing applied yet. */
  readonly version: number | null;
  /** The agent's current effective grant (registration ∩ ceiling), or undefined when not registered. */
  registration(tenant: string, agent: string): RuleSet | undefined;
  /** The tenant's ceiling, or null when it has none (an unknown tenant has none either). */
  ceiling(tenant: string): RuleSet | null;
  /**
   * For a caller tenant: every *other* tenant that owns destinations, with what it federates to
   * the caller. Tenants that own nothing are left out: they can refuse nothing.
   */
  ownership(callerTenant: string): readonly OwnedDestinations[];
  /** Every agent with a budget, keyed `tenant\0agent` (the budget meter counts these only). */
  readonly budgets: ReadonlyMap<string, AgentBudget>;
}

export interface AgentBudget extends BudgetModel {
  readonly tenant: string;
  readonly agent: string;
}

export type PolicyViewErrorCode = 'invalid_rule';

/**
 * A rule in the model that does not parse. The model holds canonical rules only (validate wrote
 * them), so this means a corrupt database. Thrown rather than skipped: skipping an `owns` rule
 * would open another tenant's service, so the caller keeps the view it had instead.
 */
export class PolicyViewError extends Error {
  constructor(
    readonly code: PolicyViewErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PolicyViewError';
  }
}

export function buildPolicyView(model: PolicyModel, version: number | null): GatewayPolicyView {
  const registrations = new Map<string, ReadonlyMap<string, RuleSet>>();
  const ceilings = new Map<string, RuleSet>();
  const owners: { tenant: TenantModel; owns: RuleSet }[] = [];
  const budgets = new Map<string, AgentBudget>();

  for (const tenant of model.tenants) {
    const agents = new Map<string, RuleSet>();
    for (const agent of tenant.agents) {
      agents.set(agent.clientId, compile(agent.effectiveEgress, `${tenant.id}: agent ${agent.clientId}`));
      if (agent.budget !== null) {
        budgets.set(`${tenant.id}\0${agent.clientId}`, {
          ...agent.budget,
          tenant: tenant.id,
          agent: agent.clientId,
        });
      }
    }
    registrations.set(tenant.id, agents);
    if (tenant.ceiling !== null)
      ceilings.set(tenant.id, compile(tenant.ceiling, `${tenant.id}: egress_ceiling`));
    if (tenant.owns.length > 0) owners.push({ tenant, owns: compile(tenant.owns, `${tenant.id}: owns`) });
  }

  // One list per known caller, built now: ownership() is on every request's path. Federation
  // names only tenants of the model (validation checks it), so every caller outside the model
  // shares one list with nothing federated.
  const ownership = new Map<string, readonly OwnedDestinations[]>();
  for (const caller of model.tenants) {
    ownership.set(
      caller.id,
      owners
        .filter((owner) => owner.tenant.id !== caller.id)
        .map(({ tenant, owns }) => {
          const federated = tenant.federation.find((f) => f.tenant === caller.id);
          return {
            tenant: tenant.id,
            owns,
            federatedToCaller: federated
              ? compile(federated.egress, `${tenant.id}: federation to ${caller.id}`)
              : null,
          };
        }),
    );
  }
  const strangers: readonly OwnedDestinations[] = owners.map(({ tenant, owns }) => ({
    tenant: tenant.id,
    owns,
    federatedToCaller: null,
  }));

  return {
    version,
    registration: (tenant, agent) => registrations.get(tenant)?.get(agent),
    ceiling: (tenant) => ceilings.get(tenant) ?? null,
    ownership: (caller) => ownership.get(caller) ?? strangers,
    budgets,
  };
}

function compile(texts: readonly string[], where: string): RuleSet {
  const rules: Rule[] = [];
  for (const text of texts) {
    const parsed = parseRule(text);
    if (!parsed.ok) {
      throw new PolicyViewError(
        'invalid_rule',
        `${where}: rule ${JSON.stringify(text)} does not parse (${parsed.error.message})`,
      );
    }
    rules.push(parsed.rule);
  }
  return compileRuleSet(rules);
}
