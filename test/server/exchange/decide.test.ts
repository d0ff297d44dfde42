// decideExchange (src/server/exchange/decide.ts): one row per refusal, the worked example, and
// properties over generated grants and requests: a delegated token never reaches beyond the
// user's rights nor the agent's grant, and extending a chain never widens it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  formatEgressDetails,
  formatRule,
  matchRules,
  parseRule,
  type Rule,
} from '../../../src/egress/index.ts';
import type { AgentModel, AppModel, TenantModel, UserRightModel } from '../../../src/policy/model.ts';
import type { RegisteredClient } from '../../../src/server/clients/metadata.ts';
import {
  decideExchange,
  type ExchangeError,
  type ExchangeInput,
  type ExchangeSubject,
} from '../../../src/server/exchange/decide.ts';

import { ruleSet, targetNear } from '../../egress/arbitraries.ts';

const NOW = 1_800_000_000;

function agent(clientId: string, egress: readonly string[], extra: Partial<AgentModel> = {}): AgentModel {
  return {
    clientId,
    description: null,
    auth: { method: 'client_secret_basic', jwks: null, jwksUri: null, secretEnv: 'X', secretHash: null },
    tokenTtl: 120,
    mayAct: [],
    integrations: [],
    egress,
    effectiveEgress: egress,
    budget: null,
    ...extra,
  };
}

function app(clientId: string, mayDelegateTo: readonly string[]): AppModel {
  return {
    clientId,
    description: null,
    auth: { method: 'client_secret_basic', jwks: null, jwksUri: null, secretEnv: 'X', secretHash: null },
    mayDelegateTo,
  };
}

function tenant(
  id: string,
  agents: AgentModel[],
  apps: AppModel[] = [],
  extra: Partial<TenantModel> = {},
): TenantModel {
  return {
    id,
    maxTokenTtl: 600,
    delegationDepth: 3,
    ceiling: null,
    owns: [],
    federation: [],
    integrations: [],
    agents,
    apps,
    trustedIssuers: [],
    users: [] as UserRightModel[],
    monitoring: null,
    ...extra,
  };
}

const STRIPE = 'GET,POST https://api.stripe.com/v1';
const BILLING = agent('billing-agent', [STRIPE, 'GET https://invoices.acme.test/api'], {
  mayAct: ['report-agent'],
});
const REPORT = agent('report-agent', ['GET https://api.stripe.com/v1', 'https://crm.acme.test/'], {
  mayAct: ['audit-agent'],
});
const AUDIT = agent('audit-agent', ['GET https://api.stripe.com/v1/charges'], { tokenTtl: 60 });
const PORTAL = app('portal', ['billing-agent']);
const ACME = tenant('acme', [BILLING, REPORT, AUDIT], [PORTAL]);

const asAgent = (a: AgentModel, t: TenantModel = ACME): RegisteredClient => ({
  kind: 'agent',
  tenant: t,
  agent: a,
});
const asApp = (a: AppModel, t: TenantModel = ACME): RegisteredClient => ({ kind: 'app', tenant: t, app: a });

const FINANCE_USER: ExchangeSubject = {
  kind: 'user',
  sub: 'bob@acme.test',
  exp: NOW + 600,
  rights: { matched: ['finance'], egress: [STRIPE] },
};

function delegatedBy(
  actors: string[],
  egress: readonly string[],
  extra: Partial<ExchangeSubject> = {},
): ExchangeSubject {
  return {
    kind: 'reins',
    jti: 'parent-jti',
    tenant: 'acme',
    sub: 'bob@acme.test',
    exp: NOW + 100,
    actors,
    authorizationDetails: formatEgressDetails(egress.map(rule)),
    ...extra,
  } as ExchangeSubject;
}

