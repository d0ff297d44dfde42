// One evaluation for every transport, one event per exchange: what the gateway answers, what it
// publishes on its event stream and what the audit row says are the same facts, for absolute-form
// requests, CONNECTs and the requests inside inspected tunnels; and the limits hold for every kind
// of tunnel.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExchangeEvent } from '../../src/gateway/events.ts';
import { testBackends } from '../support/db.ts';
import { auditRow, type Harness, startHarness, within } from './support.ts';
import { makeCa, testInterceptor } from './tls-support.ts';

const [pglite] = testBackends();

/** A raw client connection that collects what the gateway sends. */
async function connection(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  let text = '';
  const waiters: (() => void)[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1');
    for (const wake of waiters.splice(0)) wake();
  });
  socket.on('close', () => {
    closed = true;
    for (const wake of waiters.splice(0)) wake();
  });
  return {
    socket,
    send: (bytes: string) => socket.write(bytes),
    text: () => text,
    /** Resolves once the collected text matches (or the connection closes: then it must match already). */
    async until(pattern: RegExp): Promise<string> {
      while (!pattern.test(text)) {
        if (closed) throw new Error(`closed before ${pattern}: ${JSON.stringify(text)}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
      return text;
    },
    close: () => socket.destroy(),
  };
}

const connect = (authority: string, token: string) =>
  `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`;

// One gateway for the stream and the tunnel cap (two tunnels per token, so the cap is reachable).
let h: Harness;
const events: ExchangeEvent[] = [];

beforeAll(async () => {
  if (pglite === undefined) throw new Error('no PGlite');
  h = await startHarness(pglite, {
    interceptor: testInterceptor(await makeCa('pipeline test CA')),
    limits: { tunnelsPerToken: 2 },
  });
  h.gateway.events.subscribe((event) => {
    events.push(event);
  });
});
afterAll(async () => {
  await h?.close();
});

describe('the event stream', () => {
  let token: string;

  beforeAll(async () => {
    token = await h.workerToken();
  });

  it('publishes every exchange of every transport once, with what the client was answered and what the row says', async () => {
    const port = h.upstream.port;
    const api = `api.test:${port}`;
    const whole = `whole.test:${port}`;
    const before = events.length;
    const answered: { requestId: string | null; status: number }[] = [];
    const idOf = (text: string) => /x-request-id: ([0-9a-f-]{36})/i.exec(text)?.[1] ?? null;
    const bodyIdOf = (text: string) => /"request_id":"([0-9a-f-]{36})"/.exec(text)?.[1] ?? null;

    // Absolute-form: allowed, denied, no token, framing.
    for (const [head, status] of [
      [
        `GET http://${api}/v1/ok HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
        200,
      ],
      [
        `DELETE http://${api}/v1/x HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
        403,
      ],
      [`GET http://${api}/v1/ok HTTP/1.1\r\nHost: ${api}\r\n\r\n`, 407],
      [`GET http://${api}/v1/ok HTTP/1.1\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`, 400],
    ] as const) {
      const c = await connection(h.gateway.port);
      c.send(head);
      const text = await c.until(/\r\n\r\n[\s\S]*(\}|\r\n\r\n)$|HTTP\/1\.1 200[\s\S]*\r\n\r\n/);
      c.close();
      expect(text.startsWith(`HTTP/1.1 ${status} `), text).toBe(true);
      answered.push({ requestId: idOf(text), status });
    }
    // CONNECT refused; a plain tunnel; an inspected tunnel with one allowed and one denied request.
    const refused = await connection(h.gateway.port);
    refused.send(connect('other.test:443', token));
    const refusal = await refused.until(/\}$/);
    answered.push({ requestId: bodyIdOf(refusal), status: 403 });
    refused.close();

    const plain = await connection(h.gateway.port);
    plain.send(connect(whole, token));
    await plain.until(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/);
    plain.send(`GET /inside HTTP/1.1\r\nHost: ${whole}\r\n\r\n`);
    await plain.until(/200 OK[\s\S]*\r\n\r\n/);
    plain.close();

    const inspected = await connection(h.gateway.port);
    inspected.send(connect(api, token));
    await inspected.until(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/);
    inspected.send(`GET /v1/in HTTP/1.1\r\nHost: ${api}\r\n\r\nGET /v2/out HTTP/1.1\r\nHost: ${api}\r\n\r\n`);
    const inner = await inspected.until(/path_not_allowed[^}]*\}/);
    inspected.close();
    const innerIds = [...inner.matchAll(/x-request-id: ([0-9a-f-]{36})/gi)].map((m) => m[1]);
    expect(innerIds).toHaveLength(2);

    // Nine exchanges: four absolute-form, three CONNECTs (the plain tunnel's published when it
    // closes) and two requests inside the inspected tunnel.
    const published = await within(2_000, () =>
      events.length - before >= 9 ? events.slice(before) : undefined,
    );
    await within(2_000, () => events.slice(before).some((e) => e.tunnel === 'plain') || undefined);
    const mine = events.slice(before);
    expect(mine.map((e) => `${e.kind}/${e.tunnel ?? '-'}/${e.status}/${e.reason ?? 'none'}`).sort()).toEqual(
      [
        'connect/inspected/200/none',
        'connect/none/403/no_matching_rule',
        'connect/plain/200/none',
        'request/-/200/none',
        'request/-/200/none',
        'request/-/400/missing_host',
        'request/-/403/method_not_allowed',
        'request/-/403/path_not_allowed',
        'request/-/407/invalid_token',
      ].sort(),
    );
    expect(published.length).toBeGreaterThanOrEqual(9);
    // Once each: no request id twice.
    expect(new Set(mine.map((e) => e.requestId)).size).toBe(mine.length);
    // What the client was told is what was published, and what the audit row says.
    for (const { requestId, status } of answered) {
      const event = mine.find((e) => e.requestId === requestId);
      expect(event?.status, String(requestId)).toBe(status);
      const row = await auditRow(h, String(requestId));
      expect(row).toMatchObject({ status, reason: event?.reason, decision: event?.decision });
    }
    for (const id of innerIds) {
      const event = mine.find((e) => e.requestId === id);
      expect(event).toMatchObject({ inspected: true, kind: 'request' });
      expect(await auditRow(h, String(id))).toMatchObject({ inspected: true, status: event?.status });
    }
  });
});

