// The monitoring commands as an operator runs them (SPEC.md, "Monitoring and containment"):
// `reins alerts list`, `reins baseline show`, `reins agent quarantine|release`, against a running
// `reins serve` that holds its embedded database (so through its admin API), and on PostgreSQL
// directly when DATABASE_URL is set.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isQuarantined } from '../../src/server/provider/quarantine.ts';
import type { Db } from '../../src/store/db.ts';
import { migrate } from '../../src/store/migrate.ts';
import { openPg } from '../../src/store/pg.ts';
import { sourcesOf } from '../policy/support.ts';
import { applySources } from '../server/provider/support.ts';
import { testDatabaseUrl, uniqueName } from '../support/db.ts';
import { runReins } from '../support/run-reins.ts';
import { type ServeProcess, startServe } from '../support/serve-process.ts';

const SECRET = 'monitoring-cli-secret-0123456789';

/** `replayer` is the agent of the replay case only; `replayerPrefix` is what it may GET. */
function policy(upstreamPort: number, replayerPrefix = '/r/'): string {
  return [
    'tenant: ops',
    'monitoring:',
    '  learning_period: 0s',
    '  detections:',
    '    new_destination: { response: alert }',
    'agents:',
    '  worker:',
    '    auth: { method: client_secret_basic, secret_env: OPS_WORKER_SECRET }',
    `    egress: ["GET http://127.0.0.1:${upstreamPort}/a/"]`,
    '  replayer:',
    '    auth: { method: client_secret_basic, secret_env: OPS_WORKER_SECRET }',
    `    egress: ["GET http://127.0.0.1:${upstreamPort}${replayerPrefix}"]`,
    '',
  ].join('\n');
}

