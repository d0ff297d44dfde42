// Every refusal names its reason where clients print it (SPEC.md, "The gateway"): the status
// line's reason phrase and an x-reins-reason header, for CONNECT as for requests. Clients do not
// show a refused tunnel's body, so without these an agent (or the model driving it) cannot tell a
// typo from a policy. These tests read what real clients print: curl -v and Python's requests.
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testBackends } from '../support/db.ts';
import { type Harness, startHarness } from './support.ts';

const run = promisify(execFile);
const [pglite] = testBackends();

interface Printed {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a client to its end, whatever its exit code (curl exits 56 on a refused CONNECT). */
async function client(command: string, args: readonly string[]): Promise<Printed> {
  try {
    const { stdout, stderr } = await run(command, args);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return { code: Number(failed.code ?? -1), stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('refusal reasons as clients print them', () => {
  let h: Harness;
  let token: string;
  let dead: number;

  beforeAll(async () => {
    if (pglite === undefined) throw new Error('no PGlite');
    dead = await deadPort();
    h = await startHarness(pglite, {
      extraEgress: () => [`http://dead.test:${dead}/`],
      hosts: { 'dead.test': ['127.0.0.1'] },
      openings: [`127.0.0.1/32:${dead}`],
      limits: { tunnelsPerToken: 1 },
    });
    token = await h.workerToken();
  });
  afterAll(async () => {
    await h?.close();
  });

  const curl = (args: readonly string[], credentials: string | null = `Bearer ${token}`) =>
    client('curl', [
      '-sv',
      '--proxy',
      h.proxyUrl,
      ...(credentials === null ? [] : ['--proxy-header', `Proxy-Authorization: ${credentials}`]),
      ...args,
    ]);

  it('curl -v shows a forwarded request’s 403 reason in the status line and x-reins-reason; the body stays', async () => {
    const printed = await curl([`http://api.test:${h.upstream.port}/v2/x`]);
    expect(printed.stderr).toContain('< HTTP/1.1 403 egress denied: path_not_allowed\r\n');
    expect(printed.stderr).toContain('< x-reins-reason: path_not_allowed\r\n');
    expect(JSON.parse(printed.stdout)).toMatchObject({ error: 'egress_denied', reason: 'path_not_allowed' });
  });

  it('curl -v shows why a CONNECT was refused, beside its own “CONNECT tunnel failed”', async () => {
    for (const [url, reason] of [
      [`https://api.test:${h.upstream.port}/v1/x`, 'connect_needs_whole_origin'],
      ['https://other.test/', 'no_matching_rule'],
      ['https://127.0.0.1/', 'forbidden_address'],
    ] as const) {
      const printed = await curl([url]);
      expect(printed.code, url).toBe(56);
      expect(printed.stderr, url).toContain(`< HTTP/1.1 403 egress denied: ${reason}\r\n`);
      expect(printed.stderr, url).toContain(`< x-reins-reason: ${reason}\r\n`);
      expect(printed.stderr, url).toContain('CONNECT tunnel failed, response 403');
    }
  });

  it('curl -v shows a 407’s credential problem, on CONNECT and on forwarded requests', async () => {
    const missing = await curl(['https://whole.test/'], null);
    expect(missing.stderr).toContain(
      '< HTTP/1.1 407 proxy authentication required: invalid_token (missing)\r\n',
    );
    expect(missing.stderr).toContain('< x-reins-reason: invalid_token\r\n');
    expect(missing.stderr).toContain('CONNECT tunnel failed, response 407');
    const expired = await h.forgedToken({ exp: Math.floor(Date.now() / 1000) - 120 });
    const forwarded = await curl([`http://api.test:${h.upstream.port}/v1/x`], `Bearer ${expired}`);
    expect(forwarded.stderr).toContain(
      '< HTTP/1.1 407 proxy authentication required: invalid_token (expired)\r\n',
    );
    // The gateway's own lines (curl prints what it sent, the token included, with "> ").
    const answered = forwarded.stderr
      .split('\n')
      .filter((line) => line.startsWith('< '))
      .join('\n');
    expect(answered).toContain('< x-reins-reason: invalid_token');
    expect(answered).not.toContain(expired.split('.')[2]);
  });

  it('curl -v shows a 400’s reason, on CONNECT and on forwarded requests', async () => {
    // --proxy-header goes on the CONNECT (-H on the request inside the tunnel).
    const connect = await curl([
      '--proxy-header',
      'Host: elsewhere.test',
      '-p',
      `http://whole.test:${h.upstream.port}/`,
    ]);
    expect(connect.stderr).toContain('< HTTP/1.1 400 bad request: ambiguous_target\r\n');
    const forwarded = await curl(['-H', 'Host: elsewhere.test', `http://api.test:${h.upstream.port}/v1/x`]);
    expect(forwarded.stderr).toContain('< HTTP/1.1 400 bad request: ambiguous_target\r\n');
    expect(forwarded.stderr).toContain('< x-reins-reason: ambiguous_target\r\n');
  });

  it('curl -v shows 502 upstream_unreachable, on CONNECT and on forwarded requests', async () => {
    const forwarded = await curl([`http://dead.test:${dead}/x`]);
    expect(forwarded.stderr).toContain('< HTTP/1.1 502 bad gateway: upstream_unreachable\r\n');
    expect(forwarded.stderr).toContain('< x-reins-reason: upstream_unreachable\r\n');
    const connect = await curl(['-p', `http://dead.test:${dead}/x`]);
    expect(connect.stderr).toContain('< HTTP/1.1 502 bad gateway: upstream_unreachable\r\n');
    expect(connect.stderr).toContain('CONNECT tunnel failed, response 502');
  });

  it('curl -v shows 429 too_many_tunnels past the tunnels a token may hold', async () => {
    const held = net.connect(h.gateway.port, '127.0.0.1');
    const whole = `whole.test:${h.upstream.port}`;
    held.write(`CONNECT ${whole} HTTP/1.1\r\nHost: ${whole}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`);
    const established = await new Promise<string>((resolve) => held.once('data', (d) => resolve(String(d))));
    expect(established).toMatch(/^HTTP\/1\.1 200 /);
    try {
      const printed = await curl(['-p', `http://${whole}/`]);
      expect(printed.stderr).toContain('< HTTP/1.1 429 too many requests: too_many_tunnels\r\n');
      expect(printed.stderr).toContain('< x-reins-reason: too_many_tunnels\r\n');
      expect(printed.stderr).toContain('< retry-after: 1\r\n');
    } finally {
      held.destroy();
    }
  });

  it('Python requests says why a tunnel was refused, and gives a request’s reason and header', async () => {
    const proxy = `http://agent:${token}@127.0.0.1:${h.gateway.port}`;
    const script = [
      'import sys, requests',
      `proxies = {"http": "${proxy}", "https": "${proxy}"}`,
      'try:',
      '    requests.get("https://other.test/", proxies=proxies, timeout=10)',
      '    print("tunnel opened")',
      'except requests.exceptions.ProxyError as err:',
      '    print(err)',
      `r = requests.delete("http://api.test:${h.upstream.port}/v1/x", proxies=proxies, timeout=10)`,
      'print(r.status_code, r.reason, r.headers["x-reins-reason"], r.json()["reason"])',
    ].join('\n');
    const printed = await client('python3', ['-c', script]);
    expect(printed.stderr).toBe('');
    const [tunnel, request] = printed.stdout.trimEnd().split('\n');
    expect(tunnel).toContain('Tunnel connection failed: 403 egress denied: no_matching_rule');
    expect(request).toBe('403 egress denied: method_not_allowed method_not_allowed method_not_allowed');
  });
});
