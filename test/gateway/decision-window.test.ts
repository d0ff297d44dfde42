// The window between a request's head and its decision: a DNS lookup (held open by a slow or
// hostile resolver) or a key fetch can make it last seconds. A client that leaves in it must not
// leave anything taken for nobody (an upstream slot, a tunnel slot, a dial), and a revocation or a
// quarantine that lands in it must already bite when the decision is made.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExchangeEvent } from '../../src/gateway/events.ts';
import { revokeTree } from '../../src/server/provider/ledger.ts';
import { testBackends } from '../support/db.ts';
import { quarantineAgent, releaseAgent } from '../support/quarantine.ts';
import { type Harness, startHarness, within } from './support.ts';

const [pglite] = testBackends();
const HELD = 'held.test';
/** Held too, then answers a private address (refused: forbidden_address). */
const HELD_PRIVATE = 'held-private.test';

/** Lookups of HELD wait here until released; the gateway is then deciding their requests. */
const held: { release: () => void }[] = [];
let h: Harness;
const events: ExchangeEvent[] = [];

beforeAll(async () => {
  if (pglite === undefined) throw new Error('no PGlite');
  h = await startHarness(pglite, {
    extraEgress: (port) => [`http://${HELD}:${port}/`, `http://${HELD_PRIVATE}:${port}/`],
    // One slot each, and a short wait: a slot leaked to a gone client shows as the next request
    // answered 429 (upstream_busy, too_many_tunnels) instead of going through.
    limits: { tunnelsPerToken: 1, upstreamPerToken: 1, upstreamWaitMs: 300 },
    resolveWith: async (name, table) => {
      if (name !== HELD && name !== HELD_PRIVATE) return table(name);
      await new Promise<void>((release) => held.push({ release }));
      return table(name === HELD ? 'api.test' : 'internal.test');
    },
  });
  h.gateway.events.subscribe((event) => {
    events.push(event);
  });
});
afterAll(async () => {
  await h?.close();
});

