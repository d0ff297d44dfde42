// Strict HTTP/1.1 framing and credentials at the gateway (SPEC.md, "The gateway"): a request
// without Host, a CONNECT whose Host names another authority, Basic credentials that are not
// `user:password`, and several Proxy-Authorization headers are refused, audited like any other
// refusal, and reach nothing: the local upstream they name accepts no connection.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testBackends } from '../support/db.ts';
import { auditRow, type Harness, startHarness } from './support.ts';

const [pglite] = testBackends();

/** Sends raw bytes to the gateway; everything it answers until it closes (or `closeAfterMs`). */
function exchange(port: number, bytes: string, closeAfterMs = 2_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    const timer = setTimeout(() => socket.destroy(), closeAfterMs);
    socket.on('data', (d) => {
      text += d.toString('latin1');
      // A tunnel that opened: what was asked is known, close it.
      if (/^HTTP\/1\.1 200 /.test(text)) socket.destroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

function statusLine(answer: string): string {
  return answer.slice(0, answer.indexOf('\r\n'));
}

function bodyOf(answer: string): Record<string, unknown> {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
}

const basic = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;

describe('strict framing and credentials at the gateway', () => {
  let h: Harness;
  let token: string;
  let api: string;
  let whole: string;

  beforeAll(async () => {
    if (pglite === undefined) throw new Error('no PGlite');
    h = await startHarness(pglite);
    token = await h.workerToken();
    api = `api.test:${h.upstream.port}`;
    whole = `whole.test:${h.upstream.port}`;
  });
  afterAll(async () => {
    await h?.close();
  });

  /** Sends `head`, expects `status` with `reason`, and that the upstream saw nothing at all. */
  async function refused(head: string, status: number, reason: string) {
    const connections = h.upstream.connections();
    const requests = h.upstream.seen.length;
    const answer = await exchange(h.gateway.port, head);
    expect(statusLine(answer), answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(answer.toLowerCase()).toContain(`\r\nx-reins-reason: ${reason}\r\n`);
    const body = bodyOf(answer);
    expect(answer).not.toContain(token);
    const row = await auditRow(h, String(body.request_id));
    expect(h.upstream.connections()).toBe(connections);
    expect(h.upstream.seen.length).toBe(requests);
    return { answer, body, row };
  }

  it('refuses an HTTP/1.1 request without Host with 400 missing_host, audited, the upstream untouched', async () => {
    const { answer, body, row } = await refused(
      `GET http://${api}/v1/no-host HTTP/1.1\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
      400,
      'missing_host',
    );
    expect(statusLine(answer)).toBe('HTTP/1.1 400 bad request: missing_host');
    expect(body).toMatchObject({ error: 'bad_request', reason: 'missing_host' });
    expect(row).toMatchObject({ decision: 'denied', reason: 'missing_host', status: 400, tenant: 'acme' });
    expect(String(row.detail)).toContain('Host');
  });

  it('forwards the same request in HTTP/1.0, where Host is not required', async () => {
    const before = h.upstream.seen.length;
    const answer = await exchange(
      h.gateway.port,
      `GET http://${api}/v1/http10 HTTP/1.0\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    expect(statusLine(answer)).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(h.upstream.seen.slice(before).map((seen) => seen.url)).toEqual(['/v1/http10']);
  });

  it('refuses a CONNECT whose Host names another host or port with 400 ambiguous_target', async () => {
    for (const host of [`other.test:${h.upstream.port}`, 'whole.test:1', `api.test:${h.upstream.port}`]) {
      const { answer, row } = await refused(
        `CONNECT ${whole} HTTP/1.1\r\nHost: ${host}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
        400,
        'ambiguous_target',
      );
      expect(statusLine(answer), host).toBe('HTTP/1.1 400 bad request: ambiguous_target');
      expect(row, host).toMatchObject({ decision: 'denied', reason: 'ambiguous_target', status: 400 });
    }
  });

  it('refuses an HTTP/1.1 CONNECT without Host with 400 missing_host', async () => {
    await refused(
      `CONNECT ${whole} HTTP/1.1\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
      400,
      'missing_host',
    );
  });

  it('opens the tunnel when the CONNECT’s Host names its target, with or without the port', async () => {
    for (const host of [whole, 'WHOLE.test']) {
      const answer = await exchange(
        h.gateway.port,
        `CONNECT ${whole} HTTP/1.1\r\nHost: ${host}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
      );
      expect(statusLine(answer), host).toMatch(/^HTTP\/1\.1 200 /);
    }
  });

  it('refuses Basic credentials that are the bare token, without user:password, with 407 — and audits the target', async () => {
    const { answer, row } = await refused(
      `GET http://${api}/v1/basic HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: ${basic(token)}\r\n\r\n`,
      407,
      'invalid_token',
    );
    expect(statusLine(answer)).toBe('HTTP/1.1 407 proxy authentication required: invalid_token (malformed)');
    expect(answer.toLowerCase()).toContain('proxy-authenticate: bearer realm="reins", error="invalid_token"');
    expect(row).toMatchObject({
      decision: 'denied',
      reason: 'invalid_token',
      detail: 'malformed',
      status: 407,
      tenant: null,
      method: 'GET',
      host: 'api.test',
      port: h.upstream.port,
      path: '/v1/basic',
    });
  });

  it('refuses several Proxy-Authorization headers with 407, even when each holds a valid token', async () => {
    for (const second of [`Bearer ${token}`, basic(`agent:${token}`)]) {
      const { answer, row } = await refused(
        `GET http://${api}/v1/two HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: Bearer ${token}\r\nProxy-Authorization: ${second}\r\n\r\n`,
        407,
        'invalid_token',
      );
      expect(statusLine(answer)).toBe('HTTP/1.1 407 proxy authentication required: invalid_token (multiple)');
      expect(row).toMatchObject({
        reason: 'invalid_token',
        detail: 'multiple',
        status: 407,
        path: '/v1/two',
      });
    }
  });

  it('refuses the same credentials on CONNECT, auditing the CONNECT target', async () => {
    const { answer, row } = await refused(
      `CONNECT ${whole} HTTP/1.1\r\nHost: ${whole}\r\nProxy-Authorization: ${basic(token)}\r\n\r\n`,
      407,
      'invalid_token',
    );
    expect(statusLine(answer)).toBe('HTTP/1.1 407 proxy authentication required: invalid_token (malformed)');
    expect(row).toMatchObject({
      detail: 'malformed',
      method: 'CONNECT',
      host: 'whole.test',
      port: h.upstream.port,
      status: 407,
    });
    const missing = await refused(
      `CONNECT ${whole} HTTP/1.1\r\nHost: ${whole}\r\n\r\n`,
      407,
      'invalid_token',
    );
    expect(missing.row).toMatchObject({ detail: 'missing', method: 'CONNECT', host: 'whole.test' });
  });

  it('still takes the token as the Basic password or as the user name with an empty password', async () => {
    for (const [name, credentials] of [
      ['password', basic(`agent:${token}`)],
      ['user name', basic(`${token}:`)],
    ] as const) {
      const before = h.upstream.seen.length;
      const answer = await exchange(
        h.gateway.port,
        `GET http://${api}/v1/basic-${name.replace(' ', '-')} HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: ${credentials}\r\nConnection: close\r\n\r\n`,
      );
      expect(statusLine(answer), name).toBe('HTTP/1.1 200 OK');
      expect(h.upstream.seen.length).toBe(before + 1);
    }
  });
});
