// The policy keys `monitoring:` (per tenant) and `agents.<name>.budget` (SPEC.md, "Monitoring and
// containment"): what they compile to, and one row per kind of mistake, each at its
// file:line:column with what to write instead.
import { describe, expect, it } from 'vitest';
import { DETECTIONS, RESPONSES } from '../../src/monitor/policy.ts';
import { formatDiagnostic } from '../../src/policy/diagnostic.ts';
import { policySchema } from '../../src/policy/schema.ts';
import { ACME, at, errorsOf, validate, where, yaml } from './support.ts';

const MONITORING = yaml(
  'tenant: acme',
  'monitoring:',
  '  learning_period: 12h',
  '  detections:',
  '    new_destination:   { response: alert }',
  '    destination_burst: { new_hosts: 5, within: 1m, response: quarantine }',
  '    denial_spike:      { denials: 20, within: 90s, response: revoke }',
  '    bytes_out_spike:   { factor: 2.5, within: 5m, response: alert }',
  '    forbidden_address: { response: alert }',
  '    new_method:        { response: revoke }',
  '  alerts:',
  '    webhook: { url: "https://Hooks.Acme.example/reins?team=sec", secret_env: ACME_ALERT_SECRET }',
);

const withBudget = (budget: string) => `${ACME}    budget: ${budget}\n`;

describe('a tenant monitoring section', () => {
  it('compiles to milliseconds, with the webhook URL canonical and its secret by name only', () => {
    const result = validate({ 'a.yaml': MONITORING });
    expect(result.diagnostics).toEqual([]);
    expect(result.model?.tenants[0]?.monitoring).toEqual({
      learningPeriodMs: 12 * 3_600_000,
      newDestination: { response: 'alert' },
      destinationBurst: { newHosts: 5, withinMs: 60_000, response: 'quarantine' },
      denialSpike: { denials: 20, withinMs: 90_000, response: 'revoke' },
      bytesOutSpike: { factor: 2.5, withinMs: 300_000, response: 'alert' },
      forbiddenAddress: { response: 'alert' },
      newMethod: { response: 'revoke' },
      webhook: { url: 'https://hooks.acme.example/reins?team=sec', secretEnv: 'ACME_ALERT_SECRET' },
    });
  });

  it('leaves out the detections it does not declare, and learns for a day by default', () => {
    const file = yaml(
      'tenant: acme',
      'monitoring:',
      '  detections:',
      '    denial_spike: { denials: 3, within: 1m, response: alert }',
    );
    const monitoring = validate({ 'a.yaml': file }).model?.tenants[0]?.monitoring;
    expect(monitoring).toEqual({
      learningPeriodMs: 24 * 3_600_000,
      denialSpike: { denials: 3, withinMs: 60_000, response: 'alert' },
      webhook: null,
    });
    // Absent, not undefined: the model must read back from jsonb exactly as compiled.
    expect(Object.keys(monitoring ?? {}).sort()).toEqual(['denialSpike', 'learningPeriodMs', 'webhook']);
  });

  it('accepts an empty section (monitored, no detection) and a learning period of 0s', () => {
    const empty = validate({ 'a.yaml': yaml('tenant: acme', 'monitoring: {}') });
    expect(empty.model?.tenants[0]?.monitoring).toEqual({ learningPeriodMs: 86_400_000, webhook: null });
    const none = validate({ 'a.yaml': yaml('tenant: acme', 'monitoring: { learning_period: 0s }') });
    expect(none.model?.tenants[0]?.monitoring?.learningPeriodMs).toBe(0);
  });

  it('is null for a tenant that declares none: not monitored', () => {
    expect(validate({ 'a.yaml': ACME }).model?.tenants[0]?.monitoring).toBeNull();
  });

  it('may come from any one file of a tenant', () => {
    const result = validate({ 'a.yaml': ACME, 'b.yaml': MONITORING });
    expect(result.diagnostics).toEqual([]);
    expect(result.model?.tenants[0]?.monitoring?.denialSpike?.denials).toBe(20);
  });
});