describe('tunnels per token', () => {
  for (const [kind, host] of [
    ['plain', 'whole.test'],
    ['inspected', 'api.test'],
  ] as const) {
    it(`caps ${kind} tunnels: one over the limit is refused 429 too_many_tunnels and audited, and a slot freed is usable again`, async () => {
      const token = await h.workerToken();
      const authority = `${host}:${h.upstream.port}`;
      const open = [];
      for (let i = 0; i < 2; i++) {
        const c = await connection(h.gateway.port);
        c.send(connect(authority, token));
        await c.until(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/);
        open.push(c);
      }
      const connectionsBefore = h.upstream.connections();
      const third = await connection(h.gateway.port);
      third.send(connect(authority, token));
      const answer = await third.until(/\}$/);
      expect(answer).toMatch(/^HTTP\/1\.1 429 too many requests: too_many_tunnels\r\n/);
      expect(answer).toMatch(/\r\nretry-after: 1\r\n/i);
      expect(answer).toMatch(/\r\nx-reins-reason: too_many_tunnels\r\n/i);
      // Nothing was dialled for it.
      expect(h.upstream.connections()).toBe(connectionsBefore);
      const requestId = /"request_id":"([0-9a-f-]{36})"/.exec(answer)?.[1];
      expect(await auditRow(h, String(requestId))).toMatchObject({
        decision: 'denied',
        reason: 'too_many_tunnels',
        status: 429,
        method: 'CONNECT',
      });
      // Another token is not held back by this one's tunnels.
      const other = await connection(h.gateway.port);
      other.send(connect(authority, await h.workerToken()));
      await other.until(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/);
      other.close();
      // A closed tunnel gives its slot back.
      open.shift()?.close();
      await within(2_000, async () => {
        const retry = await connection(h.gateway.port);
        retry.send(connect(authority, token));
        const text = await retry.until(/^HTTP\/1\.1 [0-9]{3} [\s\S]*?\r\n\r\n/);
        retry.close();
        return text.startsWith('HTTP/1.1 200 ') || undefined;
      });
      for (const c of open) c.close();
    });
  }
});

