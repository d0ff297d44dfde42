// Operating a running reins on the embedded database (issue 11, "Operating a running reins"):
// while `reins serve` holds the data directory, `reins audit tail` and `reins policy
// plan|apply` go through its admin API; SIGHUP re-reads REINS_POLICIES; an invalid edit is
// refused and the applied version stays; the admin API refuses callers without its credential.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runReins } from '../support/run-reins.ts';
import { type ServeProcess, startServe } from '../support/serve-process.ts';

const SECRET = 'operate-test-secret-0123456789';

let upstream: http.Server;
let upstreamPort = 0;
const seen: string[] = [];
let work = '';
let dataDir = '';
let policies = '';
let server: ChildProcess;
let serve: ServeProcess;
let gatewayUrl = '';
let adminUrl = '';
let tokenUrl = '';

function policy(prefix: string): string {
  return [
    'tenant: ops',
    'agents:',
    '  worker:',
    '    auth: { method: client_secret_basic, secret_env: OPS_WORKER_SECRET }',
    `    egress: ["GET http://127.0.0.1:${upstreamPort}/${prefix}/"]`,
    '',
  ].join('\n');
}

const env = () => ({
  DATABASE_URL: '',
  REINS_DATA_DIR: dataDir,
  REINS_POLICIES: policies,
  REINS_PORT: '0',
  REINS_GATEWAY_PORT: '0',
  REINS_ADMIN_PORT: '0',
  REINS_GATEWAY_ALLOW_PRIVATE: '127.0.0.1/32',
  REINS_LOG_LEVEL: 'info',
  REINS_ADMIN_TOKEN: '',
  REINS_SERVER: '',
  OPS_WORKER_SECRET: SECRET,
});

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    res.end('upstream answered');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamPort = (upstream.address() as AddressInfo).port;
  work = await mkdtemp(join(tmpdir(), 'reins-operate-'));
  dataDir = join(work, 'data');
  policies = join(work, 'policies');
  await mkdir(policies);
  await writeFile(join(policies, 'ops.yaml'), policy('a'));
  serve = await startServe(env());
  server = serve.process;
  tokenUrl = serve.tokenUrl;
  gatewayUrl = serve.gatewayUrl;
  adminUrl = serve.adminUrl;
}, 120_000);

afterAll(async () => {
  server?.kill('SIGTERM');
  if (server && server.exitCode === null) await once(server, 'close');
  upstream?.close();
  await rm(work, { recursive: true, force: true });
});