describe('an agent budget', () => {
  const budgetOf = (budget: string) =>
    validate({ 'a.yaml': withBudget(budget) }).model?.tenants[0]?.agents[0]?.budget;

  it.each([
    [
      'both limits, in decimal units',
      '{ requests_per_minute: 600, bytes_out_per_hour: 50MB }',
      { requestsPerMinute: 600, bytesOutPerHour: 50_000_000 },
    ],
    ['requests only', '{ requests_per_minute: 1 }', { requestsPerMinute: 1, bytesOutPerHour: null }],
    [
      'bytes as a whole number',
      '{ bytes_out_per_hour: 1500 }',
      { requestsPerMinute: null, bytesOutPerHour: 1500 },
    ],
    [
      'bytes as a plain string',
      '{ bytes_out_per_hour: "2000" }',
      { requestsPerMinute: null, bytesOutPerHour: 2000 },
    ],
    [
      'kilobytes and gigabytes',
      '{ bytes_out_per_hour: 3GB }',
      { requestsPerMinute: null, bytesOutPerHour: 3e9 },
    ],
    ['kilobytes', '{ bytes_out_per_hour: 512kB }', { requestsPerMinute: null, bytesOutPerHour: 512_000 }],
  ])('compiles %s', (_name, budget, expected) => {
    expect(budgetOf(budget)).toEqual(expected);
  });

  it('is null for an agent that declares none', () => {
    expect(validate({ 'a.yaml': ACME }).model?.tenants[0]?.agents[0]?.budget).toBeNull();
  });
});

interface Row {
  readonly name: string;
  readonly files: Record<string, string>;
  /** Where the error must point. */
  readonly at: string;
  /** Fragments the message must contain (the mistake and the fix). */
  readonly says: readonly string[];
}

const swap = (text: string, from: string, to: string) => {
  if (!text.includes(from)) throw new Error(`fixture does not contain ${from}`);
  return text.replace(from, to);
};

const LEARNING_IN_DAYS = swap(MONITORING, 'learning_period: 12h', 'learning_period: 1d');
const WITHIN_AS_NUMBER = swap(MONITORING, 'within: 90s', 'within: 90');
const WITHIN_ZERO = swap(MONITORING, 'within: 90s', 'within: 0m');
const UNKNOWN_DETECTION = swap(MONITORING, 'new_method:', 'new_methd:');
const BAD_RESPONSE = swap(MONITORING, 'response: quarantine', 'response: block');
const RESPONSE_AS_TEXT = swap(
  MONITORING,
  'forbidden_address: { response: alert }',
  'forbidden_address: alert',
);
const NO_RESPONSE = swap(
  MONITORING,
  '{ new_hosts: 5, within: 1m, response: quarantine }',
  '{ new_hosts: 5, within: 1m }',
);
const FACTOR_ONE = swap(MONITORING, 'factor: 2.5', 'factor: 1');
const ZERO_DENIALS = swap(MONITORING, 'denials: 20', 'denials: 0');
const UNKNOWN_MONITORING_KEY = swap(MONITORING, '  learning_period: 12h', '  learning: 12h');
const WEBHOOK_FTP = swap(
  MONITORING,
  '"https://Hooks.Acme.example/reins?team=sec"',
  'ftp://hooks.acme.example/',
);
const WEBHOOK_USERINFO = swap(MONITORING, 'https://Hooks', 'https://user:pass@Hooks');
const WEBHOOK_FRAGMENT = swap(MONITORING, '?team=sec', '#alerts');
const WEBHOOK_SECRET_IN_CLEAR = swap(MONITORING, 'secret_env: ACME_ALERT_SECRET', 'secret: hunter2');
const SECOND_MONITORING = yaml('tenant: acme', 'monitoring:', '  learning_period: 1h');
const SIZE_LOWER_CASE = withBudget('{ bytes_out_per_hour: 50mb }');
const SIZE_BINARY = withBudget('{ bytes_out_per_hour: 1MiB }');
const SIZE_ZERO = withBudget('{ bytes_out_per_hour: 0 }');
const SIZE_TOO_LARGE = withBudget('{ bytes_out_per_hour: 999999999999GB }');
const BUDGET_EMPTY = withBudget('{}');
const BUDGET_UNKNOWN_KEY = withBudget('{ requests_per_hour: 600 }');
const BUDGET_ZERO_REQUESTS = withBudget('{ requests_per_minute: 0 }');