function rule(text: string): Rule {
  const parsed = parseRule(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.rule;
}

const BASE: ExchangeInput = {
  client: asApp(PORTAL),
  actor: { tenant: 'acme', agent: BILLING },
  subject: FINANCE_USER,
  subjectIsClientId: false,
  request: {},
  now: NOW,
};

describe('decideExchange grants', () => {
  it('gives the worked example the user rights ∩ the agent grant, act naming the agent', () => {
    const decision = decideExchange(BASE);
    expect(decision).toMatchObject({
      ok: true,
      egress: ['GET,POST https://api.stripe.com/v1'],
      sub: 'bob@acme.test',
      act: { sub: 'billing-agent' },
      actors: ['billing-agent'],
      parentJti: null,
      ttl: 120,
    });
  });

  it('puts the new actor outermost when extending a chain, and records the parent', () => {
    const decision = decideExchange({
      ...BASE,
      client: asAgent(REPORT),
      actor: { tenant: 'acme', agent: REPORT },
      subject: delegatedBy(['billing-agent'], [STRIPE]),
    });
    expect(decision).toMatchObject({
      ok: true,
      egress: ['GET https://api.stripe.com/v1'],
      act: { sub: 'report-agent', act: { sub: 'billing-agent' } },
      parentJti: 'parent-jti',
      // min(subject expires in 100 s, report-agent 120 s, tenant 600 s)
      ttl: 100,
    });
    // Minted a second later, the token still may not outlive its subject.
    expect(decision.ok && decision.notAfter).toBe(BASE.now + 100);
  });

  it('lives no longer than the tenant maximum', () => {
    const short = { ...ACME, maxTokenTtl: 30 };
    const decision = decideExchange({ ...BASE, client: asApp(PORTAL, short) });
    expect(decision).toMatchObject({ ok: true, ttl: 30 });
  });

  it('stays inside the tenant ceiling', () => {
    const ceiling = { ...ACME, ceiling: ['POST https://api.stripe.com/v1/refunds'] };
    const decision = decideExchange({ ...BASE, client: asApp(PORTAL, ceiling) });
    expect(decision).toMatchObject({ ok: true, egress: ['POST https://api.stripe.com/v1/refunds'] });
  });
});

/** One row per refusal; a guard below fails when an error code has no row. */
const refusals: Array<{ name: string; error: ExchangeError; input: Partial<ExchangeInput>; says: string }> = [
  {
    name: 'an actor of another tenant',
    error: 'invalid_grant',
    input: { actor: { tenant: 'globex', agent: BILLING } },
    says: 'another tenant',
  },
  {
    name: 'a subject token of another tenant',
    error: 'invalid_grant',
    input: {
      client: asAgent(REPORT),
      actor: { tenant: 'acme', agent: REPORT },
      subject: delegatedBy(['billing-agent'], [STRIPE], { tenant: 'globex' }),
    },
    says: 'another tenant',
  },
  {
    name: 'a user subject named like a client',
    error: 'invalid_grant',
    input: { subjectIsClientId: true },
    says: 'client id',
  },
  {
    name: 'an app delegating to an agent it does not list',
    error: 'unauthorized_client',
    input: { actor: { tenant: 'acme', agent: REPORT } },
    says: 'may_delegate_to',
  },
  {
    name: 'a chain extended to an agent the holder’s may_act does not list',
    error: 'invalid_grant',
    input: {
      client: asAgent(AUDIT),
      actor: { tenant: 'acme', agent: AUDIT },
      subject: delegatedBy(['billing-agent'], [STRIPE]),
    },
    says: 'may_act',
  },
  {
    name: 'a chain whose holder is no longer registered',
    error: 'invalid_grant',
    input: {
      client: asAgent(REPORT),
      actor: { tenant: 'acme', agent: REPORT },
      subject: delegatedBy(['gone-agent'], [STRIPE]),
    },
    says: 'no longer registered',
  },
  {
    name: 'a chain longer than the tenant allows',
    error: 'invalid_grant',
    input: {
      client: asAgent(REPORT, { ...ACME, delegationDepth: 1 }),
      actor: { tenant: 'acme', agent: REPORT },
      subject: delegatedBy(['billing-agent'], [STRIPE]),
    },
    says: 'allows 1',
  },
  {
    name: 'a user no rule matches',
    error: 'invalid_grant',
    input: { subject: { ...FINANCE_USER, rights: { matched: [], egress: [] } } },
    says: 'no user rule',
  },
  {
    name: 'a subject token without a readable grant',
    error: 'invalid_grant',
    input: {
      client: asAgent(REPORT),
      actor: { tenant: 'acme', agent: REPORT },
      subject: delegatedBy(['billing-agent'], [], {
        authorizationDetails: 'all',
      } as Partial<ExchangeSubject>),
    },
    says: 'no readable egress grant',
  },
  {
    name: 'user rights and agent grant with nothing in common',
    error: 'invalid_target',
    input: { subject: { ...FINANCE_USER, rights: { matched: ['crm'], egress: ['https://crm.acme.test/'] } } },
    says: 'no destination in common',
  },
  {
    name: 'a scope for an integration the agent does not have',
    error: 'invalid_scope',
    input: { request: { scope: 'egress:crm' } },
    says: 'egress:crm',
  },
  {
    name: 'authorization_details beyond the intersection',
    error: 'invalid_authorization_details',
    input: {
      request: {
        authorizationDetails: [
          { type: 'egress', locations: ['https://invoices.acme.test/api'], actions: ['GET'] },
        ],
      },
    },
    says: 'not within what this delegation allows',
  },
  {
    name: 'an expired subject',
    error: 'invalid_grant',
    input: { subject: { ...FINANCE_USER, exp: NOW } },
    says: 'expired',
  },
];

describe('decideExchange refuses', () => {
  it.each(refusals)('$name with $error', ({ input, error, says }) => {
    const decision = decideExchange({ ...BASE, ...input });
    expect(decision).toMatchObject({ ok: false, error });
    if (!decision.ok) expect(decision.detail).toContain(says);
  });

  it('has a row for every error it can answer but invalid_request (the handler’s)', () => {
    const covered = new Set(refusals.map((r) => r.error));
    for (const error of [
      'invalid_grant',
      'unauthorized_client',
      'invalid_target',
      'invalid_scope',
    ] as const) {
      expect(covered).toContain(error);
    }
    expect(covered).toContain('invalid_authorization_details');
  });
});

// At least 1,000 generated cases per property (as for the grammar).
const runs = { numRuns: 1_000 };

describe('delegated egress', () => {
  const texts = (rules: readonly Rule[]) => rules.map(formatRule);

  it('never matches a request that the user rights or the agent grant would refuse', () => {
    const cases = fc
      .tuple(ruleSet, ruleSet, fc.option(ruleSet, { nil: null }))
      .chain(([agentRules, userRules, ceiling]) =>
        fc.tuple(
          fc.constant(agentRules),
          fc.constant(userRules),
          fc.constant(ceiling),
          targetNear(agentRules, userRules),
        ),
      );
    fc.assert(
      fc.property(cases, ([agentRules, userRules, ceiling, x]) => {
        const actor = agent('a', texts(agentRules));
        const t = tenant('acme', [actor], [], { ceiling: ceiling === null ? null : texts(ceiling) });
        const decision = decideExchange({
          client: asAgent(actor, t),
          actor: { tenant: 'acme', agent: actor },
          subject: { ...FINANCE_USER, rights: { matched: ['r'], egress: texts(userRules) } },
          subjectIsClientId: false,
          request: {},
          now: NOW,
        });
        if (!decision.ok) return;
        const issued = decision.egress.map(rule);
        if (matchRules(issued, x)) {
          expect(matchRules(agentRules, x)).toBe(true);
          expect(matchRules(userRules, x)).toBe(true);
          if (ceiling !== null) expect(matchRules(ceiling, x)).toBe(true);
        }
        // And it is exactly the intersection: nothing both allow is lost.
        const both = matchRules(agentRules, x) && matchRules(userRules, x);
        if (ceiling === null) expect(matchRules(issued, x)).toBe(both);
      }),
      runs,
    );
  });

  it('extending a chain never grants more than the token it extends', () => {
    const cases = fc
      .tuple(ruleSet, ruleSet)
      .chain(([parentRules, nextRules]) =>
        fc.tuple(fc.constant(parentRules), fc.constant(nextRules), targetNear(parentRules, nextRules)),
      );
    fc.assert(
      fc.property(cases, ([parentRules, nextRules, x]) => {
        const holder = agent('holder', ['https://any.example/'], { mayAct: ['next'] });
        const next = agent('next', texts(nextRules));
        const t = tenant('acme', [holder, next]);
        const decision = decideExchange({
          client: asAgent(next, t),
          actor: { tenant: 'acme', agent: next },
          subject: delegatedBy(['holder'], texts(parentRules)),
          subjectIsClientId: false,
          request: {},
          now: NOW,
        });
        if (!decision.ok) return;
        if (matchRules(decision.egress.map(rule), x)) {
          expect(matchRules(parentRules, x)).toBe(true);
          expect(matchRules(nextRules, x)).toBe(true);
        }
      }),
      runs,
    );
  });
});
