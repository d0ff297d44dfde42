// The gateway's connection limits are the documented ones (docs/configuration.md, "Gateway
// limits"), made small here through GatewayLimits: a head that takes longer than
// headersTimeoutMs is answered 408 and closed, whether bytes trickle or not; a connection with
// nothing going either way for idleTimeoutMs is closed — between requests, mid-body, in a tunnel.
// Each test waits for the socket's close event and bounds when it came. Threat: slowloris-style
// clients holding connections far longer than the operator was told (Node checks headersTimeout
// only every 30 s by default: a 10 s limit closed heads after 10 to 40 s).
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testBackends } from '../support/db.ts';
import { type Harness, startHarness } from './support.ts';
import { makeCa, type TestCa, testInterceptor } from './tls-support.ts';

const [pglite] = testBackends();

const HEADERS_MS = 300;
const IDLE_MS = 700;
/** Node's connection check runs every HEADERS_MS / 10; timers and a loaded machine add a little. */
const SLACK_MS = 350;

interface Closed {
  /** Everything the gateway sent. */
  readonly text: string;
  /** Milliseconds from `since()` being called to the close event. */
  readonly afterMs: number;
}

/** A raw connection to the gateway that records what it receives and when it closes. */
async function open(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.on('error', () => {});
  let text = '';
  let mark = performance.now();
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  socket.on('data', (d) => {
    text += d.toString('latin1');
    for (const waiter of [...waiters]) {
      if (waiter.pattern.test(text)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  });
  const closed = new Promise<Closed>((resolve) =>
    socket.once('close', () => resolve({ text, afterMs: performance.now() - mark })),
  );
  return {
    socket,
    closed,
    /** Starts the clock the close is measured against. */
    since() {
      mark = performance.now();
    },
    /** Resolves once what was received matches `pattern`. */
    received(pattern: RegExp): Promise<void> {
      if (pattern.test(text)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ pattern, resolve }));
    },
  };
}

