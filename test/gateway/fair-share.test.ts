// Fair shares of an upstream, end to end (src/gateway/upstream-share.ts, body-rate.ts, wired into
// the forward path). Threat: one valid token sends request bodies at one byte a second on as many
// connections as the upstream pool holds, and every other agent and tenant queues behind it. The
// pool is made small here (upstreamSocketsPerOrigin: 8) so that a flood of 16 connections would
// fill it twice over; a counting upstream says how many of the flood's requests reached it
// at once. While the flood is on, other agents' requests to the same upstream must be answered at
// once; then the flood must end by itself: what waited beyond its share 429 `upstream_busy`, what
// held a slot 408 `body_too_slow`.
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { ProxyAgent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GatewayLimits } from '../../src/gateway/proxy.ts';
import { yaml } from '../policy/support.ts';
import { basic, requestToken } from '../server/provider/support.ts';
import { testBackends } from '../support/db.ts';
import {
  auditRow,
  gatewayPolicy,
  type Harness,
  startHarness,
  WORKER_ENV,
  WORKER_SECRET,
  within,
} from './support.ts';

const [pglite] = testBackends();

const SOCKETS = 8;
const PER_TOKEN = 2;
const PER_TENANT = 4;
/** A request beyond its share waits this long, then 429. Shorter than the window, so the order is fixed. */
const WAIT_MS = 1_500;
/** Each window of a body must bring RATE × WINDOW_MS / 1000 bytes: 2.5 KiB, where a trickle brings 3. */
const WINDOW_MS = 2_500;
const RATE = 1_024;
/** What "at once" means for the other agents, far below the wait and the window. */
const PROMPT_MS = 1_000;
/** The gateway judges waits and rates on a tick (a tenth of the smaller limit); a loaded machine adds some. */
const SLACK_MS = 1_000;

const limits: Partial<GatewayLimits> = {
  upstreamSocketsPerOrigin: SOCKETS,
  upstreamPerToken: PER_TOKEN,
  upstreamPerTenant: PER_TENANT,
  upstreamWaitMs: WAIT_MS,
  bodyMinRateBytesPerSecond: RATE,
  bodyRateWindowMs: WINDOW_MS,
};

/**
 * The upstream under the flood: answers each request once its body is in (echoing it) — or, for
 * the group `early`, at once with a 401 while the body still streams in, as APIs that check
 * credentials first do — and counts the requests in progress per group (the first path segment:
 * from the head until both the request and the answer are done), with the most there ever were.
 */
interface CountingUpstream {
  readonly port: number;
  readonly changes: EventEmitter;
  inProgress(group: string): number;
  most(group: string): number;
  /** Request ids (x-request-id as forwarded) of the requests answered, per group. */
  answered(group: string): string[];
  close(): Promise<void>;
}