const rows: Row[] = [
  {
    name: 'a learning period in days',
    files: { 'a.yaml': LEARNING_IN_DAYS },
    at: at('a.yaml', LEARNING_IN_DAYS, '1d'),
    says: ['monitoring.learning_period', 'a duration: Ns, Nm or Nh, e.g. 24h', "'1d'", "did you mean '24h'?"],
  },
  {
    name: 'a window without a unit',
    files: { 'a.yaml': WITHIN_AS_NUMBER },
    at: at('a.yaml', WITHIN_AS_NUMBER, '90,'),
    says: ['monitoring.detections.denial_spike.within', 'a duration: Ns, Nm or Nh', 'add the unit, e.g. 90s'],
  },
  {
    name: 'a window of no time',
    files: { 'a.yaml': WITHIN_ZERO },
    at: at('a.yaml', WITHIN_ZERO, '0m'),
    says: ['denial_spike.within is 0m', 'never fire', 'at least 1s'],
  },
  {
    name: 'a misspelt detection',
    files: { 'a.yaml': UNKNOWN_DETECTION },
    at: at('a.yaml', UNKNOWN_DETECTION, 'new_methd'),
    says: ["unknown key 'new_methd' in monitoring.detections", "did you mean 'new_method'?"],
  },
  {
    name: 'a response that does not exist',
    files: { 'a.yaml': BAD_RESPONSE },
    at: at('a.yaml', BAD_RESPONSE, 'block'),
    says: ["must be one of 'alert', 'revoke' or 'quarantine', not 'block'"],
  },
  {
    name: 'a detection written as its response alone',
    files: { 'a.yaml': RESPONSE_AS_TEXT },
    at: at('a.yaml', RESPONSE_AS_TEXT, 'alert', 3),
    says: ['monitoring.detections.forbidden_address must be a map', 'write { response: alert }'],
  },
  {
    name: 'a detection without a response',
    files: { 'a.yaml': NO_RESPONSE },
    at: at('a.yaml', NO_RESPONSE, 'destination_burst'),
    says: ["destination_burst is missing 'response'", 'add response: alert, revoke or quarantine'],
  },
  {
    name: 'a bytes-out factor that would fire on usual traffic',
    files: { 'a.yaml': FACTOR_ONE },
    at: at('a.yaml', FACTOR_ONE, '1, within: 5m'),
    says: ['bytes_out_spike.factor must be more than 1, not 1', 'usual traffic'],
  },
  {
    name: 'a threshold of zero denials',
    files: { 'a.yaml': ZERO_DENIALS },
    at: at('a.yaml', ZERO_DENIALS, '0, within: 90s'),
    says: ['denial_spike.denials must be at least 1, not 0'],
  },
  {
    name: 'an unknown key in monitoring',
    files: { 'a.yaml': UNKNOWN_MONITORING_KEY },
    at: at('a.yaml', UNKNOWN_MONITORING_KEY, 'learning:'),
    says: ["unknown key 'learning' in monitoring", 'learning_period'],
  },
  {
    name: 'a webhook that is not http(s)',
    files: { 'a.yaml': WEBHOOK_FTP },
    at: at('a.yaml', WEBHOOK_FTP, 'ftp://'),
    says: ["monitoring.alerts.webhook.url 'ftp://hooks.acme.example/'", 'http:// or https:// URL'],
  },
  {
    name: 'a webhook URL carrying a password',
    files: { 'a.yaml': WEBHOOK_USERINFO },
    at: at('a.yaml', WEBHOOK_USERINFO, '"https://user'),
    says: ['must not carry a user name or password', 'X-Reins-Signature'],
  },
  {
    name: 'a webhook URL with a fragment',
    files: { 'a.yaml': WEBHOOK_FRAGMENT },
    at: at('a.yaml', WEBHOOK_FRAGMENT, '"https://'),
    says: ['must not have a #fragment'],
  },
  {
    name: 'a webhook secret in clear',
    files: { 'a.yaml': WEBHOOK_SECRET_IN_CLEAR },
    at: at('a.yaml', WEBHOOK_SECRET_IN_CLEAR, 'secret: hunter2'),
    says: ["plaintext secret 'secret' in monitoring.alerts.webhook", 'secret_env'],
  },
  {
    name: 'monitoring declared in two files of one tenant',
    files: { 'a.yaml': MONITORING, 'b.yaml': SECOND_MONITORING },
    at: at('b.yaml', SECOND_MONITORING, 'monitoring'),
    says: [
      "monitoring of tenant 'acme' is already declared at",
      at('a.yaml', MONITORING, 'monitoring'),
      'declare monitoring in one file of the tenant',
    ],
  },
  {
    name: 'a size in lower case',
    files: { 'a.yaml': SIZE_LOWER_CASE },
    at: at('a.yaml', SIZE_LOWER_CASE, '50mb'),
    says: [
      "agent 'billing-agent' budget.bytes_out_per_hour",
      'a size: N, NkB, NMB or NGB (decimal), e.g. 50MB',
      "did you mean '50MB'?",
    ],
  },
  {
    name: 'a size in binary units',
    files: { 'a.yaml': SIZE_BINARY },
    at: at('a.yaml', SIZE_BINARY, '1MiB'),
    says: ['a size: N, NkB, NMB or NGB', "did you mean '1048576'?"],
  },
  {
    name: 'a budget of no bytes',
    files: { 'a.yaml': SIZE_ZERO },
    at: at('a.yaml', SIZE_ZERO, '0 }'),
    says: ['bytes_out_per_hour is 0', 'raise it'],
  },
  {
    name: 'a size too large to count',
    files: { 'a.yaml': SIZE_TOO_LARGE },
    at: at('a.yaml', SIZE_TOO_LARGE, '999999999999GB'),
    says: ['is too large', 'at most 9000000GB'],
  },
  {
    name: 'an empty budget',
    files: { 'a.yaml': BUDGET_EMPTY },
    at: at('a.yaml', BUDGET_EMPTY, 'budget'),
    says: [
      "agent 'billing-agent' budget needs at least one limit: requests_per_minute or bytes_out_per_hour",
    ],
  },
  {
    name: 'an unknown key in a budget',
    files: { 'a.yaml': BUDGET_UNKNOWN_KEY },
    at: at('a.yaml', BUDGET_UNKNOWN_KEY, 'requests_per_hour'),
    says: ["unknown key 'requests_per_hour' in agent 'billing-agent' budget", 'requests_per_minute'],
  },
  {
    name: 'a budget of no requests',
    files: { 'a.yaml': BUDGET_ZERO_REQUESTS },
    at: at('a.yaml', BUDGET_ZERO_REQUESTS, '0 }'),
    says: ['budget.requests_per_minute must be at least 1, not 0'],
  },
];

describe('a monitoring or budget mistake', () => {
  it.each(rows)('reports $name at its file:line:column with the fix', (row) => {
    const result = validate(row.files);
    const errors = errorsOf(result);
    const error = errors.find((e) => where(e) === row.at);
    expect(error, `no error at ${row.at}; got:\n${errors.map(formatDiagnostic).join('\n')}`).toBeDefined();
    for (const fragment of row.says) expect(error?.message).toContain(fragment);
    expect(errors).toHaveLength(1);
    expect(result.model).toBeNull();
  });
});

describe('the schema of monitoring', () => {
  type Node = { properties?: Record<string, Node>; enum?: unknown[] };
  const definitions = policySchema().definitions as Record<string, Node>;
  const detections = definitions.monitoring?.properties?.detections?.properties ?? {};

  it('lists exactly the detections the monitor runs', () => {
    expect(Object.keys(detections).sort()).toEqual([...DETECTIONS].sort());
  });

  it('lists exactly the responses the monitor carries out', () => {
    expect(definitions.response?.enum).toEqual([...RESPONSES]);
  });
});
