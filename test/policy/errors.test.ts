// One row per kind of mistake: where the error points (file:line:column, computed from the
// fixture's own text) and that the message says what to write instead.
import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/policy/diagnostic.ts';
import { ACME, at, errorsOf, GLOBEX, validate, where, yaml } from './support.ts';

interface Row {
  readonly name: string;
  readonly files: Record<string, string>;
  /** Where the error must point. */
  readonly at: string;
  /** Fragments the message must contain (the mistake and the fix). */
  readonly says: readonly string[];
  /** How many errors the files produce in all (default 1: no cascade). */
  readonly errors?: number;
}

const swap = (text: string, from: string, to: string) => {
  if (!text.includes(from)) throw new Error(`fixture does not contain ${from}`);
  return text.replace(from, to);
};

const UNKNOWN_INTEGRATION = swap(ACME, 'egress: [payments]', 'egress: [paymnts]');
const BAD_RULE = swap(ACME, 'https://api.stripe.com/v1/', 'https://api.stripe.com:99999/v1/');
const BAD_QUOTED_RULE = swap(ACME, 'egress: [payments]', 'egress: [payments, "GET https://exa mple.com/"]');
const PLAINTEXT = swap(ACME, 'secret_env: BILLING_SECRET', 'secret: hunter2');
const DUPLICATE_KEY = `${ACME}    egress: []\n`;
const UNKNOWN_KEY = swap(ACME, 'egress: [payments]', 'egres: [payments]');
const WRONG_TYPE = `${ACME}    token_ttl: soon\n`;
const NOT_A_LIST = swap(ACME, 'egress: [payments]', 'egress: payments');
const BAD_METHOD = swap(ACME, 'method: client_secret_basic', 'method: client_secret_basci');
const MISSING_AUTH = swap(
  ACME,
  '    auth: { method: client_secret_basic, secret_env: BILLING_SECRET }\n',
  '',
);
const JWT_WITHOUT_KEYS = swap(
  ACME,
  'method: client_secret_basic, secret_env: BILLING_SECRET',
  'method: private_key_jwt',
);
const BAD_HASH = swap(
  ACME,
  'secret_env: BILLING_SECRET',
  'secret_hash: "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA"',
);
const PRIVATE_JWK = swap(
  ACME,
  'method: client_secret_basic, secret_env: BILLING_SECRET',
  'method: private_key_jwt, jwks: { keys: [ { kty: EC, crv: P-256, x: a, y: b, d: c } ] }',
);
const TOO_LONG_TTL = yaml(
  'tenant: acme',
  'settings: { max_token_ttl: 300 }',
  'agents:',
  '  billing-agent:',
  '    auth: { method: client_secret_basic, secret_env: BILLING_SECRET }',
  '    egress: []',
  '    token_ttl: 600',
);
const FEDERATION = `${ACME}federation:\n  - tenant: globx\n    egress: ["GET https://acme.example/public/"]\n`;
const DELEGATES_ACROSS = `${ACME}apps:\n  portal:\n    auth: { method: client_secret_basic, secret_env: PORTAL }\n    may_delegate_to: [shipping-agent]\n`;
const ACTS_UNKNOWN = `${ACME}    may_act: [report-agnet]\n`;
const CLASHING_ID = swap(GLOBEX, 'shipping-agent:', 'billing-agent:');
const SETTINGS_A = `${ACME}settings: { max_token_ttl: 600 }\n`;
const SETTINGS_B = yaml('tenant: acme', 'settings:', '  max_token_ttl: 900');
const SYNTAX = swap(ACME, 'egress: [payments]', 'egress: [payments');
const issuerWith = (algorithms: string) =>
  `${ACME}trusted_issuers:\n  - issuer: https://login.acme.example\n    jwks_uri: https://login.acme.example/jwks\n    algorithms: ${algorithms}\n`;
const HMAC_ALGORITHM = issuerWith('[ES256, HS256]');
const NONE_ALGORITHM = issuerWith('[none]');
const MISSPELT_ALGORITHM = issuerWith('[ES265]');
const userWithSub = (sub: string) => `users:\n  - match: { sub: ${sub} }\n    egress: []\n`;
const AGENT_AS_USER = `${ACME}${userWithSub('billing-agent')}`;
const AGENT_AS_OTHER_TENANTS_USER = `${GLOBEX}${userWithSub('[alice@globex.example, billing-agent]')}`;
const APP_AS_USER = `${ACME}apps:\n  portal:\n    auth: { method: client_secret_basic, secret_env: PORTAL }\n    may_delegate_to: [billing-agent]\n${userWithSub('portal')}`;
const AGENT_AS_SUB_CLAIM = `${ACME}users:\n  - match: { claims: { sub: billing-agent } }\n    egress: []\n`;
const MATCH_ISSUER = `${ACME}users:\n  - match: { issuer: https://login.nope.example, groups: [finance] }\n    egress: [payments]\n`;