/**
 * A TCP port whose listen backlog is full: the kernel drops further SYNs, so a connect to it hangs
 * until the caller gives up (the only way to make an upstream time out inside a loopback-only
 * network namespace). Python holds it: Node accepts every connection itself.
 */
async function blackHole(): Promise<{ port: number; close(): void }> {
  const child = spawn(
    'python3',
    [
      '-c',
      [
        'import socket, sys',
        's = socket.socket()',
        "s.bind(('127.0.0.1', 0))",
        's.listen(0)',
        'print(s.getsockname()[1], flush=True)',
        'sys.stdin.read()',
      ].join('\n'),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('error', reject);
  });
  // Fill the accept queue: with a backlog of 0 (never accepted), one connection fills it.
  const filler = net.connect(port, '127.0.0.1');
  filler.on('error', () => {});
  await new Promise((resolve) => filler.once('connect', resolve));
  return {
    port,
    close() {
      filler.destroy();
      child.kill();
    },
  };
}

describe('an upstream that times out', () => {
  let slow: Harness;
  let hole: { port: number; close(): void };

  beforeAll(async () => {
    if (pglite === undefined) throw new Error('no PGlite');
    hole = await blackHole();
    slow = await startHarness(pglite, {
      extraEgress: () => [`https://slow.test:${hole.port}/`, `http://slow.test:${hole.port}/`],
      hosts: { 'slow.test': ['127.0.0.1'] },
      openings: [`127.0.0.1/32:${hole.port}`],
      limits: { upstreamTimeoutMs: 300 },
    });
  });
  afterAll(async () => {
    await slow?.close();
    hole?.close();
  });

  /** Sends `head` to the gateway and checks the 504 it answers and the row it records. */
  async function timesOut(head: string, row: Record<string, unknown>): Promise<void> {
    const c = await connection(slow.gateway.port);
    c.send(head);
    const answer = await c.until(/\}$/);
    c.close();
    expect(answer).toMatch(/^HTTP\/1\.1 504 gateway timeout: upstream_timeout\r\n/);
    const requestId = /"request_id":"([0-9a-f-]{36})"/.exec(answer)?.[1];
    expect(await auditRow(slow, String(requestId))).toMatchObject({
      decision: 'allowed',
      reason: 'upstream_timeout',
      status: 504,
      ...row,
    });
  }

  it('is answered 504 upstream_timeout on a CONNECT, and the audit row says upstream_timeout and 504 too', async () => {
    await timesOut(connect(`slow.test:${hole.port}`, await slow.workerToken()), { method: 'CONNECT' });
  });

  it('is answered 504 upstream_timeout on an absolute-form request the upstream never answers, and its row says so', async () => {
    // The upstream takes the connection (the kernel's backlog) and the request, and stays silent:
    // the pooled connection's own timer (forward.ts) must end the wait, not the client's patience.
    await timesOut(
      `GET http://slow.test:${hole.port}/quiet HTTP/1.1\r\nHost: slow.test:${hole.port}\r\n` +
        `Proxy-Authorization: Bearer ${await slow.workerToken()}\r\n\r\n`,
      { method: 'GET', path: '/quiet' },
    );
  });
});
