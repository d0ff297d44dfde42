// decideIssuance: what a client-credentials token grants, as a table of named cases.
import { describe, expect, it } from 'vitest';
import type { AgentModel, TenantModel } from '../../../src/policy/model.ts';
import {
  decideIssuance,
  type IssuanceRefusal,
  type IssuanceRequest,
} from '../../../src/server/provider/issuance.ts';

const tenant: TenantModel = {
  id: 'acme',
  maxTokenTtl: 600,
  delegationDepth: 3,
  ceiling: null,
  owns: [],
  federation: [],
  integrations: [
    { name: 'payments', rules: ['GET,POST https://api.stripe.com/v1'] },
    { name: 'research', rules: ['GET https://**.wikipedia.org/'] },
    { name: 'crm', rules: ['https://**.salesforce.com/services/data'] },
  ],
  agents: [],
  apps: [],
  trustedIssuers: [],
  users: [],
  monitoring: null,
};

const agent: AgentModel = {
  clientId: 'billing-agent',
  description: null,
  auth: { method: 'client_secret_basic', jwks: null, jwksUri: null, secretEnv: 'X', secretHash: null },
  tokenTtl: 120,
  mayAct: [],
  integrations: ['crm', 'payments'],
  egress: [],
  // crm was cut to GET by a ceiling.
  effectiveEgress: [
    'GET https://**.salesforce.com/services/data',
    'GET https://acme.api.saas.example/invoices',
    'GET,POST https://api.stripe.com/v1',
  ],
  budget: null,
};

const details = (...entries: object[]) => ({ authorizationDetails: entries });

describe('decideIssuance grants', () => {
  const cases: { name: string; request: IssuanceRequest; egress: string[]; scope: string }[] = [
    {
      name: 'the whole effective egress when nothing is asked',
      request: {},
      egress: [
        'GET https://**.salesforce.com/services/data',
        'GET https://acme.api.saas.example/invoices',
        'GET,POST https://api.stripe.com/v1',
      ],
      scope: 'egress:crm egress:payments',
    },
    {
      name: 'an integration asked by scope, cut to the ceiling',
      request: { scope: 'egress:crm' },
      egress: ['GET https://**.salesforce.com/services/data'],
      scope: 'egress:crm',
    },
    {
      name: 'a narrower rule asked by authorization_details',
      request: details({
        type: 'egress',
        locations: ['https://api.stripe.com/v1/refunds'],
        actions: ['POST'],
      }),
      egress: ['POST https://api.stripe.com/v1/refunds'],
      scope: 'egress:payments',
    },
    {
      name: 'scope and authorization_details together: their intersection',
      request: {
        scope: 'egress:payments egress:crm',
        ...details({ type: 'egress', locations: ['https://api.stripe.com/v1/charges'], actions: ['GET'] }),
      },
      egress: ['GET https://api.stripe.com/v1/charges'],
      scope: 'egress:payments',
    },
    {
      name: 'a destination outside every integration, which scope then does not list',
      request: details({
        type: 'egress',
        locations: ['https://acme.api.saas.example/invoices/2024'],
        actions: ['GET'],
      }),
      egress: ['GET https://acme.api.saas.example/invoices/2024'],
      scope: '',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const result = decideIssuance(tenant, agent, c.request);
      expect(result.ok).toBe(true);
      if (!result.ok) return;
      expect(result.egress).toEqual(c.egress);
      expect(result.scope).toBe(c.scope);
    });
  }
});

