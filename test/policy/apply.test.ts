// applyPolicy against every backend (PGlite always, PostgreSQL when DATABASE_URL is set).
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyPolicy, POLICY_CHANNEL } from '../../src/policy/apply.ts';
import { contentHash } from '../../src/policy/content-hash.ts';
import { DEFAULT_ISSUER_ALGORITHMS, type PolicyModel } from '../../src/policy/model.ts';
import type { PolicySource } from '../../src/policy/source.ts';
import { readAppliedPolicy } from '../../src/policy/store-read.ts';
import { validatePolicies } from '../../src/policy/validate.ts';
import type { Db } from '../../src/store/db.ts';
import { MIGRATIONS_DIR, migrate } from '../../src/store/migrate.ts';
import { nextValue, openMigratedDb, testBackends } from '../support/db.ts';
import { exampleSources, sourcesOf, yaml } from './support.ts';

const TABLES = [
  'tenants',
  'integrations',
  'clients',
  'trusted_issuers',
  'user_rights',
  'owned_destinations',
  'federation',
  'policy_versions',
];

/** Every policy row, order-independent, for "nothing changed" comparisons. */
async function snapshot(db: Db): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const table of TABLES) {
    const { rows } = await db.query(`select * from ${table}`);
    out[table] = rows.map((row) => JSON.stringify(row)).sort();
  }
  return out;
}

function compile(sources: PolicySource[]): { model: PolicyModel; contentHash: string; files: string[] } {
  const { model, diagnostics } = validatePolicies(sources);
  if (!model) throw new Error(JSON.stringify(diagnostics));
  return { model, contentHash: contentHash(sources), files: sources.map((s) => s.name) };
}

const SMALLER = sourcesOf({
  'acme.yaml': yaml(
    'tenant: acme',
    'agents:',
    '  research-agent:',
    '    auth: { method: client_secret_basic, secret_env: RESEARCH }',
    '    egress: ["GET https://en.wikipedia.org/"]',
  ),
});

const ISSUERS = sourcesOf({
  'acme.yaml': yaml(
    'tenant: acme',
    'trusted_issuers:',
    '  - issuer: https://login.acme.example',
    '    jwks_uri: https://login.acme.example/jwks',
    '    algorithms: [RS256, ES256, RS256]',
    '  - issuer: https://other.acme.example',
    '    jwks_uri: https://other.acme.example/jwks',
  ),
});

const MONITORED = sourcesOf({
  'acme.yaml': yaml(
    'tenant: acme',
    'monitoring:',
    '  learning_period: 0s',
    '  detections:',
    '    new_destination:   { response: alert }',
    '    destination_burst: { new_hosts: 5, within: 1m, response: quarantine }',
    '    bytes_out_spike:   { factor: 2.5, within: 5m, response: alert }',
    '  alerts:',
    '    webhook: { url: "https://hooks.acme.example/reins", secret_env: ACME_ALERT_SECRET }',
    'agents:',
    '  billing-agent:',
    '    auth: { method: client_secret_basic, secret_env: BILLING }',
    '    egress: ["POST https://api.stripe.com/v1/"]',
    '    budget: { requests_per_minute: 600, bytes_out_per_hour: 50GB }',
    '  research-agent:',
    '    auth: { method: client_secret_basic, secret_env: RESEARCH }',
    '    egress: ["GET https://en.wikipedia.org/"]',
    '    budget: { bytes_out_per_hour: 1500 }',
    '  quiet-agent:',
    '    auth: { method: client_secret_basic, secret_env: QUIET }',
    '    egress: []',
  ),
  'globex.yaml': yaml('tenant: globex'),
});