async function startCountingUpstream(): Promise<CountingUpstream> {
  const now = new Map<string, number>();
  const most = new Map<string, number>();
  const answered = new Map<string, string[]>();
  const changes = new EventEmitter();
  const server: Server = createServer((req, res) => {
    const group = (req.url ?? '').split('/')[1] ?? '';
    now.set(group, (now.get(group) ?? 0) + 1);
    most.set(group, Math.max(most.get(group) ?? 0, now.get(group) ?? 0));
    let sides = 2;
    const sideDone = () => {
      if (--sides > 0) return;
      now.set(group, (now.get(group) ?? 1) - 1);
      changes.emit('change');
    };
    // The request is done at its end, or when its connection closes: once the answer is out, Node
    // no longer tells the request itself that its connection went.
    const { socket } = req;
    const requestDone = () => {
      socket.off('close', requestDone);
      req.off('end', requestDone);
      sideDone();
    };
    req.once('end', requestDone);
    socket.once('close', requestDone);
    res.once('close', sideDone);
    changes.emit('change');
    if (group === 'early') {
      res.writeHead(401, { 'content-type': 'text/plain' });
      res.end('no');
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      answered.set(group, [...(answered.get(group) ?? []), String(req.headers['x-request-id'])]);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    changes,
    inProgress: (group) => now.get(group) ?? 0,
    most: (group) => most.get(group) ?? 0,
    answered: (group) => answered.get(group) ?? [],
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Resolves once `holds()` is true, checked on every change upstream; fails after `ms`. */
function until(upstream: CountingUpstream, holds: () => boolean, ms: number, what: string): Promise<void> {
  if (holds()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      upstream.changes.off('change', check);
      reject(new Error(`not within ${ms} ms: ${what}`));
    }, ms);
    function check() {
      if (!holds()) return;
      clearTimeout(deadline);
      upstream.changes.off('change', check);
      resolve();
    }
    upstream.changes.on('change', check);
  });
}

interface FloodConnection {
  /** What the gateway sent back so far. */
  text(): string;
  /** Resolves when the connection closed, with what was received and when (ms after the flood began). */
  readonly closed: Promise<{ readonly text: string; readonly atMs: number }>;
}

/**
 * `count` connections, each a POST announcing 100 bytes of body and sending one byte a second of
 * it: never enough to complete, always enough to keep the connection from being idle.
 */
async function flood(
  proxyPort: number,
  origin: string,
  group: string,
  tokens: readonly string[],
  count: number,
) {
  const began = performance.now();
  const connections: FloodConnection[] = [];
  const sockets: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const token = tokens[i % tokens.length] as string;
    const socket = net.connect(proxyPort, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(
      `POST http://${origin}/${group}/${i} HTTP/1.1\r\nHost: ${origin}\r\nProxy-Authorization: Bearer ${token}\r\n` +
        'Content-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nx',
    );
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
    });
    sockets.push(socket);
    connections.push({
      text: () => text,
      closed: new Promise((resolve) =>
        socket.once('close', () => resolve({ text, atMs: performance.now() - began })),
      ),
    });
  }
  const trickle = setInterval(() => {
    for (const socket of sockets) if (socket.writable) socket.write('x');
  }, 1_000);
  return {
    connections,
    /** Ends the flood from the client's side. */
    stop() {
      clearInterval(trickle);
      for (const socket of sockets) socket.destroy();
    },
    /** Every connection closed (by the gateway), or cut by the test after `ms`. */
    async ended(ms: number) {
      const cutoff = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, ms);
      try {
        return await Promise.all(connections.map((c) => c.closed));
      } finally {
        clearTimeout(cutoff);
        clearInterval(trickle);
      }
    },
  };
}

/** The status, x-reins-reason and x-request-id of a raw answer. */
function answerOf(text: string): { status: number; reason: string; requestId: string } {
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1] ?? 0);
  const reason = /\r\nx-reins-reason: ([^\r]*)\r\n/i.exec(text)?.[1] ?? '';
  const requestId = /\r\nx-request-id: ([^\r]*)\r\n/i.exec(text)?.[1] ?? '';
  return { status, reason, requestId };
}