describe('the monitoring commands against a running reins on the embedded database', () => {
  let upstream: http.Server;
  let upstreamPort = 0;
  let work = '';
  let dataDir = '';
  let serve: ServeProcess;
  let gatewayUrl = '';
  let tokenUrl = '';
  const local = () => ({ DATABASE_URL: '', REINS_SERVER: '', REINS_ADMIN_TOKEN: '' });
  const reins = (...args: string[]) => runReins([...args, '--data-dir', dataDir], local());

  beforeAll(async () => {
    upstream = http.createServer((_req, res) => res.end('upstream answered'));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    upstreamPort = (upstream.address() as AddressInfo).port;
    work = await mkdtemp(join(tmpdir(), 'reins-monitoring-cli-'));
    dataDir = join(work, 'data');
    const policies = join(work, 'policies');
    await mkdir(policies);
    await writeFile(join(policies, 'ops.yaml'), policy(upstreamPort));
    serve = await startServe({
      ...local(),
      REINS_DATA_DIR: dataDir,
      REINS_POLICIES: policies,
      REINS_PORT: '0',
      REINS_GATEWAY_PORT: '0',
      REINS_ADMIN_PORT: '0',
      REINS_GATEWAY_ALLOW_PRIVATE: '127.0.0.1/32',
      REINS_LOG_LEVEL: 'info',
      OPS_WORKER_SECRET: SECRET,
    });
    tokenUrl = serve.tokenUrl;
    gatewayUrl = serve.gatewayUrl;
  }, 120_000);

  afterAll(async () => {
    await serve?.stop();
    upstream?.close();
    await rm(work, { recursive: true, force: true });
  });

  async function token(agent = 'worker'): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(tokenUrl, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${agent}:${SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials' }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  function through(host: string, path: string, bearer: string): Promise<{ status: number; reason?: string }> {
    const gateway = new URL(gatewayUrl);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: gateway.hostname,
          port: gateway.port,
          path: `http://${host}:${upstreamPort}${path}`,
          headers: { host: `${host}:${upstreamPort}`, 'proxy-authorization': `Bearer ${bearer}` },
          agent: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const reason = res.headers['x-reins-reason'];
            resolve({ status: res.statusCode ?? 0, ...(typeof reason === 'string' ? { reason } : {}) });
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('lists the alerts raised by traffic, as a table and as JSON lines', async () => {
    const bearer = String((await token()).body.access_token);
    expect(await through('127.0.0.1', '/a/1', bearer)).toEqual({ status: 200 });
    // Learning is over at once (0s): a host never contacted raises new_destination.
    expect(await through('exfil.test', '/upload', bearer)).toEqual({
      status: 403,
      reason: 'no_matching_rule',
    });
    let run = await reins('alerts', 'list', '--json');
    for (let i = 0; i < 100 && !run.stdout.includes('exfil.test'); i++)
      run = await reins('alerts', 'list', '--json');
    expect(run.code, run.stderr).toBe(0);
    const [alert] = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(alert).toMatchObject({
      tenant: 'ops',
      agent: 'worker',
      detection: 'new_destination',
      response: 'alert',
      evidence: { hosts: ['exfil.test'] },
    });
    const table = await reins('alerts', 'list', '--tenant', 'ops');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^ID +TIME +TENANT +AGENT +DETECTION +RESPONSE +DONE +SUMMARY\n/);
    expect(table.stdout).toMatch(
      /ops +worker +new_destination +alert +- +agent worker contacted exfil\.test/,
    );
    expect((await reins('alerts', 'list', '--tenant', 'nobody')).stdout).toBe('no alerts\n');
    // The alert is also a log line of the server.
    expect(serve.output()).toContain('"rule":{"name":"new_destination"}');
  }, 60_000);

  it('shows what was learnt of an agent', async () => {
    let run = await reins('baseline', 'show', 'worker', '--tenant', 'ops');
    // Baselines are written at checkpoints, every few seconds.
    for (let i = 0; i < 100 && !run.stdout.includes('exfil.test'); i++) {
      run = await reins('baseline', 'show', 'worker', '--tenant', 'ops');
    }
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      /^agent worker of tenant ops: first seen \S+, last seen \S+; \d+ requests, 1 refused/,
    );
    expect(run.stdout).toMatch(/127\.0\.0\.1 +\S+ +\S+ +\d+ +GET +GET http:\/\/127\.0\.0\.1:\d+\/a/);
    expect(run.stdout).toMatch(/exfil\.test +\S+ +\S+ +1 +GET +\(only refused\)/);
    const unknown = await reins('baseline', 'show', 'nobody', '--tenant', 'ops');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('monitoring has learnt nothing of agent nobody of tenant ops');
  }, 60_000);

  it('quarantines an agent and releases it: its token is refused, then works again', async () => {
    const bearer = String((await token()).body.access_token);
    const quarantine = await reins(
      'agent',
      'quarantine',
      'worker',
      '--tenant',
      'ops',
      '--reason',
      'looks manipulated',
    );
    expect(quarantine.code, quarantine.stderr).toBe(0);
    expect(quarantine.stdout).toContain('agent worker of tenant ops is quarantined');
    for (let i = 0; ; i++) {
      // A request in flight when the quarantine lands is cut (the gateway's sweep): ask again.
      const answer = await through('127.0.0.1', '/a/2', bearer).catch(() => ({
        status: 0,
        reason: undefined,
      }));
      if (answer.reason === 'agent_quarantined') break;
      expect(i).toBeLessThan(200);
    }
    expect(await token()).toMatchObject({ status: 400, body: { error: 'unauthorized_client' } });
    expect((await reins('agent', 'quarantine', 'worker', '--tenant', 'ops')).stdout).toContain(
      'was already quarantined',
    );

    const release = await reins('agent', 'release', 'worker', '--tenant', 'ops');
    expect(release.code, release.stderr).toBe(0);
    expect(release.stdout).toContain('agent worker of tenant ops is released');
    for (let i = 0; ; i++) {
      if ((await through('127.0.0.1', '/a/3', bearer)).status === 200) break;
      expect(i).toBeLessThan(200);
    }
    expect((await token()).status).toBe(200);
    expect((await reins('agent', 'release', 'worker', '--tenant', 'ops')).stdout).toContain(
      'was not quarantined',
    );
  }, 60_000);

  it('replays the recorded decisions against a narrower policy: exactly the requests it would refuse', async () => {
    const bearer = String((await token('replayer')).body.access_token);
    for (const path of ['/r/keep/1', '/r/keep/2', '/r/keep/3', '/r/drop/a', '/r/drop/b', '/r/drop/a']) {
      expect(await through('127.0.0.1', path, bearer)).toEqual({ status: 200 });
    }
    expect((await through('127.0.0.1', '/other', bearer)).status).toBe(403);
    const narrower = join(work, 'narrower');
    await mkdir(narrower, { recursive: true });
    await writeFile(join(narrower, 'ops.yaml'), policy(upstreamPort, '/r/keep/'));
    const expected =
      'tenant ops, agent replayer:\n' +
      `  - would be refused: GET http://127.0.0.1:${upstreamPort}  3 requests (e.g. /r/drop/a, /r/drop/b)\n`;
    // The audit rows are written in the background: plan until the last of them is there.
    let run = await reins('policy', 'plan', narrower, '--replay', '1h');
    for (let i = 0; i < 50 && !run.stdout.includes(expected); i++) {
      run = await reins('policy', 'plan', narrower, '--replay', '1h');
    }
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`- GET http://127.0.0.1:${upstreamPort}/r`);
    expect(run.stdout).toMatch(/Replay of the last 1h: \d+ recorded requests judged under both policies\./);
    // Only the replayer's dropped requests: nothing else would be decided differently.
    expect(run.stdout.slice(run.stdout.indexOf('Replay of the last 1h'))).toMatch(
      new RegExp(`judged under both policies\\.\n\n${expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`),
    );
    const bad = await reins('policy', 'plan', narrower, '--replay', 'yesterday');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--replay "yesterday": give a period back from now, e.g. 30m, 24h or 7d');
  }, 60_000);

  it('refuses to quarantine an agent the applied policy does not have', async () => {
    const run = await reins('agent', 'quarantine', 'wroker', '--tenant', 'ops');
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('tenant ops has no agent wroker in the applied policy');
  }, 60_000);
});