describe.each(testBackends())('applying policies on $name', (backend) => {
  let db: Db;
  beforeEach(async () => {
    db = await openMigratedDb(backend);
  });
  afterEach(async () => {
    await db.close();
  });

  it('stores exactly the validated model on an empty database', async () => {
    const input = compile(exampleSources());
    const outcome = await applyPolicy(db, input);
    expect(outcome.status).toBe('applied');
    const applied = await readAppliedPolicy(db);
    expect(applied.model).toEqual(input.model);
    expect(applied.version).toMatchObject({
      version: 1,
      contentHash: input.contentHash,
      files: ['acme.yaml', 'globex.yaml'],
    });
    expect(applied.version?.summary).toBe(
      '2 tenants, 7 integrations, 5 agents, 2 apps, 2 trusted issuers, 5 user rules',
    );
  });

  it("stores each trusted issuer's algorithms, given or default, and reads them back unchanged", async () => {
    const input = compile(ISSUERS);
    await applyPolicy(db, input);
    expect((await readAppliedPolicy(db)).model).toEqual(input.model);
    const { rows } = await db.query<{ issuer: string; algorithms: string[] }>(
      'select issuer, algorithms from trusted_issuers order by issuer',
    );
    expect(rows).toEqual([
      { issuer: 'https://login.acme.example', algorithms: ['ES256', 'RS256'] },
      { issuer: 'https://other.acme.example', algorithms: DEFAULT_ISSUER_ALGORITHMS },
    ]);
  });

  it('refuses an issuer allowing none or an HMAC algorithm even when the model skipped validation', async () => {
    await applyPolicy(db, compile(exampleSources()));
    const before = await snapshot(db);
    const good = compile(ISSUERS);
    for (const algorithms of [['HS256'], ['ES256', 'none'], []]) {
      const tenants = good.model.tenants.map((t) => ({
        ...t,
        trustedIssuers: t.trustedIssuers.map((i) => ({ ...i, algorithms })),
      }));
      await expect(applyPolicy(db, { ...good, model: { tenants } })).rejects.toThrow(/algorithms_check/);
      expect(await snapshot(db)).toEqual(before);
    }
  });

  it('stores monitoring and budgets and reads them back unchanged, null where none is declared', async () => {
    const input = compile(MONITORED);
    await applyPolicy(db, input);
    expect((await readAppliedPolicy(db)).model).toEqual(input.model);
    const tenants = await db.query<{ id: string; monitoring: unknown }>(
      'select id, monitoring from tenants order by id',
    );
    expect(tenants.rows).toEqual([
      {
        id: 'acme',
        monitoring: {
          learningPeriodMs: 0,
          newDestination: { response: 'alert' },
          destinationBurst: { newHosts: 5, withinMs: 60_000, response: 'quarantine' },
          bytesOutSpike: { factor: 2.5, withinMs: 300_000, response: 'alert' },
          webhook: { url: 'https://hooks.acme.example/reins', secretEnv: 'ACME_ALERT_SECRET' },
        },
      },
      { id: 'globex', monitoring: null },
    ]);
    const clients = await db.query(
      `select client_id, budget_requests_per_minute, budget_bytes_out_per_hour from clients order by client_id`,
    );
    expect(clients.rows).toEqual([
      { client_id: 'billing-agent', budget_requests_per_minute: 600, budget_bytes_out_per_hour: 50e9 },
      { client_id: 'quiet-agent', budget_requests_per_minute: null, budget_bytes_out_per_hour: null },
      { client_id: 'research-agent', budget_requests_per_minute: null, budget_bytes_out_per_hour: 1500 },
    ]);
  });

  it('refuses a budget of no requests even when the model skipped validation', async () => {
    await applyPolicy(db, compile(exampleSources()));
    const before = await snapshot(db);
    const good = compile(exampleSources());
    const budget = { requestsPerMinute: 0, bytesOutPerHour: null };
    const zero: PolicyModel = {
      tenants: good.model.tenants.map((t) => ({ ...t, agents: t.agents.map((a) => ({ ...a, budget })) })),
    };
    await expect(applyPolicy(db, { ...good, contentHash: 'sha256:other', model: zero })).rejects.toThrow(
      /budget_requests_per_minute_check/,
    );
    expect(await snapshot(db)).toEqual(before);
  });

  it('applied twice with the same files records one version and leaves the same state', async () => {
    const input = compile(exampleSources());
    await applyPolicy(db, input);
    const first = await snapshot(db);
    const again = await applyPolicy(db, compile(exampleSources()));
    expect(again).toMatchObject({ status: 'unchanged', version: { version: 1 } });
    expect(await snapshot(db)).toEqual(first);
  });

  it('with different files records a new version and removes agents no longer declared', async () => {
    await applyPolicy(db, compile(exampleSources()));
    const outcome = await applyPolicy(db, compile(SMALLER));
    expect(outcome).toMatchObject({ status: 'applied', version: { version: 2 }, previous: { version: 1 } });
    const { rows } = await db.query<{ client_id: string; effective_egress: string[] }>(
      'select client_id, effective_egress from clients',
    );
    expect(rows).toEqual([
      { client_id: 'research-agent', effective_egress: ['GET https://en.wikipedia.org/'] },
    ]);
    expect((await db.query('select id from tenants')).rows).toEqual([{ id: 'acme' }]);
    expect((await db.query('select count(*)::int as n from policy_versions')).rows).toEqual([{ n: 2 }]);
  });

  it('that fails half-way changes nothing', async () => {
    await applyPolicy(db, compile(exampleSources()));
    const before = await snapshot(db);
    const good = compile(SMALLER);
    // Validation never lets these through; built by hand, they fail at the database after
    // earlier rows of the same apply were written: a client id used twice, and federation to a
    // tenant that does not exist (written last of all).
    const tenant = good.model.tenants[0];
    if (!tenant) throw new Error('fixture');
    const clash: PolicyModel = { tenants: [tenant, { ...tenant, id: 'other' }] };
    const dangling: PolicyModel = {
      tenants: [{ ...tenant, federation: [{ tenant: 'nobody', egress: [] }] }],
    };
    for (const model of [clash, dangling]) {
      await expect(applyPolicy(db, { ...good, model })).rejects.toThrow();
      expect(await snapshot(db)).toEqual(before);
    }
  });

  it('never stores a plaintext secret, only references', async () => {
    await applyPolicy(db, compile(exampleSources()));
    const { rows } = await db.query<{ secret_env: string | null; secret_hash: string | null }>(
      'select secret_env, secret_hash from clients where secret_env is not null or secret_hash is not null',
    );
    for (const row of rows) {
      if (row.secret_env !== null) expect(row.secret_env).toMatch(/^[A-Z_][A-Z0-9_]*$/);
      if (row.secret_hash !== null) expect(row.secret_hash).toMatch(/^\$scrypt\$/);
    }
  });

  it('notifies listeners with the new version number once committed', async () => {
    let deliver: (payload: string) => void = () => {};
    const received = nextValue<string>((resolve) => {
      deliver = resolve;
    });
    const unlisten = await db.listen(POLICY_CHANNEL, (payload) => deliver(payload));
    await applyPolicy(db, compile(exampleSources()));
    expect(await received).toBe('1');
    await unlisten();
  });
});