const rows: Row[] = [
  {
    name: 'an integration name that is not defined',
    files: { 'a.yaml': UNKNOWN_INTEGRATION },
    at: at('a.yaml', UNKNOWN_INTEGRATION, 'paymnts'),
    says: ["unknown integration 'paymnts'", "did you mean 'payments'?", 'payments'],
  },
  {
    name: 'a rule that does not parse, at the exact column of the mistake',
    files: { 'a.yaml': BAD_RULE },
    at: at('a.yaml', BAD_RULE, '99999'),
    says: ['invalid rule', "integration 'payments'[0]", 'port must be a number from 1 to 65535'],
  },
  {
    name: 'a quoted rule, its column counted inside the quotes',
    files: { 'a.yaml': BAD_QUOTED_RULE },
    at: at('a.yaml', BAD_QUOTED_RULE, ' mple.com'),
    says: ['invalid rule', 'at most one space'],
  },
  {
    name: 'a plaintext secret',
    files: { 'a.yaml': PLAINTEXT },
    at: at('a.yaml', PLAINTEXT, 'secret: hunter2'),
    says: ["plaintext secret 'secret'", 'secret_env', 'secret_hash', 'reins policy hash-secret'],
  },
  {
    name: 'a key written twice in one map',
    files: { 'a.yaml': DUPLICATE_KEY },
    at: at('a.yaml', DUPLICATE_KEY, 'egress', 2),
    says: ["duplicate key 'egress'", 'remove one'],
  },
  {
    name: 'a misspelt key',
    files: { 'a.yaml': UNKNOWN_KEY },
    at: at('a.yaml', UNKNOWN_KEY, 'egres:'),
    says: ["unknown key 'egres' in agent 'billing-agent'", "did you mean 'egress'?"],
    errors: 2, // and, consequently, egress is missing
  },
  {
    name: 'a value of the wrong type',
    files: { 'a.yaml': WRONG_TYPE },
    at: at('a.yaml', WRONG_TYPE, 'soon'),
    says: ["agent 'billing-agent' token_ttl must be a whole number", "'soon'"],
  },
  {
    name: 'a single name where a list is expected',
    files: { 'a.yaml': NOT_A_LIST },
    at: at('a.yaml', NOT_A_LIST, 'payments', 2),
    says: ['egress must be a list', 'write [payments]'],
  },
  {
    name: 'an authentication method that does not exist',
    files: { 'a.yaml': BAD_METHOD },
    at: at('a.yaml', BAD_METHOD, 'client_secret_basci'),
    says: ["must be one of 'private_key_jwt'", "did you mean 'client_secret_basic'?"],
  },
  {
    name: 'an agent without auth',
    files: { 'a.yaml': MISSING_AUTH },
    at: at('a.yaml', MISSING_AUTH, 'billing-agent'),
    says: ["agent 'billing-agent' is missing 'auth'", 'auth: { method:'],
  },
  {
    name: 'private_key_jwt without keys',
    files: { 'a.yaml': JWT_WITHOUT_KEYS },
    at: at('a.yaml', JWT_WITHOUT_KEYS, 'auth'),
    says: ['private_key_jwt needs', "'jwks", "'jwks_uri"],
  },
  {
    name: 'a secret hash too weak to accept',
    files: { 'a.yaml': BAD_HASH },
    at: at('a.yaml', BAD_HASH, '"$scrypt'),
    says: ['salt must be at least 16 bytes'],
  },
  {
    name: 'a private key in a JWKS',
    files: { 'a.yaml': PRIVATE_JWK },
    at: at('a.yaml', PRIVATE_JWK, 'd: c'),
    says: ['private key material (d)', 'public keys only'],
  },
  {
    name: 'a token lifetime above the tenant maximum',
    files: { 'a.yaml': TOO_LONG_TTL },
    at: at('a.yaml', TOO_LONG_TTL, '600'),
    says: ["above the tenant's max_token_ttl of 300", 'lower it or raise settings.max_token_ttl'],
  },
  {
    name: 'a federation entry naming an unknown tenant',
    files: { 'a.yaml': FEDERATION, 'b.yaml': GLOBEX },
    at: at('a.yaml', FEDERATION, 'globx'),
    says: ["unknown tenant 'globx'", "did you mean 'globex'?"],
  },
  {
    name: 'an app delegating to an agent of another tenant',
    files: { 'a.yaml': DELEGATES_ACROSS, 'b.yaml': GLOBEX },
    at: at('a.yaml', DELEGATES_ACROSS, 'shipping-agent'),
    says: [
      "'shipping-agent' in app 'portal' may_delegate_to[0] is an agent of tenant 'globex'",
      "agents of tenant 'acme'",
    ],
  },
  {
    name: 'may_act naming an agent that does not exist',
    files: { 'a.yaml': ACTS_UNKNOWN },
    at: at('a.yaml', ACTS_UNKNOWN, 'report-agnet'),
    says: ["unknown agent 'report-agnet'", "agents of tenant 'acme': billing-agent"],
  },
  {
    name: 'a client id used again in another file and tenant',
    files: { 'a.yaml': ACME, 'b.yaml': CLASHING_ID },
    at: at('b.yaml', CLASHING_ID, 'billing-agent'),
    says: [
      "client id 'billing-agent' is already used",
      `at ${at('a.yaml', ACME, 'billing-agent')}`,
      'rename one',
    ],
  },
  {
    name: 'a setting declared with different values in two files of one tenant',
    files: { 'a.yaml': SETTINGS_A, 'b.yaml': SETTINGS_B },
    at: at('b.yaml', SETTINGS_B, 'max_token_ttl'),
    says: ["settings.max_token_ttl of tenant 'acme' is already set to 600", 'declare each setting once'],
  },
  {
    name: 'a YAML syntax error',
    files: { 'a.yaml': SYNTAX },
    at: 'a.yaml:9:1',
    says: ['YAML syntax', ']'],
  },
  {
    name: 'a user rule naming an issuer the tenant does not trust',
    files: { 'a.yaml': MATCH_ISSUER },
    at: at('a.yaml', MATCH_ISSUER, 'https://login.nope.example'),
    says: ['is not a trusted issuer', 'add it under trusted_issuers'],
  },
  {
    name: 'an issuer allowing an HMAC algorithm',
    files: { 'a.yaml': HMAC_ALGORITHM },
    at: at('a.yaml', HMAC_ALGORITHM, 'HS256'),
    says: [
      "trusted_issuers[0].algorithms[1] is 'HS256', a shared-secret (HMAC) algorithm",
      "issuer's public key",
      'forged',
      'e.g. [ES256, RS256]',
      "remove 'algorithms' for the default",
    ],
  },
  {
    name: "an issuer allowing 'none'",
    files: { 'a.yaml': NONE_ALGORITHM },
    at: at('a.yaml', NONE_ALGORITHM, 'none'),
    says: ["algorithms[0] is 'none': an unsigned token", 'e.g. [ES256, RS256]'],
  },
  {
    name: 'a misspelt issuer algorithm',
    files: { 'a.yaml': MISSPELT_ALGORITHM },
    at: at('a.yaml', MISSPELT_ALGORITHM, 'ES265'),
    says: ["must be one of 'ES256'", "did you mean 'ES256'?"],
  },
  {
    name: "a user rule whose sub is an agent's client id",
    files: { 'a.yaml': AGENT_AS_USER },
    at: at('a.yaml', AGENT_AS_USER, 'billing-agent', 2),
    says: [
      "users[0].match.sub 'billing-agent' is the client id of the agent 'billing-agent' of tenant 'acme'",
      `at ${at('a.yaml', AGENT_AS_USER, 'billing-agent')}`,
      'could pass for this user',
      'RFC 9700',
      'rename the agent, or fix the user rule',
    ],
  },
  {
    name: "a user rule whose sub is another tenant's agent",
    files: { 'a.yaml': ACME, 'b.yaml': AGENT_AS_OTHER_TENANTS_USER },
    at: at('b.yaml', AGENT_AS_OTHER_TENANTS_USER, 'billing-agent'),
    says: [
      "users[0].match.sub[1] 'billing-agent' is the client id of the agent 'billing-agent' of tenant 'acme'",
      `at ${at('a.yaml', ACME, 'billing-agent')}`,
      'rename the agent',
    ],
  },
  {
    name: "a user rule whose sub is an app's client id",
    files: { 'a.yaml': APP_AS_USER },
    at: at('a.yaml', APP_AS_USER, 'portal }'),
    says: ["users[0].match.sub 'portal' is the client id of the app 'portal'", 'rename the app'],
  },
  {
    name: "a user rule matching the sub claim by name with an agent's client id",
    files: { 'a.yaml': AGENT_AS_SUB_CLAIM },
    at: at('a.yaml', AGENT_AS_SUB_CLAIM, 'billing-agent', 2),
    says: ["users[0].match.claims.sub 'billing-agent' is the client id of the agent 'billing-agent'"],
  },
  {
    name: 'an empty file',
    files: { 'a.yaml': '# nothing yet\n' },
    at: 'a.yaml:1:1',
    says: ["starts with 'tenant: <id>'"],
  },
];

