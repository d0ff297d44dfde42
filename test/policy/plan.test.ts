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

describe('a plan of monitoring and budgets', () => {
  const monitored = (...detections: string[]) =>
    yaml(
      'tenant: acme',
      'monitoring:',
      '  learning_period: 24h',
      '  detections:',
      ...detections.map((d) => `    ${d}`),
      '  alerts:',
      '    webhook: { url: "https://hooks.acme.example/reins", secret_env: ACME_ALERT_SECRET }',
    );
  const MONITORED = monitored(
    'new_destination: { response: alert }',
    'denial_spike: { denials: 20, within: 1m, response: revoke }',
  );
  const budgeted = (budget: string | null) =>
    yaml(
      'tenant: acme',
      'agents:',
      ...agent('billing-agent', '[]', budget === null ? [] : [`    budget: ${budget}`]),
    );

  it('shows monitoring added to a tenant setting by setting, the webhook without a secret', () => {
    const text = formatPlan(planChanges(modelOf(yaml('tenant: acme')), modelOf(MONITORED)));
    expect(text).toBe(
      [
        'tenant acme',
        '  + monitoring',
        '      + learning_period: 24h',
        '      + new_destination: alert',
        '      + denial_spike: revoke on 20 denials within 1m',
        '      + webhook: https://hooks.acme.example/reins with secret_env ACME_ALERT_SECRET',
        '',
        'Plan: 1 to add, 0 to change, 0 to remove.',
        '',
      ].join('\n'),
    );
  });

  it('shows changed thresholds, responses and detections of a monitored tenant', () => {
    const after = monitored(
      'denial_spike: { denials: 10, within: 5m, response: quarantine }',
      'destination_burst: { new_hosts: 1, within: 90s, response: alert }',
      'bytes_out_spike: { factor: 2.5, within: 1h, response: alert }',
    ).replace('learning_period: 24h', 'learning_period: 0s');
    const text = formatPlan(planChanges(modelOf(MONITORED), modelOf(after)));
    expect(text).toBe(
      [
        'tenant acme',
        '  ~ monitoring',
        '      ~ learning_period: 24h → 0s',
        '      - new_destination: alert',
        '      ~ denial_spike: revoke on 20 denials within 1m → quarantine on 10 denials within 5m',
        '      + destination_burst: alert on 1 new host within 90s',
        '      + bytes_out_spike: alert on 2.5× the usual bytes out within 1h',
        '',
        'Plan: 0 to add, 1 to change, 0 to remove.',
        '',
      ].join('\n'),
    );
  });

  it('shows a new webhook URL as a change and monitoring taken away as a removal', () => {
    const moved = MONITORED.replace('hooks.acme.example/reins', 'alerts.acme.example/');
    const changed = formatPlan(planChanges(modelOf(MONITORED), modelOf(moved)));
    expect(changed).toContain(
      '      ~ webhook: https://hooks.acme.example/reins with secret_env ACME_ALERT_SECRET → ' +
        'https://alerts.acme.example/ with secret_env ACME_ALERT_SECRET',
    );
    const plan = planChanges(modelOf(MONITORED), modelOf(yaml('tenant: acme')));
    expect(formatPlan(plan)).toContain(
      ['  - monitoring', '      - learning_period: 24h', '      - new_destination: alert'].join('\n'),
    );
    expect(plan).toMatchObject({ add: 0, change: 0, remove: 1 });
  });

  it('says "No changes." when only the spelling of a duration or size changed', () => {
    const before = `${MONITORED}${budgeted('{ bytes_out_per_hour: 50MB }').replace('tenant: acme\n', '')}`;
    const after = before.replace('24h', '1440m').replace('50MB', '50000kB');
    expect(formatPlan(planChanges(modelOf(before), modelOf(after)))).toBe('No changes.\n');
  });

  it("shows an agent's budget when added with the agent, set, changed and removed", () => {
    const added = formatPlan(
      planChanges(EMPTY_POLICY, modelOf(budgeted('{ requests_per_minute: 600, bytes_out_per_hour: 50MB }'))),
    );
    expect(added).toContain('may_act none; budget 600 requests/min, 50MB out/hour)');
    const change = (from: string | null, to: string | null) =>
      planChanges(modelOf(budgeted(from)), modelOf(budgeted(to))).entries.flatMap((e) => e.lines);
    expect(change(null, '{ requests_per_minute: 600 }')).toEqual([
      { sign: '~', text: 'budget: none → 600 requests/min' },
    ]);
    expect(
      change('{ requests_per_minute: 600 }', '{ requests_per_minute: 60, bytes_out_per_hour: 1500kB }'),
    ).toEqual([{ sign: '~', text: 'budget: 600 requests/min → 60 requests/min, 1500kB out/hour' }]);
    expect(change('{ bytes_out_per_hour: 2GB }', null)).toEqual([
      { sign: '~', text: 'budget: 2GB out/hour → none' },
    ]);
  });
});
