// The gateway end to end, with real, unmodified clients (curl, Node fetch through the
// environment's proxy, undici's ProxyAgent, Python's urllib) against a local upstream: what is
// let through arrives intact, everything else is refused with the right status and reason, and
// every decision is in the audit table.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ProxyAgent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeTree } from '../../src/server/provider/ledger.ts';
import { testBackends } from '../support/db.ts';
import { quarantineAgent } from '../support/quarantine.ts';
import { auditRow, gatewayPolicy, type Harness, startHarness, within } from './support.ts';

const run = promisify(execFile);

interface CurlResult {
  readonly status: number;
  readonly body: string;
  readonly headers: string;
}

async function curl(
  h: Harness,
  token: string | null,
  url: string,
  extra: string[] = [],
): Promise<CurlResult> {
  const auth = token === null ? [] : ['--proxy-header', `Proxy-Authorization: Bearer ${token}`];
  const { stdout } = await run('curl', [
    '-s',
    '--path-as-is',
    '-D',
    '-',
    '--proxy',
    h.proxyUrl,
    ...auth,
    ...extra,
    url,
  ]);
  const split = stdout.lastIndexOf('\r\n\r\n');
  const headers = stdout.slice(0, split);
  const statuses = [...headers.matchAll(/^HTTP\/[0-9.]+ ([0-9]{3})/gm)].map((m) => Number(m[1]));
  return { status: statuses.at(-1) ?? 0, body: stdout.slice(split + 4), headers };
}

function json(body: string): Record<string, unknown> {
  return JSON.parse(body) as Record<string, unknown>;
}

/** Sends raw bytes to the gateway and returns everything it answers until it closes. */
function raw(h: Harness, bytes: string, keepOpenMs = 0): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(h.gateway.port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
    });
    socket.on('error', () => resolve(text));
    socket.on('close', () => resolve(text));
    if (keepOpenMs > 0) setTimeout(() => socket.end(), keepOpenMs);
  });
}

