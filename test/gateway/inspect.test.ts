// Inspected tunnels: a CONNECT to an origin the token grants only in part is answered 200 and
// every request inside is checked — over TLS terminated with the interception CA, or plain HTTP.
// Real clients (curl, Node fetch) against an HTTPS upstream with its own CA.
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeTree } from '../../src/server/provider/ledger.ts';
import { testBackends } from '../support/db.ts';
import { auditRow, type Harness, startHarness } from './support.ts';
import {
  type HttpsUpstream,
  makeCa,
  startHttpsUpstream,
  type TestCa,
  testInterceptor,
} from './tls-support.ts';

const run = promisify(execFile);

describe.each(testBackends())('inspected tunnels on $name', (backend) => {
  let h: Harness;
  let token: string;
  let upstream: HttpsUpstream;
  /** Its certificate from a CA the gateway does not trust. */
  let rogue: HttpsUpstream;
  /** Its certificate from the trusted CA, but for another name. */
  let misnamed: HttpsUpstream;
  let interception: TestCa;
  let caFile: string;
  let secure: string;

  beforeAll(async () => {
    const upstreamCa = await makeCa('upstream test CA');
    interception = await makeCa('interception test CA');
    upstream = await startHttpsUpstream(upstreamCa, 'secure.test');
    rogue = await startHttpsUpstream(await makeCa('rogue test CA'), 'rogue.test');
    misnamed = await startHttpsUpstream(upstreamCa, 'other.test');
    const u = upstream.port;
    h = await startHarness(backend, {
      extraEgress: () => [
        `GET,POST https://secure.test:${u}/v1/`,
        `https://whole-tls.test:${u}/`,
        `GET https://rogue.test:${rogue.port}/v1/`,
        `GET https://misnamed.test:${misnamed.port}/v1/`,
      ],
      hosts: {
        'secure.test': ['127.0.0.1'],
        'whole-tls.test': ['127.0.0.1'],
        'rogue.test': ['127.0.0.1'],
        'misnamed.test': ['127.0.0.1'],
      },
      openings: [`127.0.0.1/32:${u}`, `127.0.0.1/32:${rogue.port}`, `127.0.0.1/32:${misnamed.port}`],
      interceptor: testInterceptor(interception),
      upstreamCa: upstreamCa.certPem,
    });
    token = await h.workerToken();
    caFile = join(tmpdir(), `reins-interception-${process.pid}-${backend.name}.pem`);
    writeFileSync(caFile, interception.certPem);
    secure = `https://secure.test:${u}`;
  });
  afterAll(async () => {
    await h?.close();
    await upstream?.close();
    await rogue?.close();
    await misnamed?.close();
    rmSync(caFile, { force: true });
  });

  async function curl(args: string[]): Promise<{ status: number; body: string }> {
    const { stdout } = await run('curl', [
      '-s',
      '--proxy',
      h.proxyUrl,
      '--proxy-header',
      `Proxy-Authorization: Bearer ${token}`,
      '--cacert',
      caFile,
      '-w',
      '\n%{http_code}',
      ...args,
    ]);
    const at = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
  }

  it('lets curl POST on a granted path over TLS, with the body intact both ways and no proxy credentials upstream', async () => {
    const { status, body } = await curl(['--data-binary', 'inspected body', `${secure}/v1/charges`]);
    expect(status).toBe(200);
    expect(body).toBe('inspected body');
    // What the upstream saw, from its echo headers.
    const { stdout: headers } = await run('curl', [
      '-s',
      '-D',
      '-',
      '-o',
      '/dev/null',
      '--proxy',
      h.proxyUrl,
      '--proxy-header',
      `Proxy-Authorization: Bearer ${token}`,
      '--cacert',
      caFile,
      `${secure}/v1/headers?x=1`,
    ]);
    expect(headers).toContain('x-upstream-proxy-authorization: none');
    expect(headers).toContain('x-upstream-url: /v1/headers?x=1');
    expect(headers).toContain(`x-upstream-host: secure.test:${upstream.port}`);
  });

  it('answers 403 inside the tunnel for another path and another method, and keeps the connection usable', async () => {
    // One curl, one connection, three requests.
    const { stdout } = await run('curl', [
      '-s',
      '--proxy',
      h.proxyUrl,
      '--proxy-header',
      `Proxy-Authorization: Bearer ${token}`,
      '--cacert',
      caFile,
      '-w',
      '%{http_code}\n',
      `${secure}/v2/admin`,
      '-o',
      '/dev/null',
      '--next',
      '--proxy',
      h.proxyUrl,
      '--proxy-header',
      `Proxy-Authorization: Bearer ${token}`,
      '--cacert',
      caFile,
      '-X',
      'DELETE',
      '-w',
      '%{http_code}\n',
      `${secure}/v1/charges/1`,
      '-o',
      '/dev/null',
      '--next',
      '--proxy',
      h.proxyUrl,
      '--proxy-header',
      `Proxy-Authorization: Bearer ${token}`,
      '--cacert',
      caFile,
      '-w',
      '%{http_code} %{num_connects}\n',
      `${secure}/v1/ok`,
      '-o',
      '/dev/null',
    ]);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toBe('403');
    expect(lines[1]).toBe('403');
    // The third request reused the tunnel: no new connection.
    expect(lines[2]).toBe('200 0');
  });

  it('winds a tunnel down in its token’s last seconds: each answer closes the connection', async () => {
    // 4 s left (the wind-down starts 5 s before expiry): both requests pass, each on its own
    // tunnel, instead of the second meeting a tunnel cut at expiry.
    const ending = await h.forgedToken({
      exp: Math.floor(Date.now() / 1000) + 4,
      authorization_details: [{ type: 'egress', locations: [`${secure}/v1`] }],
    });
    const each = (path: string) => [
      '-s',
      '-D',
      '-',
      '-o',
      '/dev/null',
      '--proxy',
      h.proxyUrl,
      '--proxy-header',
      `Proxy-Authorization: Bearer ${ending}`,
      '--cacert',
      caFile,
      '-w',
      '%{http_code} %{num_connects}\n',
      `${secure}${path}`,
    ];
    const { stdout } = await run('curl', [...each('/v1/a'), '--next', ...each('/v1/b')]);
    expect(stdout.match(/^connection: close\r?$/gim)).toHaveLength(2);
    expect(stdout.match(/^[0-9]{3} [0-9]+$/gm)).toEqual(['200 1', '200 1']);
  });

  it('says why inside the tunnel, and audits every inner request as inspected', async () => {
    const denied = await curl([`${secure}/v2/admin`]);
    expect(denied.status).toBe(403);
    const body = JSON.parse(denied.body) as Record<string, unknown>;
    expect(body).toMatchObject({ error: 'egress_denied', reason: 'path_not_allowed' });
    const row = await auditRow(h, String(body.request_id));
    expect(row).toMatchObject({
      decision: 'denied',
      reason: 'path_not_allowed',
      inspected: true,
      path: '/v2/admin',
    });
    const method = await curl(['-X', 'DELETE', `${secure}/v1/x`]);
    expect(JSON.parse(method.body)).toMatchObject({ reason: 'method_not_allowed' });
  });

  it('names the reason of a refusal inside the tunnel where curl -v and Python requests show it', async () => {
    const verbose = await run('curl', [
      '-sv',
      '--proxy',
      h.proxyUrl,
      '--proxy-header',
      `Proxy-Authorization: Bearer ${token}`,
      '--cacert',
      caFile,
      `${secure}/v2/admin`,
    ]);
    expect(verbose.stderr).toContain('< HTTP/1.1 403 egress denied: path_not_allowed\r\n');
    expect(verbose.stderr).toContain('< x-reins-reason: path_not_allowed\r\n');
    const proxy = `http://agent:${token}@127.0.0.1:${h.gateway.port}`;
    const script = [
      'import requests',
      `r = requests.delete("${secure}/v1/x", proxies={"https": "${proxy}"}, verify="${caFile}", timeout=10)`,
      'print(r.status_code, r.reason, r.headers["x-reins-reason"])',
    ].join('\n');
    const { stdout } = await run('python3', ['-c', script]);
    expect(stdout.trim()).toBe('403 egress denied: method_not_allowed method_not_allowed');
  });

  it('answers 502 upstream_tls, never a downgrade, when the upstream’s certificate does not verify', async () => {
    // Threat: an attacker on the path between gateway and upstream. Inspection must not turn the
    // agent's verified TLS into an unverified one.
    for (const url of [
      `https://rogue.test:${rogue.port}/v1/x`, // signed by a CA the gateway does not trust
      `https://misnamed.test:${misnamed.port}/v1/x`, // trusted CA, certificate for another name
    ]) {
      const { status, body } = await curl([url]);
      expect(status, url).toBe(502);
      const answer = JSON.parse(body) as Record<string, unknown>;
      expect(answer).toMatchObject({ error: 'upstream_error', reason: 'upstream_tls' });
      expect(await auditRow(h, String(answer.request_id))).toMatchObject({
        decision: 'allowed',
        reason: 'upstream_tls',
        status: 502,
        inspected: true,
      });
    }
  });

  it('lets Node fetch through, trusting the interception CA by NODE_EXTRA_CA_CERTS', async () => {
    const script = `fetch("${secure}/v1/from-fetch", { method: "POST", body: "fetched" }).then(async (r) => process.stdout.write(r.status + " " + await r.text()))`;
    const { stdout } = await run(process.execPath, ['-e', script], {
      env: {
        ...process.env,
        NODE_USE_ENV_PROXY: '1',
        HTTPS_PROXY: `http://agent:${token}@127.0.0.1:${h.gateway.port}`,
        NODE_EXTRA_CA_CERTS: caFile,
      },
    });
    expect(stdout).toBe('200 fetched');
  });

  it('refuses a ClientHello whose SNI names another host', async () => {
    const socket = net.connect(h.gateway.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(
      `CONNECT secure.test:${upstream.port} HTTP/1.1\r\nHost: secure.test:${upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    const established = await new Promise<string>((resolve) =>
      socket.once('data', (d) => resolve(d.toString())),
    );
    expect(established).toMatch(/^HTTP\/1\.1 200/);
    const outcome = await new Promise<string>((resolve) => {
      const client = tls.connect({ socket, servername: 'elsewhere.test', ca: interception.certPem });
      client.once('secureConnect', () => resolve('connected'));
      client.once('error', (err) => resolve(`refused: ${err.message}`));
    });
    expect(outcome).toMatch(/^refused/);
  });

  it('checks plain HTTP inside a CONNECT tunnel request by request', async () => {
    const port = h.upstream.port;
    const socket = net.connect(h.gateway.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(
      `CONNECT api.test:${port} HTTP/1.1\r\nHost: api.test:${port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    const established = await new Promise<string>((resolve) =>
      socket.once('data', (d) => resolve(d.toString())),
    );
    expect(established).toMatch(/^HTTP\/1\.1 200/);
    let text = '';
    socket.on('data', (d) => {
      text += d.toString();
    });
    socket.write(`GET /v1/plain HTTP/1.1\r\nHost: api.test:${port}\r\n\r\n`);
    socket.write(`GET /v2/plain HTTP/1.1\r\nHost: api.test:${port}\r\n\r\n`);
    socket.write(`GET /v1/plain HTTP/1.1\r\nHost: evil.test:${port}\r\nConnection: close\r\n\r\n`);
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // Bodies are not newline-terminated: the next status line follows the JSON directly.
    const statuses = [...text.matchAll(/HTTP\/1\.1 ([0-9]{3}) /g)].map((m) => m[1]);
    expect(statuses, text).toEqual(['200', '403', '403']);
    expect(text).toContain('"reason":"path_not_allowed"');
    expect(text).toContain('"reason":"sni_mismatch"');
  });

  it('keeps a whole-origin grant a plain tunnel: the client sees the upstream’s own certificate', async () => {
    const socket = net.connect(h.gateway.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(
      `CONNECT whole-tls.test:${upstream.port} HTTP/1.1\r\nHost: whole-tls.test:${upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    await new Promise<string>((resolve) => socket.once('data', (d) => resolve(d.toString())));
    const issuer = await new Promise<string>((resolve, reject) => {
      const client = tls.connect({ socket, servername: 'secure.test', rejectUnauthorized: false });
      client.once('secureConnect', () => {
        resolve(String(client.getPeerCertificate().issuer.CN));
        client.destroy();
      });
      client.once('error', reject);
    });
    expect(issuer).toBe('upstream test CA');
  });

  it('closes an open inspected tunnel within a second of its token’s revocation', async () => {
    const own = await h.workerToken();
    const socket = net.connect(h.gateway.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(
      `CONNECT secure.test:${upstream.port} HTTP/1.1\r\nHost: secure.test:${upstream.port}\r\nProxy-Authorization: Bearer ${own}\r\n\r\n`,
    );
    await new Promise<string>((resolve) => socket.once('data', (d) => resolve(d.toString())));
    const client = tls.connect({ socket, servername: 'secure.test', ca: interception.certPem });
    await new Promise<void>((resolve, reject) => {
      client.once('secureConnect', () => resolve());
      client.once('error', reject);
    });
    const closed = new Promise<number>((resolve) => client.once('close', () => resolve(Date.now())));
    client.on('error', () => {});
    const jti = JSON.parse(Buffer.from(String(own.split('.')[1]), 'base64url').toString()).jti;
    const revokedAt = Date.now();
    await revokeTree(h.auth.db, jti, 'test');
    expect((await closed) - revokedAt).toBeLessThan(1_000);
  });
});

describe('REINS_GATEWAY_INTERCEPT=never', () => {
  let h: Harness;
  beforeAll(async () => {
    const [pglite] = testBackends();
    if (pglite === undefined) throw new Error('no PGlite');
    h = await startHarness(pglite, {
      intercept: 'never',
      interceptor: testInterceptor(await makeCa('unused')),
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('refuses partly granted origins with connect_needs_whole_origin', async () => {
    const token = await h.workerToken();
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(h.gateway.port, '127.0.0.1', () =>
        socket.write(
          `CONNECT api.test:${h.upstream.port} HTTP/1.1\r\nHost: api.test:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
        ),
      );
      let text = '';
      socket.on('data', (d) => {
        text += d.toString();
      });
      socket.on('close', () => resolve(text));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 403/);
    expect(answer).toContain('"reason":"connect_needs_whole_origin"');
  });
});