// Issuers applied before migration 003 have no algorithms column: it must fill them with the
// default, so the database reads back exactly what their unchanged files compile to now.
describe.each(testBackends())('migration 003 on $name', (backend) => {
  let db: Db;
  let dir: string;
  beforeEach(async () => {
    db = await backend.open();
    dir = await mkdtemp(join(tmpdir(), 'reins-migrations-'));
  });
  afterEach(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('gives issuers applied before it the default algorithms, matching what their files compile to', async () => {
    for (const name of ['001_foundation.sql', '002_policy.sql'])
      await copyFile(join(MIGRATIONS_DIR, name), join(dir, name));
    await migrate(db, dir);
    const file = yaml(
      'tenant: acme',
      'trusted_issuers:',
      '  - issuer: https://login.acme.example',
      '    jwks_uri: https://login.acme.example/jwks',
      '    audience: portal',
    );
    const { model } = compile(sourcesOf({ 'acme.yaml': file }));
    // What apply wrote before 003, column for column.
    await db.query(
      "insert into tenants (id, max_token_ttl, delegation_depth, egress_ceiling) values ('acme', 3600, 3, null)",
    );
    await db.query(
      `insert into trusted_issuers (tenant, issuer, jwks, jwks_uri, audience, subject_claim, groups_claim, roles_claim)
       values ('acme', 'https://login.acme.example', null, 'https://login.acme.example/jwks', '["portal"]', 'sub', 'groups', 'roles')`,
    );

    expect((await migrate(db)).applied).toContain('003_issuer_algorithms.sql');
    expect((await readAppliedPolicy(db)).model).toEqual(model);
  });
});

// Tenants and agents applied before migration 008 have no monitoring or budget columns: they read
// back as not monitored and without a budget, which is what their files compile to now.
describe.each(testBackends())('migration 008 on $name', (backend) => {
  let db: Db;
  let dir: string;
  beforeEach(async () => {
    db = await backend.open();
    dir = await mkdtemp(join(tmpdir(), 'reins-migrations-'));
  });
  afterEach(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads tenants and agents applied before it as not monitored and without a budget', async () => {
    const before = (await readdir(MIGRATIONS_DIR)).filter((name) => name < '008');
    for (const name of before) await copyFile(join(MIGRATIONS_DIR, name), join(dir, name));
    await migrate(db, dir);
    const { model } = compile(SMALLER);
    // What apply wrote before 008, column for column.
    await db.query(
      "insert into tenants (id, max_token_ttl, delegation_depth, egress_ceiling) values ('acme', 3600, 3, null)",
    );
    await db.query(
      `insert into clients (client_id, tenant, kind, description, auth_method, jwks, jwks_uri, secret_env, secret_hash,
                            token_ttl, may_act, integrations, egress, effective_egress, may_delegate_to)
       values ('research-agent', 'acme', 'agent', null, 'client_secret_basic', null, null, 'RESEARCH', null,
               300, '[]', '[]', '["GET https://en.wikipedia.org/"]', '["GET https://en.wikipedia.org/"]', '[]')`,
    );

    expect((await migrate(db)).applied).toContain('008_monitoring_policy.sql');
    const applied = (await readAppliedPolicy(db)).model;
    expect(applied).toEqual(model);
    expect(applied.tenants[0]).toMatchObject({ monitoring: null, agents: [{ budget: null }] });
  });
});
