// buildPolicyView: the applied policy compiled for the gateway's decision. Pure: the example
// policies validated in memory, no database.
import { describe, expect, it } from 'vitest';
import { formatRule, matchRules, normaliseTarget, type RuleSet } from '../../src/egress/index.ts';
import { buildPolicyView, PolicyViewError } from '../../src/gateway/policy-view.ts';
import { type PolicyModel, validatePolicies } from '../../src/policy/index.ts';
import { exampleSources } from '../policy/support.ts';

function exampleModel(): PolicyModel {
  const { model, diagnostics } = validatePolicies(exampleSources());
  if (!model) throw new Error(JSON.stringify(diagnostics));
  return model;
}

/** Whether `set` lets `request` ("METHOD url") through. */
function allows(set: RuleSet | null | undefined, request: string): boolean {
  if (!set) throw new Error(`no rule set to match ${request} against`);
  const [method = '', href = ''] = request.split(' ');
  const url = new URL(href);
  const normalised = normaliseTarget({
    method,
    scheme: url.protocol.slice(0, -1),
    host: url.hostname,
    port: url.port,
    path: url.pathname,
  });
  if (!normalised.ok) throw new Error(normalised.message);
  return matchRules(set, normalised.target);
}

const texts = (set: RuleSet | null | undefined) => set?.rules.map(formatRule);

describe('buildPolicyView', () => {
  const model = exampleModel();
  const view = buildPolicyView(model, 7);

  it('carries the version it was built from', () => {
    expect(view.version).toBe(7);
    expect(buildPolicyView({ tenants: [] }, null).version).toBeNull();
  });

  it("compiles every agent's effective egress exactly as the model states it", () => {
    const agents = model.tenants.flatMap((t) => t.agents.map((a) => ({ tenant: t.id, agent: a })));
    expect(agents.length).toBeGreaterThan(3);
    for (const { tenant, agent } of agents) {
      expect(texts(view.registration(tenant, agent.clientId)), `${tenant}/${agent.clientId}`).toEqual(
        agent.effectiveEgress,
      );
    }
  });

  it("registration answers the agent's current grant and nothing beyond it", () => {
    const billing = view.registration('acme', 'billing-agent');
    expect(allows(billing, 'POST https://api.stripe.com/v1/charges')).toBe(true);
    expect(allows(billing, 'GET https://acme.api.saas.example/invoices/42')).toBe(true);
    expect(allows(billing, 'POST https://acme.api.saas.example/invoices/42')).toBe(false);
    expect(allows(billing, 'GET https://en.wikipedia.org/wiki/Reins')).toBe(false);
  });

  it('registration is undefined for an agent not registered in that tenant', () => {
    expect(view.registration('acme', 'shipping-agent')).toBeUndefined();
    expect(view.registration('acme', 'support-portal')).toBeUndefined();
    expect(view.registration('acme', 'nobody')).toBeUndefined();
    expect(view.registration('initech', 'billing-agent')).toBeUndefined();
    expect(view.registration('globex', 'shipping-agent')).toBeDefined();
  });

  it("ceiling compiles the tenant's ceiling, and is null where there is none", () => {
    const acme = model.tenants.find((t) => t.id === 'acme');
    expect(texts(view.ceiling('acme'))).toEqual(acme?.ceiling);
    expect(allows(view.ceiling('acme'), 'GET https://api.stripe.com/v1/charges')).toBe(true);
    expect(allows(view.ceiling('acme'), 'GET https://api.shipengine.com/v1/labels')).toBe(false);
    expect(view.ceiling('globex')).toBeNull();
    expect(view.ceiling('initech')).toBeNull();
  });

  it("ownership lists only other tenants' destinations, with what each federates to the caller", () => {
    const forGlobex = view.ownership('globex');
    expect(forGlobex.map((o) => o.tenant)).toEqual(['acme']);
    const [acme] = forGlobex;
    expect(allows(acme?.owns, 'GET https://acme.api.saas.example/invoices/42')).toBe(true);
    expect(allows(acme?.federatedToCaller, 'GET https://acme.api.saas.example/public/catalogue')).toBe(true);
    expect(allows(acme?.federatedToCaller, 'GET https://acme.api.saas.example/invoices/42')).toBe(false);
    expect(allows(acme?.federatedToCaller, 'POST https://acme.api.saas.example/public/catalogue')).toBe(
      false,
    );

    const forAcme = view.ownership('acme');
    expect(forAcme.map((o) => o.tenant)).toEqual(['globex']);
    expect(allows(forAcme[0]?.owns, 'GET https://api.globex.example/tracking/1')).toBe(true);
    expect(forAcme[0]?.federatedToCaller).toBeNull();
  });

  it('ownership for a tenant outside the policy lists every owner, federating nothing', () => {
    const stranger = view.ownership('initech');
    expect(stranger.map((o) => o.tenant)).toEqual(['acme', 'globex']);
    expect(stranger.every((o) => o.federatedToCaller === null)).toBe(true);
  });

  it('ownership leaves out tenants that own nothing', () => {
    const withoutOwns: PolicyModel = {
      tenants: model.tenants.map((t) => (t.id === 'globex' ? { ...t, owns: [] } : t)),
    };
    expect(buildPolicyView(withoutOwns, 1).ownership('acme')).toEqual([]);
  });

  it('refuses a model holding a rule that does not parse, naming where it is', () => {
    const corrupt: PolicyModel = {
      tenants: model.tenants.map((t) => (t.id === 'acme' ? { ...t, owns: ['ftp://acme.example/'] } : t)),
    };
    const err = (() => {
      try {
        buildPolicyView(corrupt, 2);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(PolicyViewError);
    expect(err).toMatchObject({ code: 'invalid_rule', message: expect.stringContaining('acme: owns') });
  });
});
