// Validation is the front door for hand-written files: whatever arrives, it answers with
// diagnostics at real positions, never with an exception.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validate } from './support.ts';

const KEYS = [
  'tenant',
  'settings',
  'owns',
  'federation',
  'integrations',
  'agents',
  'apps',
  'trusted_issuers',
  'users',
  'monitoring',
];

const ruleish = fc.oneof(
  fc.constantFrom(
    'payments',
    'GET https://api.example.com/v1/',
    'https://**.example.com/',
    'POST http://10.0.0.0/8/',
  ),
  fc.string(),
);
const auth = fc.record(
  {
    method: fc.constantFrom('private_key_jwt', 'client_secret_basic', 'client_secret_post', 'basic'),
    secret_env: fc.constantFrom('A_SECRET', 'a b'),
    secret_hash: fc.string(),
    jwks: fc.anything(),
    jwks_uri: fc.constantFrom('https://x.example/jwks', 'http://x', ''),
    secret: fc.string(),
  },
  { requiredKeys: [] },
);
const durationish = fc.oneof(
  fc.constantFrom('24h', '0s', '1d', '1.5h', '5 min', '9999999999h'),
  fc.anything(),
);
const sizeish = fc.oneof(
  fc.constantFrom('50MB', '50mb', '1MiB', '0', '999999999999GB', 1.5, -1, 2 ** 60),
  fc.string(),
  fc.anything(),
);
const responseish = fc.constantFrom('alert', 'revoke', 'quarantine', 'block');
const monitoringish = fc.record(
  {
    learning_period: durationish,
    detections: fc.record(
      {
        new_destination: fc.record({ response: responseish }),
        destination_burst: fc.record({
          new_hosts: fc.anything(),
          within: durationish,
          response: responseish,
        }),
        bytes_out_spike: fc.record(
          { factor: fc.oneof(fc.double(), fc.anything()), within: durationish, response: responseish },
          { requiredKeys: [] },
        ),
        new_methd: fc.anything(),
      },
      { requiredKeys: [] },
    ),
    alerts: fc.record({
      webhook: fc.record(
        {
          url: fc.oneof(
            fc.constantFrom('https://u:p@x.example/#f', 'https://', 'http://x.example'),
            fc.string(),
          ),
          secret_env: fc.constantFrom('A', '1'),
        },
        { requiredKeys: [] },
      ),
    }),
  },
  { requiredKeys: [] },
);
const policyish = fc.record(
  {
    tenant: fc.oneof(fc.constantFrom('acme', 'globex'), fc.anything()),
    settings: fc.record(
      { max_token_ttl: fc.integer(), egress_ceiling: fc.array(ruleish) },
      { requiredKeys: [] },
    ),
    owns: fc.array(ruleish),
    federation: fc.array(
      fc.record({ tenant: fc.constantFrom('acme', 'globex', 'x'), egress: fc.array(ruleish) }),
    ),
    integrations: fc.dictionary(fc.constantFrom('payments', 'crm', 'bad name'), fc.array(ruleish)),
    agents: fc.dictionary(
      fc.constantFrom('a1', 'a2', 'billing-agent'),
      fc.record(
        {
          auth,
          egress: fc.array(ruleish),
          may_act: fc.array(fc.string()),
          token_ttl: fc.anything(),
          budget: fc.record(
            { requests_per_minute: fc.oneof(fc.integer(), fc.anything()), bytes_out_per_hour: sizeish },
            { requiredKeys: [] },
          ),
        },
        { requiredKeys: [] },
      ),
    ),
    users: fc.array(
      fc.record({
        match: fc.dictionary(fc.constantFrom('sub', 'groups', 'issuer'), fc.anything()),
        egress: fc.array(ruleish),
      }),
    ),
    monitoring: monitoringish,
    anything: fc.anything(),
  },
  { requiredKeys: [] },
);

describe('validation of arbitrary input', () => {
  it('never throws and points every diagnostic at a real line and column of arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        const result = validate({ 'a.yaml': text });
        const lines = text.split('\n').length;
        for (const d of result.diagnostics) {
          expect(d.line).toBeGreaterThanOrEqual(1);
          expect(d.line).toBeLessThanOrEqual(lines + 1);
          expect(d.column).toBeGreaterThanOrEqual(1);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on policy-shaped documents with wrong values anywhere', () => {
    fc.assert(
      fc.property(fc.array(policyish, { minLength: 1, maxLength: 3 }), (docs) => {
        const files = Object.fromEntries(docs.map((doc, i) => [`f${i}.yaml`, stringify(doc)]));
        const result = validate(files);
        // A model exists exactly when there is no error.
        expect(result.model === null).toBe(result.diagnostics.some((d) => d.severity === 'error'));
        for (const d of result.diagnostics) expect(d.message.length).toBeGreaterThan(0);
      }),
      { numRuns: 200 },
    );
  });

  it('names every top-level key of the contract in the schema', () => {
    const text = KEYS.map((key) => `${key}: null`).join('\n');
    const messages = validate({ 'a.yaml': text }).diagnostics.map((d) => d.message);
    expect(messages.filter((m) => m.includes('unknown key'))).toEqual([]);
  });
});