describe.each(testBackends())('the gateway on $name', (backend) => {
  let h: Harness;
  let token: string;
  let api: string;
  beforeAll(async () => {
    h = await startHarness(backend);
    token = await h.workerToken();
    api = `http://api.test:${h.upstream.port}`;
  });
  afterAll(async () => {
    await h?.close();
  });

  describe('allowed requests', () => {
    it('pass curl’s GET and POST with bodies intact both ways, stripped of the proxy credentials', async () => {
      const body = randomBytes(300_000).toString('base64');
      const file = join(tmpdir(), `reins-body-${process.pid}-${Date.now()}`);
      writeFileSync(file, body);
      const post = await curl(h, token, `${api}/v1/echo?q=1`, [
        '--data-binary',
        `@${file}`,
        '-H',
        'content-type: text/plain',
      ]);
      rmSync(file);
      expect(post.status).toBe(200);
      expect(post.body).toBe(body);
      const seen = h.upstream.seen.at(-1);
      expect(seen).toMatchObject({ method: 'POST', url: '/v1/echo?q=1', bodyBytes: body.length });
      expect(seen?.headers['proxy-authorization']).toBeUndefined();
      expect(seen?.headers.host).toBe(`api.test:${h.upstream.port}`);
      const requestId = seen?.headers['x-request-id'];
      expect(typeof requestId).toBe('string');
      const row = await auditRow(h, String(requestId));
      expect(row).toMatchObject({
        decision: 'allowed',
        tenant: 'acme',
        agent: 'worker',
        method: 'POST',
        host: 'api.test',
        path: '/v1/echo',
        status: 200,
        resolved_address: '127.0.0.1',
        inspected: false,
      });
      expect(Number(row.bytes_out)).toBe(body.length);
    });

    it('accept the token as a Basic password in the proxy URL (Python urllib)', async () => {
      const script = [
        'import sys, urllib.request',
        `opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": "http://agent:${token}@127.0.0.1:${h.gateway.port}"}))`,
        `r = opener.open("${api}/v1/python", data=b"from python")`,
        'sys.stdout.write(str(r.status) + " " + r.read().decode())',
      ].join('\n');
      const { stdout } = await run('python3', ['-c', script]);
      expect(stdout).toBe('200 from python');
    });

    it('pass Node fetch through HTTP_PROXY with NODE_USE_ENV_PROXY=1 (a CONNECT tunnel to a whole origin)', async () => {
      const script = `fetch("http://whole.test:${h.upstream.port}/anything", { method: "POST", body: "from fetch" }).then(async (r) => process.stdout.write(r.status + " " + await r.text()))`;
      const { stdout } = await run(process.execPath, ['-e', script], {
        env: {
          ...process.env,
          NODE_USE_ENV_PROXY: '1',
          HTTP_PROXY: `http://agent:${token}@127.0.0.1:${h.gateway.port}`,
          HTTPS_PROXY: `http://agent:${token}@127.0.0.1:${h.gateway.port}`,
          NO_PROXY: '',
        },
      });
      expect(stdout).toBe('200 from fetch');
    });

    it('pass undici’s ProxyAgent with a Bearer token', async () => {
      const dispatcher = new ProxyAgent({ uri: h.proxyUrl, token: `Bearer ${token}`, proxyTunnel: false });
      const response = await request(`${api}/v1/undici`, { method: 'POST', body: 'from undici', dispatcher });
      expect(response.statusCode).toBe(200);
      expect(await response.body.text()).toBe('from undici');
      await dispatcher.close();
    });

    it('relays a redirect instead of following it', async () => {
      const before = h.upstream.seen.length;
      const result = await curl(h, token, `${api}/v1/redirect`);
      expect(result.status).toBe(302);
      expect(result.headers).toContain('location: http://elsewhere.test/');
      expect(h.upstream.seen.length).toBe(before + 1);
    });
  });

  describe('refusals', () => {
    const denied = async (url: string, reason: string, extra: string[] = []) => {
      const result = await curl(h, token, url, extra);
      expect(result.status, result.body).toBe(403);
      const body = json(result.body);
      expect(body).toMatchObject({ error: 'egress_denied', reason });
      expect(result.body).not.toContain(token);
      const row = await auditRow(h, String(body.request_id));
      expect(row).toMatchObject({ decision: 'denied', reason, status: 403, tenant: 'acme', agent: 'worker' });
      return body;
    };

    it('refuses a destination outside the grant (no_matching_rule)', async () => {
      await denied(`http://other.test:${h.upstream.port}/`, 'no_matching_rule');
    });

    it('refuses a method the rule does not list (method_not_allowed)', async () => {
      await denied(`${api}/v1/x`, 'method_not_allowed', ['-X', 'DELETE']);
    });

    it('refuses a path outside the prefix (path_not_allowed), /v10 included', async () => {
      await denied(`${api}/v2/x`, 'path_not_allowed');
      await denied(`${api}/v10`, 'path_not_allowed');
    });

    it('refuses a granted name that resolves to a private address (forbidden_address)', async () => {
      await denied(`http://internal.test:${h.upstream.port}/`, 'forbidden_address');
    });

    it('refuses every numeric spelling of 127.0.0.1 and 169.254.169.254 (forbidden_address)', async () => {
      for (const host of ['127.0.0.1', '2130706433', '0x7f000001', '0x7f.1', '017700000001', '127.1']) {
        await denied(`http://${host}/`, 'forbidden_address');
      }
      for (const host of [
        '169.254.169.254',
        '2852039166',
        '0xa9fea9fe',
        '0251.0376.0251.0376',
        '169.254.43518',
      ]) {
        await denied(`http://${host}/latest/meta-data/`, 'forbidden_address');
      }
    });

    it('refuses a foreign tenant’s owned destination (cross_tenant)', async () => {
      await denied(`http://owned.globex.test:${h.upstream.port}/`, 'cross_tenant');
    });

    it('refuses a CONNECT to a loopback literal', async () => {
      const answer = await raw(
        h,
        `CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
      );
      expect(answer).toMatch(/^HTTP\/1\.1 403/);
      expect(answer).toContain('"reason":"forbidden_address"');
    });

    it('refuses a CONNECT to an origin granted only in part (connect_needs_whole_origin)', async () => {
      const answer = await raw(
        h,
        `CONNECT api.test:${h.upstream.port} HTTP/1.1\r\nHost: api.test:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
      );
      expect(answer).toMatch(/^HTTP\/1\.1 403/);
      expect(answer).toContain('"reason":"connect_needs_whole_origin"');
    });

    it('refuses ambiguous targets with 400: userinfo, a Host that disagrees, two Hosts, an encoded slash', async () => {
      const auth = `Proxy-Authorization: Bearer ${token}\r\n`;
      const host = `Host: api.test:${h.upstream.port}\r\n`;
      const cases = [
        `GET http://user@api.test:${h.upstream.port}/v1/ HTTP/1.1\r\n${host}${auth}\r\n`,
        `GET ${api}/v1/ HTTP/1.1\r\nHost: evil.test\r\n${auth}\r\n`,
        `GET ${api}/v1/ HTTP/1.1\r\nHost: api.test:${h.upstream.port}\r\nHost: api.test:${h.upstream.port}\r\n${auth}\r\n`,
        `GET ${api}/v1%2F..%2F..%2Fadmin HTTP/1.1\r\n${host}${auth}\r\n`,
        `GET ${api}/v1/../../admin HTTP/1.1\r\n${host}${auth}\r\n`,
      ];
      for (const request of cases) {
        const answer = await raw(h, request, 300);
        expect(answer, request).toMatch(/^HTTP\/1\.1 400/);
      }
    });
  });

  describe('tokens', () => {
    const refused407 = async (presented: string | null, problem: string) => {
      const result = await curl(h, presented, `${api}/v1/x`);
      expect(result.status).toBe(407);
      expect(result.headers.toLowerCase()).toContain(
        'proxy-authenticate: bearer realm="reins", error="invalid_token"',
      );
      const body = json(result.body);
      if (presented !== null) expect(result.body).not.toContain(presented);
      const row = await auditRow(h, String(body.request_id));
      expect(row).toMatchObject({ decision: 'denied', reason: 'invalid_token', status: 407, tenant: null });
      // What is known although no token was verified: the credential problem and the target.
      expect(row).toMatchObject({ detail: problem, method: 'GET', host: 'api.test', path: '/v1/x' });
      expect(result.headers).toContain(`407 proxy authentication required: invalid_token (${problem})`);
    };

    it('answers 407 to a missing token', async () => {
      await refused407(null, 'missing');
    });

    it('answers 407 to an expired token', async () => {
      await refused407(await h.forgedToken({ exp: Math.floor(Date.now() / 1000) - 120 }), 'expired');
    });

    it('answers 407 to a token for another audience', async () => {
      await refused407(await h.forgedToken({ aud: 'https://another-gateway.test' }), 'wrong_audience');
    });

    it('answers 407 to a token that does not verify', async () => {
      const forged = await h.forgedToken({});
      await refused407(`${forged.slice(0, -6)}AAAAAA`, 'invalid');
    });

    it('answers 407 to a revoked token within a second, and closes its open tunnel', async () => {
      const own = await h.workerToken();
      const socket = net.connect(h.gateway.port, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write(
        `CONNECT whole.test:${h.upstream.port} HTTP/1.1\r\nHost: whole.test:${h.upstream.port}\r\nProxy-Authorization: Bearer ${own}\r\n\r\n`,
      );
      const established = await new Promise<string>((resolve) =>
        socket.once('data', (d) => resolve(d.toString())),
      );
      expect(established).toMatch(/^HTTP\/1\.1 200/);
      const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));

      const jti = JSON.parse(Buffer.from(String(own.split('.')[1]), 'base64url').toString()).jti;
      const revokedAt = Date.now();
      await revokeTree(h.auth.db, jti, 'test');
      expect((await closed) - revokedAt).toBeLessThan(1_000);
      await within(1_000, async () => (await curl(h, own, `${api}/v1/x`)).status === 407);
    });

    it('refuses a quarantined agent’s requests within a second (agent_quarantined)', async () => {
      const own = await h.workerToken();
      expect((await curl(h, own, `${api}/v1/q`)).status).toBe(200);
      await quarantineAgent(h.auth.db, 'acme', 'worker', 'test');
      await within(1_000, async () => {
        const result = await curl(h, own, `${api}/v1/q`);
        return result.status === 403 && json(result.body).reason === 'agent_quarantined';
      });
    });
  });
});

describe.each(testBackends())('policy changes at the gateway on $name', (backend) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(backend);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('refuses, within a second, a destination a policy apply removed, through an already issued token', async () => {
    const token = await h.workerToken();
    const url = `http://removable.test:${h.upstream.port}/x`;
    expect((await curl(h, token, url)).status).toBe(200);
    const files = gatewayPolicy(h.upstream.port);
    files['acme.yaml'] = String(files['acme.yaml']).replace(
      `      - http://removable.test:${h.upstream.port}/\n`,
      '',
    );
    const appliedAt = Date.now();
    await h.applyPolicy(files);
    await within(1_000, async () => {
      const result = await curl(h, token, url);
      return result.status === 403 && json(result.body).reason === 'no_matching_rule';
    });
    expect(Date.now() - appliedAt).toBeLessThan(1_500);
  });
});