describe('a policy with a mistake', () => {
  it.each(rows)('reports $name at its file:line:column with the fix', (row) => {
    const result = validate(row.files);
    const errors = errorsOf(result);
    const error = errors.find((e) => where(e) === row.at);
    expect(error, `no error at ${row.at}; got:\n${errors.map(formatDiagnostic).join('\n')}`).toBeDefined();
    for (const fragment of row.says) expect(error?.message).toContain(fragment);
    expect(errors).toHaveLength(row.errors ?? 1);
    expect(result.model).toBeNull();
  });

  it('is reported with every mistake of every file in one run', () => {
    const result = validate({
      'a.yaml': UNKNOWN_INTEGRATION,
      'b.yaml': swap(GLOBEX, 'secret_env: SHIPPING_SECRET', 'secret: x'),
    });
    expect(errorsOf(result).map((e) => e.file)).toEqual(['a.yaml', 'b.yaml']);
  });

  it('reports the bad rules of a file that also has unknown keys, with every unknown key', () => {
    const text = yaml(
      'tenant: acme',
      'agents:',
      '  a1:',
      '    auth: { method: client_secret_basic, secret_env: A }',
      '    egress: ["GET ftp://files.example/"]',
      '    tokn_ttl: 60',
      '    descripton: x',
    );
    const errors = errorsOf(validate({ 'a.yaml': text }));
    expect(errors.map(where)).toEqual([
      at('a.yaml', text, 'ftp'),
      at('a.yaml', text, 'tokn_ttl'),
      at('a.yaml', text, 'descripton'),
    ]);
    expect(errors[0]?.message).toContain("invalid rule 'GET ftp://files.example/'");
    expect(errors[1]?.message).toContain("did you mean 'token_ttl'?");
    expect(errors[2]?.message).toContain("did you mean 'description'?");
  });

  it('reports the schema mistakes of a file with a duplicate key, not the duplicate alone', () => {
    const text = `${DUPLICATE_KEY}    tokn_ttl: 60\n`;
    const errors = errorsOf(validate({ 'a.yaml': text }));
    expect(errors.map(where)).toEqual([at('a.yaml', text, 'egress', 2), at('a.yaml', text, 'tokn_ttl')]);
    expect(errors[0]?.message).toContain("duplicate key 'egress'");
    expect(errors[1]?.message).toContain("unknown key 'tokn_ttl'");
  });

  it('checks the rules of integrations, ceilings, owns, federation and users in a file left out', () => {
    const text = yaml(
      'tenant: acme',
      'bogus: 1',
      'settings: { egress_ceiling: ["https://ceiling.example:0/"] }',
      'owns: ["https://owns.example:0/"]',
      'federation: [{ tenant: globex, egress: ["https://federated.example:0/"] }]',
      'integrations:',
      '  pay: ["https://integration.example:0/"]',
      'users:',
      '  - match: { groups: [g] }',
      '    egress: [pay, "https://user.example:0/"]',
    );
    const errors = errorsOf(validate({ 'a.yaml': text }));
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringContaining("unknown key 'bogus'"),
      ...['ceiling', 'owns', 'federated', 'integration', 'user'].map((host) =>
        expect.stringContaining(`invalid rule 'https://${host}.example:0/'`),
      ),
    ]);
    // An integration name is not a rule, and whether it exists waits for the schema to pass.
    expect(errors.map((e) => e.message).join('\n')).not.toContain('unknown integration');
  });

  it('in one file of a tenant holds back unknown-name errors that the broken file may explain', () => {
    const broken = yaml('tenant: acme', 'integrations:', '  payments: "not a list"');
    const user = yaml(
      'tenant: acme',
      'agents:',
      '  a1:',
      '    auth: { method: client_secret_basic, secret_env: A }',
      '    egress: [payments]',
    );
    const errors = errorsOf(validate({ 'a.yaml': broken, 'b.yaml': user }));
    expect(errors.map((e) => e.file)).toEqual(['a.yaml']);
  });
});
