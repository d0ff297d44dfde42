// Attacks on the gateway found in review, each kept as a test: request smuggling through a
// body the upstream would read as a second request, a status line that would crash the process,
// a CONNECT reaching another tenant's service through the http scheme, a tunnel outliving the
// policy that allowed it, and an allowed request that leaves no audit row.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testBackends } from '../support/db.ts';
import { gatewayPolicy, type Harness, startHarness, within } from './support.ts';

const [pglite] = testBackends();

/** A TCP server answering every connection with `reply`, recording what it received. */
async function rawUpstream(reply: string) {
  const received: string[] = [];
  const server = net.createServer((socket) => {
    let text = '';
    socket.on('data', (d) => {
      text += d.toString('latin1');
      if (text.includes('\r\n\r\n')) socket.end(reply);
    });
    socket.on('close', () => received.push(text));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return { port, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

function exchange(port: number, bytes: string, waitMs = 1_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (d) => {
      text += d.toString('latin1');
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.on('error', () => {});
  });
}

describe('the gateway under attack', () => {
  let h: Harness;
  let token: string;
  let weird: Awaited<ReturnType<typeof rawUpstream>>;
  beforeAll(async () => {
    if (pglite === undefined) throw new Error('no PGlite');
    weird = await rawUpstream('HTTP/1.1 099 Odd\r\ncontent-length: 0\r\n\r\n');
    h = await startHarness(pglite, {
      extraEgress: (port) => [
        `http://weird.test:${weird.port}/`,
        `http://owned.globex.test:${port}/`,
        `http://tunnel.test:${port}/`,
      ],
      hosts: { 'weird.test': ['127.0.0.1'], 'tunnel.test': ['127.0.0.1'] },
      openings: [`127.0.0.1/32:${weird.port}`],
    });
    token = await h.workerToken();
  });
  afterAll(async () => {
    await h?.close();
    await weird?.close();
  });

  it('forwards a GET with a chunked body as exactly one request (no smuggling)', async () => {
    const port = h.upstream.port;
    const before = h.upstream.seen.length;
    const smuggled = `DELETE /admin/secret HTTP/1.1\r\nHost: api.test:${port}\r\n\r\n`;
    const chunk = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
    for (const framing of [
      'Transfer-Encoding: chunked\r\n',
      `Connection: content-length\r\nContent-Length: ${smuggled.length}\r\n`,
    ]) {
      const body = framing.startsWith('Transfer') ? chunk : smuggled;
      await exchange(
        h.gateway.port,
        `GET http://api.test:${port}/v1/x HTTP/1.1\r\nHost: api.test:${port}\r\nProxy-Authorization: Bearer ${token}\r\n${framing}Connection: close\r\n\r\n${body}`,
      );
    }
    await within(1_000, () => h.upstream.seen.length >= before + 2 || undefined);
    const seen = h.upstream.seen.slice(before);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['GET /v1/x', 'GET /v1/x']);
    expect(
      seen.every(
        (s) =>
          s.bodySha256 ===
          createHash('sha256')
            .update(s.bodyBytes === 0 ? '' : smuggled)
            .digest('hex'),
      ),
    ).toBe(true);
  });

  it('answers 502 to an upstream status below 100 and keeps running', async () => {
    const answer = await exchange(
      h.gateway.port,
      `GET http://weird.test:${weird.port}/ HTTP/1.1\r\nHost: weird.test:${weird.port}\r\nProxy-Authorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 502/);
    const after = await exchange(
      h.gateway.port,
      `GET http://api.test:${h.upstream.port}/v1/alive HTTP/1.1\r\nHost: api.test:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
    );
    expect(after).toMatch(/^HTTP\/1\.1 200/);
  });

  it('refuses a CONNECT to another tenant’s owned service even when an http rule names its port', async () => {
    const answer = await exchange(
      h.gateway.port,
      `CONNECT owned.globex.test:${h.upstream.port} HTTP/1.1\r\nHost: owned.globex.test:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 403/);
    expect(answer).toContain('"reason":"cross_tenant"');
  });

  it('closes an open tunnel within a second of a policy apply that removes its destination', async () => {
    const socket = net.connect(h.gateway.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(
      `CONNECT tunnel.test:${h.upstream.port} HTTP/1.1\r\nHost: tunnel.test:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    const established = await new Promise<string>((resolve) =>
      socket.once('data', (d) => resolve(d.toString())),
    );
    expect(established).toMatch(/^HTTP\/1\.1 200/);
    socket.on('error', () => {});
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
    const appliedAt = Date.now();
    await h.applyPolicy(gatewayPolicy(h.upstream.port, [`http://weird.test:${weird.port}/`]));
    expect((await closed) - appliedAt).toBeLessThan(1_000);
  });

  it('audits an allowed request whose client leaves before the answer ends', async () => {
    const requestId = await new Promise<string>((resolve) => {
      const socket = net.connect(h.gateway.port, '127.0.0.1', () =>
        socket.write(
          `POST http://api.test:${h.upstream.port}/v1/gone HTTP/1.1\r\nHost: api.test:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(50_000)}`,
        ),
      );
      socket.on('error', () => {});
      // Leave before the body is complete: the upstream never answers this request.
      setTimeout(() => {
        socket.destroy();
        resolve('');
      }, 200);
    });
    expect(requestId).toBe('');
    const row = await within(2_000, async () => {
      const { rows } = await h.auth.db.query<Record<string, unknown>>(
        "select * from audit_events where path = '/v1/gone'",
      );
      return rows[0];
    });
    expect(row).toMatchObject({ decision: 'allowed', reason: 'client_closed' });
    expect(Number(row.bytes_out)).toBeGreaterThan(0);
  });
});
