import { describe, expect, it } from 'vitest';
import type { PolicyModel } from '../../src/policy/model.ts';
import { planChanges } from '../../src/policy/plan.ts';
import { formatPlan } from '../../src/policy/plan-format.ts';
import { EMPTY_POLICY } from '../../src/policy/store-read.ts';
import { validate, yaml } from './support.ts';

function modelOf(...files: string[]): PolicyModel {
  const result = validate(Object.fromEntries(files.map((text, i) => [`f${i}.yaml`, text])));
  if (!result.model) throw new Error(JSON.stringify(result.diagnostics));
  return result.model;
}

const agent = (name: string, egress: string, extra: string[] = []) => [
  `  ${name}:`,
  `    auth: { method: client_secret_basic, secret_env: ${name.toUpperCase().replaceAll('-', '_')} }`,
  `    egress: ${egress}`,
  ...extra,
];

const BEFORE = yaml(
  'tenant: acme',
  'settings: { max_token_ttl: 600 }',
  'integrations:',
  '  research: ["GET https://**.wikipedia.org/"]',
  'agents:',
  ...agent('research-agent', '[research]'),
  ...agent('old-agent', '["GET https://old.example/"]'),
  'apps:',
  '  portal:',
  '    auth: { method: client_secret_basic, secret_env: PORTAL }',
  '    may_delegate_to: [research-agent]',
);

const AFTER = yaml(
  'tenant: acme',
  'settings: { max_token_ttl: 300 }',
  'integrations:',
  '  research: ["GET https://en.wikipedia.org/"]',
  'agents:',
  ...agent('research-agent', '[research]', ['    token_ttl: 120']),
  ...agent('billing-agent', '["POST,GET https://api.stripe.com/v1/"]'),
  'apps:',
  '  portal:',
  '    auth: { method: client_secret_basic, secret_env: PORTAL }',
  '    may_delegate_to: [research-agent, billing-agent]',
);

describe('a plan', () => {
  it('says "No changes." when the applied policy is the same', () => {
    const model = modelOf(BEFORE);
    const plan = planChanges(model, modelOf(BEFORE));
    expect(plan.entries).toEqual([]);
    expect(formatPlan(plan)).toBe('No changes.\n');
  });

  it('on an empty database adds every tenant and principal with its effective egress', () => {
    const text = formatPlan(planChanges(EMPTY_POLICY, modelOf(BEFORE)));
    expect(text).toContain('tenant acme (new: max_token_ttl 600s; delegation_depth 3; egress_ceiling none)');
    expect(text).toContain(
      '  + agent research-agent (auth client_secret_basic with secret_env RESEARCH_AGENT;',
    );
    expect(text).toContain('      + GET https://**.wikipedia.org/');
    expect(text).toMatch(/Plan: 5 to add, 0 to change, 0 to remove\.\n$/);
  });

  it('shows added, removed and changed principals and destinations', () => {
    const text = formatPlan(planChanges(modelOf(BEFORE), modelOf(AFTER)));
    expect(text).toBe(
      [
        'tenant acme',
        '  ~ max_token_ttl: 600s → 300s',
        '  ~ integration research',
        '      - GET https://**.wikipedia.org/',
        '      + GET https://en.wikipedia.org/',
        '  + agent billing-agent (auth client_secret_basic with secret_env BILLING_AGENT; token_ttl 300s; may_act none)',
        '      + GET,POST https://api.stripe.com/v1',
        '  - agent old-agent',
        '      - GET https://old.example/',
        '  ~ agent research-agent',
        '      - GET https://**.wikipedia.org/',
        '      + GET https://en.wikipedia.org/',
        '      ~ token_ttl: 300s → 120s',
        '  ~ app portal',
        '      - GET https://**.wikipedia.org/',
        '      + GET https://en.wikipedia.org/',
        '      + GET,POST https://api.stripe.com/v1',
        '      ~ may_delegate_to: research-agent → billing-agent, research-agent',
        '',
        'Plan: 1 to add, 4 to change, 1 to remove.',
        '',
      ].join('\n'),
    );
  });

  it('shows a new ceiling as the destinations each grant loses', () => {
    const capped = BEFORE.replace(
      'settings: { max_token_ttl: 600 }',
      'settings: { max_token_ttl: 600, egress_ceiling: [research] }',
    );
    const plan = planChanges(modelOf(BEFORE), modelOf(capped));
    const old = plan.entries.find((e) => e.name === 'old-agent');
    expect(old?.lines).toEqual([{ sign: '-', text: 'GET https://old.example/' }]);
    expect(formatPlan(plan)).toContain('  + ceiling: GET https://**.wikipedia.org/');
  });

  it('shows a removed tenant with everything in it', () => {
    const plan = planChanges(modelOf(BEFORE), modelOf(yaml('tenant: globex')));
    const text = formatPlan(plan);
    expect(text).toContain('tenant acme (removed)');
    expect(text).toContain('  - agent old-agent');
    expect(text).toContain('tenant globex (new');
    expect(plan.remove).toBe(5);
  });

  it('shows a replaced key or changed user match as a change, never the secret itself', () => {
    const keyed = (x: string) =>
      yaml(
        'tenant: acme',
        'trusted_issuers:',
        `  - { issuer: "https://login.example.com", jwks_uri: "https://login.example.com/${x}" }`,
        'users:',
        `  - { name: finance, match: { groups: [${x}] }, egress: [] }`,
      );
    const text = formatPlan(planChanges(modelOf(keyed('a')), modelOf(keyed('b'))));
    expect(text).toContain('  ~ trusted issuer https://login.example.com');
    expect(text).toContain(
      'keys: jwks_uri https://login.example.com/a → jwks_uri https://login.example.com/b',
    );
    expect(text).toContain('      ~ match: groups=a → groups=b');
  });

  it("shows a narrowed issuer's algorithms as a change, and the default on a new issuer", () => {
    const issuer = (...extra: string[]) =>
      yaml(
        'tenant: acme',
        'trusted_issuers:',
        '  - issuer: https://login.example.com',
        '    jwks_uri: https://login.example.com/jwks',
        ...extra,
      );
    const narrowed = formatPlan(planChanges(modelOf(issuer()), modelOf(issuer('    algorithms: [ES256]'))));
    expect(narrowed).toContain('  ~ trusted issuer https://login.example.com');
    expect(narrowed).toContain('      ~ algorithms: ES256, ES384, ES512, EdDSA, PS256, RS256 → ES256');
    const added = formatPlan(planChanges(EMPTY_POLICY, modelOf(issuer())));
    expect(added).toContain('algorithms ES256, ES384, ES512, EdDSA, PS256, RS256');
  });
});