describe('an upstream shared out while one token floods it with slow bodies', () => {
  let h: Harness;
  let upstream: CountingUpstream;
  let origin: string;
  const tokens: Record<'worker' | 'reader' | 'visitor', string> = { worker: '', reader: '', visitor: '' };

  /** A token for `agent`, once the auth server knows it (a policy apply reaches it in a moment). */
  async function tokenFor(agent: string): Promise<string> {
    return within(5_000, async () => {
      const { status, body } = await requestToken(
        h.auth,
        { grant_type: 'client_credentials' },
        basic(agent, WORKER_SECRET),
      );
      return status === 200 ? String(body.access_token) : undefined;
    });
  }

  async function post(token: string, path: string, body: string) {
    const dispatcher = new ProxyAgent({ uri: h.proxyUrl, token: `Bearer ${token}`, proxyTunnel: false });
    const started = performance.now();
    try {
      // A starved request fails here, in a few seconds, rather than as the test's timeout.
      const response = await request(`http://${origin}${path}`, {
        method: 'POST',
        body,
        dispatcher,
        headersTimeout: 5 * PROMPT_MS,
      });
      const text = await response.body.text();
      return {
        status: response.statusCode,
        text,
        requestId: String(response.headers['x-request-id']),
        ms: performance.now() - started,
      };
    } finally {
      await dispatcher.close();
    }
  }

  beforeAll(async () => {
    if (pglite === undefined) throw new Error('no PGlite');
    upstream = await startCountingUpstream();
    origin = `shared.test:${upstream.port}`;
    const rule = `http://shared.test:${upstream.port}/`;
    h = await startHarness(pglite, {
      extraEgress: () => [rule],
      hosts: { 'shared.test': ['127.0.0.1'] },
      openings: [`127.0.0.1/32:${upstream.port}`],
      limits,
    });
    // Another agent of the flooding tenant, and an agent of another tenant, both granted the origin.
    const files = gatewayPolicy(h.upstream.port, [rule]);
    files['acme.yaml'] += yaml(
      '  reader:',
      `    auth: { method: client_secret_basic, secret_env: ${WORKER_ENV} }`,
      `    egress: ["${rule}"]`,
    );
    files['globex.yaml'] += yaml(
      'agents:',
      '  visitor:',
      `    auth: { method: client_secret_basic, secret_env: ${WORKER_ENV} }`,
      `    egress: ["${rule}"]`,
    );
    await h.applyPolicy(files);
    tokens.worker = await h.workerToken();
    tokens.reader = await tokenFor('reader');
    tokens.visitor = await tokenFor('visitor');
    // Each goes through once before the flood: the gateway's view of the policy has caught up.
    for (const agent of ['reader', 'visitor'] as const) {
      await within(5_000, async () => (await post(tokens[agent], `/warm/${agent}`, 'warm')).status === 200);
    }
  });
  afterAll(async () => {
    await h?.close();
    await upstream?.close();
  });

  it('answers other agents at once while one token’s flood holds only its share, then ends the flood by itself', async () => {
    const size = SOCKETS * 2;
    const { connections, ended } = await flood(h.gateway.port, origin, 'flood', [tokens.worker], size);
    await until(
      upstream,
      () => upstream.inProgress('flood') >= PER_TOKEN,
      5_000,
      'the flood reached the upstream',
    );

    const asks = [
      post(tokens.reader, '/others/reader-1', 'same tenant, another agent'),
      post(tokens.visitor, '/others/visitor-1', 'another tenant'),
      post(tokens.reader, '/others/reader-2', 'r'.repeat(50_000)),
      post(tokens.visitor, '/others/visitor-2', 'v'.repeat(50_000)),
    ];
    const answers = await Promise.all(asks);
    // The flood is still on: not one of its connections has been answered or closed yet.
    expect(connections.map((c) => c.text())).toEqual(connections.map(() => ''));
    expect(upstream.inProgress('flood')).toBe(PER_TOKEN);
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.ms).toBeLessThan(PROMPT_MS);
      // Sent on and answered by the upstream, not by the gateway.
      expect(upstream.answered('others')).toContain(answer.requestId);
    }
    expect(answers[2]?.text).toBe('r'.repeat(50_000));

    const closed = await ended(WINDOW_MS + SLACK_MS + 5_000);
    const outcomes = closed.map((c) => ({ ...answerOf(c.text), atMs: c.atMs }));
    const cut = outcomes.filter((o) => o.reason === 'body_too_slow');
    const turnedAway = outcomes.filter((o) => o.reason === 'upstream_busy');
    // What held a slot was cut by the body rate; everything beyond the share waited, then was told so.
    expect(cut.map((o) => o.status)).toEqual(Array(PER_TOKEN).fill(408));
    expect(turnedAway.map((o) => o.status)).toEqual(Array(size - PER_TOKEN).fill(429));
    for (const o of turnedAway) expect(o.atMs).toBeLessThan(WAIT_MS + SLACK_MS);
    for (const o of cut) {
      expect(o.atMs).toBeGreaterThanOrEqual(WINDOW_MS - 50);
      expect(o.atMs).toBeLessThan(WINDOW_MS + SLACK_MS);
    }
    expect(upstream.most('flood')).toBe(PER_TOKEN);
    expect(upstream.answered('flood')).toEqual([]);
    // One row each, with the reason and status the client was told.
    const rows = await Promise.all(outcomes.map((o) => auditRow(h, o.requestId)));
    expect(rows.filter((r) => r.reason === 'body_too_slow' && r.status === 408)).toHaveLength(PER_TOKEN);
    expect(rows.filter((r) => r.reason === 'upstream_busy' && r.status === 429)).toHaveLength(
      size - PER_TOKEN,
    );
  });

  it('answers another tenant at once while one tenant floods from many tokens, holding only the tenant’s share', async () => {
    // More tokens than the pool has room for at a token's share: only the tenant's cap stops them.
    const many = await Promise.all(
      Array.from({ length: SOCKETS / PER_TOKEN + 1 }, async () => h.workerToken()),
    );
    const size = many.length * (PER_TOKEN + 1);
    const { connections, ended } = await flood(h.gateway.port, origin, 'tenant-flood', many, size);
    await until(
      upstream,
      () => upstream.inProgress('tenant-flood') >= PER_TENANT,
      5_000,
      'the tenant’s flood reached the upstream',
    );

    const answer = await post(tokens.visitor, '/others/visitor-3', 'another tenant, during a tenant’s flood');
    expect(connections.map((c) => c.text())).toEqual(connections.map(() => ''));
    expect(answer.status).toBe(200);
    expect(answer.ms).toBeLessThan(PROMPT_MS);
    expect(upstream.answered('others')).toContain(answer.requestId);
    expect(upstream.inProgress('tenant-flood')).toBe(PER_TENANT);

    const closed = await ended(WINDOW_MS + SLACK_MS + 5_000);
    expect(closed.map((c) => answerOf(c.text).status).sort()).toEqual(
      [...Array(PER_TENANT).fill(408), ...Array(size - PER_TENANT).fill(429)].sort(),
    );
    expect(upstream.most('tenant-flood')).toBe(PER_TENANT);
  });

  it('keeps a token’s slot taken while its body still trickles to an upstream that answered early', async () => {
    const size = SOCKETS * 2;
    const { connections, stop } = await flood(h.gateway.port, origin, 'early', [tokens.worker], size);
    try {
      await until(
        upstream,
        () => upstream.inProgress('early') >= PER_TOKEN,
        5_000,
        'the flood reached the upstream',
      );
      // Answered already, yet still sending: the answer alone does not give the slot back.
      const answeredEarly = () => connections.filter((c) => c.text().startsWith('HTTP/1.1 401 ')).length;
      await within(2_000, () => answeredEarly() >= PER_TOKEN);
      const answer = await post(
        tokens.visitor,
        '/others/visitor-4',
        'while bodies trickle after their answer',
      );
      expect(answer.status).toBe(200);
      expect(answer.ms).toBeLessThan(PROMPT_MS);
      expect(answeredEarly()).toBe(PER_TOKEN);
      expect(upstream.inProgress('early')).toBe(PER_TOKEN);
      // The body rate still holds after the answer: the trickles are cut upstream.
      await until(
        upstream,
        () => upstream.inProgress('early') === 0,
        WINDOW_MS + SLACK_MS,
        'the trickles were cut',
      );
      expect(upstream.most('early')).toBe(PER_TOKEN);
    } finally {
      stop();
    }
  });
});