/** Sends `head` on a new connection; the connection collects what comes back. */
async function send(head: string) {
  const socket = net.connect(h.gateway.port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  let text = '';
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1');
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(head);
  return { socket, text: () => text, closed };
}

/** Waits until `count` lookups of HELD are held, and takes them. */
async function heldLookups(count: number) {
  await within(2_000, () => held.length >= count || undefined);
  return held.splice(0, count);
}

/** Resets the connection (RST, not FIN): the client is gone, not half-closed. */
async function reset(c: Awaited<ReturnType<typeof send>>): Promise<void> {
  c.socket.resetAndDestroy();
  await c.closed;
}

const get = (path: string, token: string) =>
  `GET http://${HELD}:${h.upstream.port}${path} HTTP/1.1\r\nHost: ${HELD}:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`;
const connect = (token: string) =>
  `CONNECT ${HELD}:${h.upstream.port} HTTP/1.1\r\nHost: ${HELD}:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`;

function eventsFor(path: string): ExchangeEvent[] {
  return events.filter((e) => e.host === HELD && e.path === path);
}

const jtiOf = (token: string): string =>
  JSON.parse(Buffer.from(String(token.split('.')[1]), 'base64url').toString()).jti;

describe('a client that leaves while its request is decided', () => {
  it('is recorded as gone, nothing is dialled for it, and its token’s upstream slot is free for the next request', async () => {
    const token = await h.workerToken();
    const gone = await Promise.all([send(get('/gone/1', token)), send(get('/gone/2', token))]);
    const lookups = await heldLookups(2);
    for (const c of gone) await reset(c);
    for (const lookup of lookups) lookup.release();
    const recorded = await within(2_000, () => {
      const mine = [...eventsFor('/gone/1'), ...eventsFor('/gone/2')];
      return mine.length === 2 ? mine : undefined;
    });
    expect(recorded.map((e) => [e.reason, e.status, e.resolvedAddress])).toEqual([
      ['client_closed', null, null],
      ['client_closed', null, null],
    ]);
    expect(h.upstream.seen.filter((s) => s.url.startsWith('/gone/'))).toEqual([]);

    // One upstream slot per token: had a gone request kept it, this one would wait and be refused.
    const next = await send(get('/after', token));
    (await heldLookups(1))[0]?.release();
    await within(2_000, () => /^HTTP\/1\.1 200 /.test(next.text()) || undefined);
    next.socket.destroy();
    expect(h.upstream.seen.some((s) => s.url === '/after')).toBe(true);
  });

  it('keeps a refusal’s reason when the client left before hearing it', async () => {
    const token = await h.workerToken();
    const c = await send(
      `GET http://${HELD_PRIVATE}:${h.upstream.port}/denied HTTP/1.1\r\nHost: ${HELD_PRIVATE}:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    const [lookup] = await heldLookups(1);
    await reset(c);
    lookup?.release();
    // Threat: a client closing each denied request early to keep its denials out of the audit
    // trail and monitoring's denial counts. The row says what was decided, and that nothing was
    // answered.
    const [event] = await within(2_000, () => {
      const mine = events.filter((e) => e.host === HELD_PRIVATE && e.path === '/denied');
      return mine.length === 1 ? mine : undefined;
    });
    expect([event?.reason, event?.status, event?.decision]).toEqual(['forbidden_address', null, 'denied']);
  });

  it('leaves no tunnel open for a CONNECT whose client left: the token’s one tunnel slot is free', async () => {
    const token = await h.workerToken();
    const gone = await send(connect(token));
    const [lookup] = await heldLookups(1);
    await reset(gone);
    lookup?.release();
    const [event] = await within(2_000, () => {
      const mine = events.filter((e) => e.kind === 'connect' && e.host === HELD && e.jti === jtiOf(token));
      return mine.length === 1 ? mine : undefined;
    });
    expect([event?.reason, event?.status, event?.tunnel]).toEqual(['client_closed', null, 'none']);

    const next = await send(connect(token));
    (await heldLookups(1))[0]?.release();
    await within(2_000, () => /^HTTP\/1\.1 \d{3} /.test(next.text()) || undefined);
    expect(next.text()).toMatch(/^HTTP\/1\.1 200 Connection Established\r\n/);
    next.socket.destroy();
  });
});

describe('a change that lands while a request is decided', () => {
  it('refuses the request of an agent quarantined while its name resolved', async () => {
    const token = await h.workerToken();
    const c = await send(get('/quarantined', token));
    const [lookup] = await heldLookups(1);
    await quarantineAgent(h.auth.db, 'acme', 'worker', 'test: quarantined mid-lookup');
    try {
      await within(2_000, () => h.live.isQuarantined('acme', 'worker') || undefined);
      lookup?.release();
      await within(2_000, () => /\r\n\r\n\{.*\}$/s.test(c.text()) || undefined);
      expect(c.text()).toMatch(/^HTTP\/1\.1 403 egress denied: agent_quarantined\r\n/);
      expect(h.upstream.seen.some((s) => s.url === '/quarantined')).toBe(false);
      const [event] = eventsFor('/quarantined');
      expect([event?.reason, event?.status]).toEqual(['agent_quarantined', 403]);
    } finally {
      c.socket.destroy();
      await releaseAgent(h.auth.db, 'acme', 'worker', 'test: released');
      await within(2_000, () => !h.live.isQuarantined('acme', 'worker') || undefined);
    }
  });

  it('answers 407 to a token revoked while its name resolved, and sends nothing', async () => {
    const token = await h.workerToken();
    const c = await send(get('/revoked', token));
    const [lookup] = await heldLookups(1);
    await revokeTree(h.auth.db, jtiOf(token), 'test: revoked mid-lookup');
    await within(2_000, () => h.live.isRevoked(jtiOf(token)) || undefined);
    lookup?.release();
    await within(2_000, () => /\r\n\r\n\{.*\}$/s.test(c.text()) || undefined);
    c.socket.destroy();
    expect(c.text()).toMatch(/^HTTP\/1\.1 407 [^\r]*\(revoked\)\r\n/);
    expect(h.upstream.seen.some((s) => s.url === '/revoked')).toBe(false);
    const [event] = eventsFor('/revoked');
    expect([event?.reason, event?.status, event?.detail]).toEqual(['invalid_token', 407, 'revoked']);
  });
});