describe('decideIssuance refuses', () => {
  const cases: { name: string; request: IssuanceRequest; error: IssuanceRefusal; detail?: string }[] = [
    {
      name: 'a scope that is not egress:<integration>',
      request: { scope: 'openid' },
      error: 'invalid_scope',
    },
    {
      name: 'an integration the agent is not registered for',
      request: { scope: 'egress:research' },
      error: 'invalid_scope',
    },
    {
      name: 'an integration the tenant does not define',
      request: { scope: 'egress:nothing' },
      error: 'invalid_scope',
    },
    {
      name: 'a method the registration does not allow',
      request: details({
        type: 'egress',
        locations: ['https://**.salesforce.com/services/data'],
        actions: ['POST'],
      }),
      error: 'invalid_authorization_details',
    },
    {
      name: 'a wider path than registered',
      request: details({ type: 'egress', locations: ['https://acme.api.saas.example/'], actions: ['GET'] }),
      error: 'invalid_authorization_details',
    },
    {
      name: 'any method where only some are registered',
      request: details({ type: 'egress', locations: ['https://api.stripe.com/v1'] }),
      error: 'invalid_authorization_details',
    },
    {
      // RFC 9110 §9.1, docs/decisions.md: never upper-cased, or the token would grant a method
      // nobody asked for in those words.
      name: 'a method in lower case, which is not the method in upper case',
      request: details({
        type: 'egress',
        locations: ['https://api.stripe.com/v1/refunds'],
        actions: ['post'],
      }),
      error: 'invalid_authorization_details',
      detail: 'entry 0: actions: methods are case-sensitive and written in upper case: write POST',
    },
    {
      name: 'a location that is not a rule',
      request: details({ type: 'egress', locations: ['ftp://api.stripe.com/'] }),
      error: 'invalid_authorization_details',
    },
    {
      name: 'a scope and authorization_details that do not overlap',
      request: {
        scope: 'egress:crm',
        ...details({ type: 'egress', locations: ['https://api.stripe.com/v1'], actions: ['GET'] }),
      },
      error: 'invalid_authorization_details',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const result = decideIssuance(tenant, agent, c.request);
      expect(result).toMatchObject({ ok: false, error: c.error });
      if (c.detail !== undefined) expect(result).toMatchObject({ detail: c.detail });
    });
  }
});

describe('authorization_details of an issued token', () => {
  it('groups rules by method set, actions omitted for any method', () => {
    const anyMethod: AgentModel = {
      ...agent,
      effectiveEgress: ['GET https://a.example/x', 'GET https://b.example/', 'https://c.example/'],
    };
    const result = decideIssuance(tenant, anyMethod, {});
    expect(result.ok && result.authorizationDetails).toEqual([
      { type: 'egress', locations: ['https://c.example/'] },
      { type: 'egress', locations: ['https://a.example/x', 'https://b.example/'], actions: ['GET'] },
    ]);
  });

  it('lives the agent’s token_ttl, capped by the tenant’s maximum', () => {
    expect(decideIssuance(tenant, agent, {})).toMatchObject({ ttl: 120 });
    expect(decideIssuance({ ...tenant, maxTokenTtl: 60 }, agent, {})).toMatchObject({ ttl: 60 });
  });
});

describe('decideIssuance once per agent and policy version', () => {
  it('gives every request that narrows nothing the one decision made for the agent', () => {
    const first = decideIssuance(tenant, agent, {});
    expect(decideIssuance(tenant, agent, {})).toBe(first);
    expect(decideIssuance(tenant, agent, { scope: ' ', authorizationDetails: [] })).toBe(first);
  });

  it('decides afresh for the models of another policy version', () => {
    const first = decideIssuance(tenant, agent, {});
    const applied = { ...agent, effectiveEgress: ['GET https://api.stripe.com/v1'] };
    const next = decideIssuance({ ...tenant }, applied, {});
    expect(next).not.toBe(first);
    expect(next).toMatchObject({
      ok: true,
      egress: ['GET https://api.stripe.com/v1'],
      scope: 'egress:payments',
    });
  });

  it('shares a decision no caller can change', () => {
    const shared = decideIssuance(tenant, agent, {});
    if (!shared.ok) throw new Error('expected a grant');
    expect(() => (shared.egress as string[]).push('https://evil.example/')).toThrow(TypeError);
    const [detail] = shared.authorizationDetails;
    if (detail === undefined) throw new Error('expected authorization_details');
    expect(() => (detail.locations as string[]).push('https://evil.example/')).toThrow(TypeError);
    expect(decideIssuance(tenant, agent, {})).toMatchObject({ egress: shared.egress });
    expect(shared.egress).not.toContain('https://evil.example/');
  });

  it('decides a narrowing request the same way each time, whatever was decided before', () => {
    const request = details({
      type: 'egress',
      locations: ['https://api.stripe.com/v1/refunds'],
      actions: ['POST'],
    });
    const first = decideIssuance(tenant, agent, request);
    decideIssuance(tenant, agent, {});
    expect(decideIssuance(tenant, agent, request)).toEqual(first);
    expect(first).toMatchObject({ ok: true, egress: ['POST https://api.stripe.com/v1/refunds'] });
  });
});