describe.runIf(testDatabaseUrl())('`reins agent quarantine|release` on PostgreSQL directly', () => {
  let db: Db;
  let url = '';
  let schema = '';
  beforeAll(async () => {
    // A schema of its own, named to the command through the URL's `options` (search_path).
    schema = uniqueName('monitoring_cli');
    const base = testDatabaseUrl() as string;
    url = `${base}${base.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    db = await openPg(base, { schema });
    await migrate(db);
    await applySources(db, sourcesOf({ 'ops.yaml': policy(9) }));
  });
  afterAll(async () => {
    await db?.query(`drop schema if exists "${schema}" cascade`);
    await db?.close();
  });

  it('writes the quarantine where every gateway follows it, and releases it', async () => {
    const env = { DATABASE_URL: url, REINS_SERVER: '', REINS_ADMIN_TOKEN: '' };
    const quarantine = await runReins(['agent', 'quarantine', 'worker', '--tenant', 'ops'], env);
    expect(quarantine.code, quarantine.stderr).toBe(0);
    expect(await isQuarantined(db, 'ops', 'worker')).toBe(true);
    const { rows } = await db.query<{ reason: string }>(
      `select reason from revocations where kind = 'agent_quarantined' and agent = 'worker'`,
    );
    expect(rows).toEqual([{ reason: 'quarantined by an operator' }]);
    const release = await runReins(
      ['agent', 'release', 'worker', '--tenant', 'ops', '--reason', 'checked'],
      env,
    );
    expect(release.code, release.stderr).toBe(0);
    expect(await isQuarantined(db, 'ops', 'worker')).toBe(false);
  }, 60_000);
});