async function token(): Promise<string> {
  const response = await fetch(tokenUrl, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`worker:${SECRET}`).toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'client_credentials' }),
  });
  const body = (await response.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token: ${JSON.stringify(body)}`);
  return body.access_token;
}

/** GET through the gateway (absolute form): the status and the reason it gave, if any. */
function through(path: string, bearer: string): Promise<{ status: number; reason: string | undefined }> {
  const gateway = new URL(gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: gateway.hostname,
        port: gateway.port,
        method: 'GET',
        path: `http://127.0.0.1:${upstreamPort}${path}`,
        headers: { host: `127.0.0.1:${upstreamPort}`, 'proxy-authorization': `Bearer ${bearer}` },
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => {
          const reason =
            res.statusCode === 200 ? undefined : (JSON.parse(body) as { reason?: string }).reason;
          resolve({ status: res.statusCode ?? 0, reason });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Polls until `path` gets `status`, for at most `withinMs`; resolves to how long it took. */
async function until(path: string, bearer: string, status: number, withinMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const answer = await through(path, bearer);
    const elapsed = performance.now() - started;
    if (answer.status === status) return elapsed;
    if (elapsed > withinMs)
      throw new Error(`${path} still answered ${answer.status} after ${Math.round(elapsed)} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function logLine(text: string): Promise<string> {
  while (!serve.output().includes(text)) await once(server.stdout as NodeJS.ReadableStream, 'data');
  const output = serve.output();
  return output.slice(output.indexOf(text) - 400, output.indexOf(text) + 600);
}

describe('a running reins on the embedded database, operated from another terminal', () => {
  it('leaves its admin URL and credential for local commands, readable by its user only', async () => {
    const handle = JSON.parse(await readFile(join(dataDir, 'admin.json'), 'utf8')) as Record<string, unknown>;
    expect(handle).toMatchObject({ url: adminUrl, pid: server.pid });
    expect(String(handle.token)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const { stat } = await import('node:fs/promises');
    expect((await stat(join(dataDir, 'admin.json'))).mode & 0o777).toBe(0o600);
  });

  it('refuses admin API callers without the credential, and tells them nothing', async () => {
    for (const authorization of [undefined, 'Bearer wrong-credential', 'Basic YWRtaW46YWRtaW4=']) {
      const response = await fetch(`${adminUrl}/admin/v1/audit/events?limit=5`, {
        headers: authorization ? { authorization } : {},
      });
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toBe('Bearer realm="reins-admin"');
      expect(await response.text()).not.toContain('events');
    }
    const apply = await fetch(`${adminUrl}/admin/v1/policy/apply`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sources: [{ file: 'x.yaml', name: 'x.yaml', text: 'tenant: x\n' }] }),
    });
    expect(apply.status).toBe(401);
    expect(serve.output()).not.toContain('policy apply through the admin API');
  });

  it('`reins audit tail` shows the decisions just made', async () => {
    const bearer = await token();
    expect(await through('/a/audited', bearer)).toEqual({ status: 200, reason: undefined });
    expect(await through('/elsewhere', bearer)).toMatchObject({ status: 403, reason: 'path_not_allowed' });
    // Audit rows are written in the background: poll the command until both are there.
    let run = await runReins(['audit', 'tail', '-n', '5', '--data-dir', dataDir], { DATABASE_URL: '' });
    for (let i = 0; i < 50 && !run.stdout.includes('/elsewhere'); i++) {
      run = await runReins(['audit', 'tail', '-n', '5', '--data-dir', dataDir], { DATABASE_URL: '' });
    }
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/allowed .*ops +worker +GET +http:\/\/127\.0\.0\.1:\d+\/a\/audited +200/);
    expect(run.stdout).toMatch(
      /denied .*path_not_allowed +ops +worker +GET +http:\/\/127\.0\.0\.1:\d+\/elsewhere +403/,
    );
  }, 60_000);

  it('`reins policy apply` changes what the gateway allows within one second', async () => {
    const other = join(work, 'other');
    await mkdir(other, { recursive: true });
    await writeFile(join(other, 'ops.yaml'), policy('b'));
    const bearer = await token();
    expect((await through('/a/1', bearer)).status).toBe(200);
    const plan = await runReins(['policy', 'plan', other, '--data-dir', dataDir], { DATABASE_URL: '' });
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`- GET http://127.0.0.1:${upstreamPort}/a`);
    expect(plan.stdout).toContain(`+ GET http://127.0.0.1:${upstreamPort}/b`);
    const apply = await runReins(['policy', 'apply', other, '--data-dir', dataDir], { DATABASE_URL: '' });
    expect(apply.code, apply.stderr).toBe(0);
    expect(apply.stdout).toMatch(/applied version 2 /);
    // The token was issued before the apply: the gateway decides on the current registration.
    expect(await until('/a/2', bearer, 403, 1_000)).toBeLessThan(1_000);
    // A token issued now carries the new grant (a token's egress is fixed when it is issued).
    expect(await through('/b/1', await token())).toEqual({ status: 200, reason: undefined });
  }, 60_000);

  it('SIGHUP applies an edited REINS_POLICIES within one second; an invalid edit is refused and the last good version stays', async () => {
    await writeFile(join(policies, 'ops.yaml'), policy('c'));
    const before = await token();
    expect((await through('/b/2', before)).status).toBe(200);
    server.kill('SIGHUP');
    await logLine('policy reloaded: applied version 3');
    // The apply of the previous test is replaced, and the log says so.
    expect(serve.output()).toContain(
      'policy reload: version 2 was applied from elsewhere (reins policy apply)',
    );
    expect(await until('/b/3', before, 403, 1_000)).toBeLessThan(1_000);
    const bearer = await token();
    expect(await through('/c/1', bearer)).toEqual({ status: 200, reason: undefined });

    await writeFile(join(policies, 'ops.yaml'), `${policy('d')}    token_ttl: "soon"\n  bogus_key: 1\n`);
    server.kill('SIGHUP');
    const refused = await logLine('policy reload refused');
    expect(refused).toMatch(/ops\.yaml:\d+:\d+: error: /);
    expect(refused).toContain('version 3 stays applied');
    expect(await through('/c/2', bearer)).toEqual({ status: 200, reason: undefined });
    expect((await through('/d/1', bearer)).status).toBe(403);
  }, 60_000);
});
