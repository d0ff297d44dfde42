// `reins serve` as an operator runs it: a real process that applies the policies, answers its
// health endpoints, and stops cleanly on SIGTERM.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { runReins } from '../support/run-reins.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";
// The embedded database in memory, ephemeral ports, whatever the environment says.
const LOCAL = {
  DATABASE_URL: '',
  REINS_DATA_DIR: 'memory',
  REINS_PORT: '0',
  REINS_ADMIN_PORT: '0',
  REINS_GATEWAY_PORT: '0',
  REINS_LOG_LEVEL: 'info',
};
// The example billing agent's published secret (policies/acme.yaml, auth.example_secret).
const EXAMPLE_SECRET = 'reins-example-billing-secret';

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

interface Started {
  readonly child: ChildProcess;
  readonly adminUrl: string;
  readonly tokenUrl: string;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

function serve(args: string[] = []): Promise<Started> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', 'serve', ...args],
    {
      cwd: ROOT,
      env: { ...process.env, ...LOCAL },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const url = /health: +curl -s (http:\/\/\S+)\/readyz/.exec(output)?.[1];
      const tokenUrl = / (http:\/\/\S+\/token)\b/.exec(output)?.[1];
      // The production printout has no token command: ready once its last line is out.
      if (url && (tokenUrl || output.includes('stop with Ctrl-C.')))
        resolve({ child, adminUrl: url, tokenUrl: tokenUrl ?? '', output: () => output, exited });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    exited.then((code) => reject(new Error(`serve exited with ${code} before it was ready:\n${output}`)));
  });
}

describe('reins serve', () => {
  it('applies the example policies, reports ready, and prints what to try next', async () => {
    const { adminUrl, output } = await serve();
    const ready = await fetch(`${adminUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      ok: true,
      checks: {
        database: { ok: true },
        policies: { ok: true, detail: 'version 1' },
        gateway: { ok: true, detail: 'policy version 1' },
      },
    });
    expect((await fetch(`${adminUrl}/livez`)).status).toBe(200);
    expect(await (await fetch(`${adminUrl}/metrics`)).text()).toContain('process_cpu_user_seconds_total');
    expect((await fetch(`${adminUrl}/nothing`)).status).toBe(404);
    expect(output()).toContain('policies: applied ./policies as version 1');
  }, 60_000);

  it('issues the token its printed curl asks for', async () => {
    const { tokenUrl } = await serve();
    const response = await fetch(tokenUrl, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`billing-agent:${EXAMPLE_SECRET}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: 'urn:reins:gateway' }),
    });
    const body = (await response.json()) as { access_token: string; token_type: string };
    expect(response.status).toBe(200);
    expect(body.token_type).toBe('Bearer');
    const header = JSON.parse(
      Buffer.from(body.access_token.split('.')[0] ?? '', 'base64url').toString('utf8'),
    );
    expect(header).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
  }, 60_000);

  it('runs the gateway it prints, which refuses what the token does not grant, and counts it', async () => {
    const { tokenUrl, adminUrl, output } = await serve();
    const response = await fetch(tokenUrl, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`billing-agent:${EXAMPLE_SECRET}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials' }),
    });
    const { access_token: token } = (await response.json()) as { access_token: string };
    const gateway = /curl -s --proxy (http:\/\/\S+) /.exec(output())?.[1];
    expect(gateway).toBeDefined();
    const { stdout } = await promisify(execFile)('curl', [
      '-s',
      '--proxy',
      String(gateway),
      '--proxy-header',
      `Proxy-Authorization: Bearer ${token}`,
      'http://example.com/',
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ error: 'egress_denied', reason: 'no_matching_rule' });
    // A gateway thread hands its exchange to the main thread, which counts it, just after the
    // answer went out: the scrape waits for it (a few milliseconds), bounded.
    const counted = 'reins_gateway_decisions_total{outcome="denied",reason="no_matching_rule"} 1';
    let metrics = '';
    for (let i = 0; i < 100 && !metrics.includes(counted); i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    }
    expect(metrics).toContain(counted);
    expect(metrics).toContain('reins_gateway_token_cache_total{result="miss"} 1');
  }, 60_000);

  it('on policies other than the examples, prints where it runs and nothing example-specific', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reins-serve-'));
    dirs.push(dir);
    await writeFile(
      join(dir, 'prod.yaml'),
      'tenant: prod\nagents:\n  crawler:\n    auth: { method: client_secret_basic, secret_env: PROD_CRAWLER_SECRET }\n' +
        '    egress: ["GET https://api.prod.example/v1/"]\n',
    );
    const { output } = await serve(['--policies', dir]);
    const printed = output()
      .split('\n')
      .filter((line) => !line.startsWith('{'));
    const text = printed.join('\n');
    expect(text).toMatch(/reins is running: authorization server http:\/\/127\.0\.0\.1:\d+/);
    expect(text).toContain(`policies: applied ${dir} as version 1`);
    for (const word of ['billing-agent', 'stripe', 'acme', 'TOKEN', 'example', 'crawler', 'secret']) {
      expect(text.toLowerCase()).not.toContain(word.toLowerCase());
    }
  }, 60_000);

  it('stops at a port already in use, naming the setting to change, and leaves nothing running (exit 2)', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      // The auth server and the gateway have started when the admin port fails: the process
      // must still exit (runReins resolves on exit), having stopped them.
      const run = await runReins(['serve'], { ...LOCAL, REINS_ADMIN_PORT: String(port) });
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(
        `reins: port ${port} is already in use: stop what listens there, or set REINS_ADMIN_PORT (--admin-port) to another port`,
      );
      expect(run.stderr).not.toContain('internal error');
    } finally {
      taken.close();
    }
  }, 60_000);

  it('stops cleanly on SIGTERM with exit code 0', async () => {
    const { child, exited, output } = await serve();
    child.kill('SIGTERM');
    const code = await exited;
    expect(code, output()).toBe(0);
    expect(output()).toContain('"msg":"stopped"');
  }, 60_000);

  it('refuses to start on policies with mistakes, naming file:line:column for each, exit 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reins-serve-'));
    dirs.push(dir);
    await writeFile(
      join(dir, 'bad.yaml'),
      'tenant: bad\nintegrations:\n  x: ["get https://a.example.com"]\n',
    );
    const run = await runReins(['serve', '--policies', dir], LOCAL);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/bad\.yaml:3:\d+: error: .*write GET/);
    expect(run.stderr).toContain('reins: the policies in');
    expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
  }, 60_000);

  it('refuses a wrong setting in one line naming the variable, exit 2', async () => {
    const run = await runReins(['serve'], { ...LOCAL, REINS_GATEWAY_INTERCEPT: 'sometimes' });
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toBe(
      "reins: REINS_GATEWAY_INTERCEPT (--gateway-intercept) must be one of auto, always, never, not 'sometimes'\n",
    );
  });

  it('explains every setting and its environment variable in --help', async () => {
    const run = await runReins(['serve', '--help']);
    expect(run.code).toBe(0);
    for (const text of [
      '--gateway-allow-private',
      'REINS_GATEWAY_ALLOW_PRIVATE',
      'DATABASE_URL',
      'REINS_ISSUER',
    ]) {
      expect(run.stdout).toContain(text);
    }
  });
});