describe('the gateway’s timeouts', () => {
  let h: Harness;
  let token: string;
  let ca: TestCa;
  let api: string;

  beforeAll(async () => {
    if (pglite === undefined) throw new Error('no PGlite');
    ca = await makeCa('timeouts test CA');
    h = await startHarness(pglite, {
      limits: { headersTimeoutMs: HEADERS_MS, idleTimeoutMs: IDLE_MS },
      interceptor: testInterceptor(ca),
    });
    token = await h.workerToken();
    api = `api.test:${h.upstream.port}`;
  });
  afterAll(async () => {
    await h?.close();
  });

  it('answers 408 headers_timeout and closes a connection whose head is half sent', async () => {
    const client = await open(h.gateway.port);
    client.since();
    client.socket.write(`GET http://${api}/v1/slow HTTP/1.1\r\nHost: ${api}\r\n`);
    const { text, afterMs } = await client.closed;
    expect(text).toMatch(/^HTTP\/1\.1 408 request timeout: headers_timeout\r\n/);
    expect(text.toLowerCase()).toContain('x-reins-reason: headers_timeout');
    expect(afterMs).toBeGreaterThanOrEqual(HEADERS_MS - 20);
    expect(afterMs).toBeLessThan(HEADERS_MS + SLACK_MS);
  });

  it('closes a connection that sends nothing at all after the headers timeout, not the idle one', async () => {
    const client = await open(h.gateway.port);
    const { afterMs } = await client.closed;
    expect(afterMs).toBeGreaterThanOrEqual(HEADERS_MS - 20);
    expect(afterMs).toBeLessThan(HEADERS_MS + SLACK_MS);
  });

  it('does not let a head trickling in byte by byte outlast the headers timeout', async () => {
    const client = await open(h.gateway.port);
    const head = `GET http://${api}/v1/trickle HTTP/1.1\r\nHost: ${api}\r\nX-Slow: ${'a'.repeat(500)}`;
    let sent = 0;
    const trickle = setInterval(() => {
      if (sent < head.length && client.socket.writable) client.socket.write(head[sent++] as string);
    }, 20);
    try {
      const { text, afterMs } = await client.closed;
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      expect(afterMs).toBeLessThan(HEADERS_MS + SLACK_MS);
    } finally {
      clearInterval(trickle);
    }
  });

  it('closes an idle keep-alive connection after the idle timeout, not the headers one', async () => {
    const client = await open(h.gateway.port);
    client.socket.write(
      `GET http://${api}/v1/keep HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    await client.received(/^HTTP\/1\.1 200 [\s\S]*\r\n\r\n/);
    client.since();
    const { text, afterMs } = await client.closed;
    expect(text.toLowerCase()).toContain(`keep-alive: timeout=${Math.floor(IDLE_MS / 1000)}`);
    expect(afterMs).toBeGreaterThanOrEqual(IDLE_MS - 20);
    expect(afterMs).toBeLessThan(IDLE_MS + SLACK_MS);
  });

  it('closes a connection whose request body stalls after the idle timeout', async () => {
    const client = await open(h.gateway.port);
    client.since();
    client.socket.write(
      `POST http://${api}/v1/stalled HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\nonly ten b`,
    );
    const { afterMs } = await client.closed;
    expect(afterMs).toBeGreaterThanOrEqual(IDLE_MS - 20);
    expect(afterMs).toBeLessThan(IDLE_MS + SLACK_MS);
  });

  it('closes an idle plain tunnel after the idle timeout', async () => {
    const client = await open(h.gateway.port);
    const whole = `whole.test:${h.upstream.port}`;
    client.socket.write(
      `CONNECT ${whole} HTTP/1.1\r\nHost: ${whole}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    await client.received(/^HTTP\/1\.1 200 /);
    client.since();
    const { afterMs } = await client.closed;
    expect(afterMs).toBeGreaterThanOrEqual(IDLE_MS - 20);
    expect(afterMs).toBeLessThan(IDLE_MS + SLACK_MS);
  });

  it('answers 408 inside an inspected tunnel whose request head is half sent', async () => {
    const client = await open(h.gateway.port);
    client.socket.write(
      `CONNECT ${api} HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    await client.received(/^HTTP\/1\.1 200 [^\r]*\r\n\r\n/);
    client.since();
    client.socket.write(`GET /v1/slow HTTP/1.1\r\nHost: ${api}\r\n`);
    const { text, afterMs } = await client.closed;
    expect(text).toContain('\r\n\r\nHTTP/1.1 408 request timeout: headers_timeout\r\n');
    expect(afterMs).toBeLessThan(HEADERS_MS + SLACK_MS);
  });

  it('keeps an inspected TLS tunnel in use past the idle timeout, and closes it once idle', async () => {
    const client = await open(h.gateway.port);
    client.socket.write(
      `CONNECT ${api} HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    await client.received(/^HTTP\/1\.1 200 [^\r]*\r\n\r\n/);
    const secure = tls.connect({ socket: client.socket, servername: 'api.test', ca: ca.certPem });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    secure.on('error', () => {});
    // Requests, each sent when the previous answer came and a little over half the idle limit
    // later, for more than twice the idle limit: the tunnel is in use and stays open.
    let answers = 0;
    const started = performance.now();
    let text = '';
    secure.on('data', (d) => {
      text += d.toString('latin1');
    });
    while (performance.now() - started < 2 * IDLE_MS + 100) {
      const before = (text.match(/HTTP\/1\.1 /g) ?? []).length;
      secure.write(`GET /v2/denied HTTP/1.1\r\nHost: ${api}\r\n\r\n`);
      await new Promise<void>((resolve, reject) => {
        const check = () => {
          if ((text.match(/HTTP\/1\.1 403 [\s\S]*?\r\n\r\n\{[^}]*\}/g) ?? []).length > before) {
            secure.off('data', check);
            resolve();
          }
        };
        secure.on('data', check);
        secure.once('close', () => reject(new Error(`closed after ${answers} answers`)));
      });
      answers++;
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS * 0.6));
    }
    expect(answers).toBeGreaterThanOrEqual(3);
    client.since();
    const { afterMs } = await client.closed;
    expect(afterMs).toBeGreaterThanOrEqual(IDLE_MS * 0.4 - 20);
    expect(afterMs).toBeLessThan(IDLE_MS + SLACK_MS);
  });
});
