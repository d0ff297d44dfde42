import { describe, expect, it } from 'vitest';
import { at, errorsOf, validate, warningsOf, where, yaml } from './support.ts';

describe('the egress ceiling warning', () => {
  const file = yaml(
    'tenant: acme',
    'settings:',
    '  egress_ceiling: [payments, "GET https://**.wikipedia.org/"]',
    'integrations:',
    '  payments: ["POST,GET https://api.stripe.com/v1/"]',
    '  crm: ["https://**.salesforce.com/"]',
    'agents:',
    '  agent-a:',
    '    auth: { method: client_secret_basic, secret_env: A }',
    '    egress: [payments, "https://en.wikipedia.org/", crm]',
  );
  const result = validate({ 'a.yaml': file });

  it('does not fail validation', () => {
    expect(errorsOf(result)).toEqual([]);
    expect(result.model).not.toBeNull();
  });

  it('names the agent and the rule the ceiling narrows, and what remains', () => {
    const warning = warningsOf(result).find(
      (w) => where(w) === at('a.yaml', file, '"https://en.wikipedia.org/'),
    );
    expect(warning?.message).toContain("cuts 'https://en.wikipedia.org/' from agent 'agent-a'");
    expect(warning?.message).toContain("only 'GET https://en.wikipedia.org/' remains");
  });

  it('names the integration when the ceiling removes all of it', () => {
    const warning = warningsOf(result).find((w) => where(w) === at('a.yaml', file, 'crm]'));
    expect(warning?.message).toContain("(from integration 'crm')");
    expect(warning?.message).toContain('nothing of it remains effective');
  });

  it('is silent for grants inside the ceiling', () => {
    expect(warningsOf(result)).toHaveLength(2);
  });

  it('matches the effective egress: grant ∩ ceiling', () => {
    const agent = result.model?.tenants[0]?.agents[0];
    expect(agent?.egress).toEqual([
      'GET,POST https://api.stripe.com/v1',
      'https://**.salesforce.com/',
      'https://en.wikipedia.org/',
    ]);
    expect(agent?.effectiveEgress).toEqual([
      'GET https://en.wikipedia.org/',
      'GET,POST https://api.stripe.com/v1',
    ]);
  });
});

describe('the owned-destination warning', () => {
  const owner = (federation: string) =>
    yaml('tenant: globex', 'owns: ["https://api.globex.example/"]', ...(federation ? [federation] : []));
  const caller = yaml(
    'tenant: acme',
    'agents:',
    '  agent-a:',
    '    auth: { method: client_secret_basic, secret_env: A }',
    '    egress: ["GET https://api.globex.example/orders/", "GET https://api.stripe.com/"]',
  );

  it("warns when an agent's grant reaches another tenant's owned destinations without federation", () => {
    const result = validate({ 'a.yaml': caller, 'g.yaml': owner('') });
    const warnings = warningsOf(result);
    expect(warnings.map(where)).toEqual([at('a.yaml', caller, '"GET https://api.globex.example')]);
    expect(warnings[0]?.message).toContain(
      "which tenant 'globex' owns and does not federate to tenant 'acme'",
    );
    expect(warnings[0]?.message).toContain('cross_tenant');
  });

  it('is silent when the owner federates that destination to the tenant', () => {
    const federated = 'federation: [{ tenant: acme, egress: ["GET https://api.globex.example/orders/"] }]';
    expect(warningsOf(validate({ 'a.yaml': caller, 'g.yaml': owner(federated) }))).toEqual([]);
  });

  it('still warns when the federation covers only a part of the grant', () => {
    const partial =
      'federation: [{ tenant: acme, egress: ["GET https://api.globex.example/orders/public/"] }]';
    expect(warningsOf(validate({ 'a.yaml': caller, 'g.yaml': owner(partial) }))).toHaveLength(1);
  });

  it('still warns when the owner federates the destination only to a different tenant', () => {
    const toOther = yaml('tenant: initech');
    const federated = 'federation: [{ tenant: initech, egress: ["GET https://api.globex.example/"] }]';
    expect(
      warningsOf(validate({ 'a.yaml': caller, 'g.yaml': owner(federated), 'i.yaml': toOther })),
    ).toHaveLength(1);
  });
});

describe('the never-applies warnings', () => {
  it('warn about user rights in a tenant that trusts no issuer', () => {
    const file = yaml('tenant: acme', 'users:', '  - match: { groups: [finance] }', '    egress: []');
    const warnings = warningsOf(validate({ 'a.yaml': file }));
    expect(warnings.map(where)).toEqual([at('a.yaml', file, 'users')]);
    expect(warnings[0]?.message).toContain('no trusted_issuers');
  });

  it('warn about an app that may delegate to no agent', () => {
    const file = yaml(
      'tenant: acme',
      'apps:',
      '  portal:',
      '    auth: { method: client_secret_basic, secret_env: P }',
    );
    const warnings = warningsOf(validate({ 'a.yaml': file }));
    expect(warnings[0]?.message).toContain("app 'portal' may delegate to no agent");
  });
});
