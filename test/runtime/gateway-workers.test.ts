// The gateway on several threads (REINS_GATEWAY_WORKERS, src/runtime/gateway-workers.ts): every
// thread listens on the one gateway port and decides from the live state the main thread follows,
// so a revocation bites on all of them within a second; their exchanges reach one audit stream
// and one /metrics; and a serving thread cannot run a database query, because nothing a gateway
// thread loads opens a database.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExchangeEvent } from '../../src/gateway/events.ts';
import { packExchange, unpackExchanges } from '../../src/runtime/gateway-messages.ts';
import type { Running } from '../../src/runtime/start.ts';
import { revokeTree } from '../../src/server/provider/ledger.ts';
import { type AgentPolicy, type Answer, agentToken, getThrough, startWithAgent } from '../support/runtime.ts';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

let upstream: http.Server;
let received = 0;
/** Requests sent through the gateway so far: every one is an exchange some thread reports. */
let sent = 0;
let work = '';
let running: Running;
let policy: AgentPolicy;

beforeAll(async () => {
  upstream = http.createServer((_req, res) => {
    received++;
    res.end('upstream answered');
  });
  await new Promise<void>((done) => upstream.listen(0, '127.0.0.1', done));
  work = await mkdtemp(join(tmpdir(), 'reins-workers-'));
  policy = {
    tenant: 'threads',
    agent: 'fetcher',
    secret: 'gateway-workers-secret-0123456789',
    upstreamPort: (upstream.address() as AddressInfo).port,
  };
  running = await startWithAgent(work, policy, { REINS_GATEWAY_WORKERS: '2' });
}, 120_000);

afterAll(async () => {
  await running?.stop();
  upstream?.close();
  await rm(work, { recursive: true, force: true });
});

function jtiOf(jwt: string): string {
  const payload = JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString('utf8'));
  return payload.jti as string;
}

/**
 * One GET through the gateway on a connection of its own (the kernel picks the thread). Status 0:
 * the gateway cut the connection (a request in flight when its token was revoked).
 */
function through(bearer: string): Promise<Answer> {
  sent++;
  return getThrough(running.gateway.url, policy.upstreamPort, '/x', bearer);
}

async function metrics(): Promise<string> {
  return (await fetch(`${running.admin.url}/metrics`)).text();
}

/** The value of one series of /metrics, 0 when absent. */
function series(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

function perThread(text: string): number[] {
  return [0, 1].map((i) => series(text, `reins_gateway_thread_exchanges_total{thread="${i}"}`));
}

/**
 * /metrics once every exchange sent so far has reached it: a thread hands its exchanges over
 * after answering them, so a scrape right after the last answer may not count them yet.
 */
async function settledMetrics(): Promise<string> {
  for (let i = 0; ; i++) {
    const text = await metrics();
    const [zero = 0, one = 0] = perThread(text);
    if (zero + one >= sent || i === 200) return text;
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function auditRows(): Promise<number> {
  const { rows } = await running.db.query<{ n: string | number }>(
    `select count(*) as n from audit_events where agent = 'fetcher'`,
  );
  return Number(rows[0]?.n ?? 0);
}

describe('a gateway on two threads', () => {
  it('serves on both threads, with one /metrics and one audit stream for both', async () => {
    expect(running.gateway.threads).toBe(2);
    const bearer = await agentToken(running, policy);
    const answers = await Promise.all(Array.from({ length: 40 }, () => through(bearer)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(received).toBe(40);
    const text = await settledMetrics();
    const [zero, one] = perThread(text);
    // 40 connections spread by the kernel: each thread took some (1 in 2^39 that one took none).
    expect(zero).toBeGreaterThan(0);
    expect(one).toBeGreaterThan(0);
    expect((zero ?? 0) + (one ?? 0)).toBe(40);
    expect(series(text, 'reins_gateway_decisions_total{outcome="allowed",reason="none"}')).toBe(40);
    // Every row reaches the one writer (batches are written within milliseconds).
    for (let i = 0; i < 200 && (await auditRows()) < 40; i++) await new Promise((r) => setTimeout(r, 25));
    expect(await auditRows()).toBe(40);
  }, 60_000);

  it('refuses a revoked token on every thread within one second', async () => {
    const bearer = await agentToken(running, policy);
    expect((await through(bearer)).status).toBe(200);
    const before = perThread(await settledMetrics());
    const revokedAt = performance.now();
    await revokeTree(running.db, jtiOf(bearer), 'test: revoked under two threads');
    let refusedAfter = Number.POSITIVE_INFINITY;
    while (performance.now() - revokedAt < 5_000) {
      // A request in flight as the revocation lands is cut (status 0); the next is refused.
      if ((await through(bearer)).status === 407) {
        refusedAfter = performance.now() - revokedAt;
        break;
      }
    }
    expect(refusedAfter).toBeLessThan(1_000);
    const sentBefore = received;
    const answers = await Promise.all(Array.from({ length: 40 }, () => through(bearer)));
    expect(answers.map((a) => `${a.status} ${a.reason}`)).toEqual(Array(40).fill('407 invalid_token'));
    expect(received).toBe(sentBefore);
    const after = perThread(await settledMetrics());
    // Both threads refused some of the 40.
    expect((after[0] ?? 0) - (before[0] ?? 0)).toBeGreaterThan(0);
    expect((after[1] ?? 0) - (before[1] ?? 0)).toBeGreaterThan(0);
  }, 60_000);
});

describe('an exchange on its way from a gateway thread', () => {
  it('arrives with every field as the thread published it, through a real structured clone', () => {
    const published: ExchangeEvent[] = [
      {
        kind: 'request',
        tunnel: null,
        time: new Date('2026-12-05T10:11:12.345Z'),
        requestId: 'a1',
        tenant: 'acme',
        agent: 'report-agent',
        subject: 'alice',
        delegationChain: { sub: 'report-agent', act: { sub: 'portal' } },
        jti: 'j1',
        method: 'GET',
        scheme: 'https',
        host: 'api.example.com',
        port: 443,
        path: '/v1/x',
        decision: 'allowed',
        reason: null,
        matchedRule: 'GET https://api.example.com/v1/',
        resolvedAddress: '93.184.216.34',
        inspected: true,
        status: 200,
        bytesIn: 10,
        bytesOut: 20,
        durationMs: 1.5,
        decisionMs: 0.25,
        upstreamMs: 1,
        detail: null,
      },
      {
        kind: 'connect',
        tunnel: 'none',
        time: new Date(0),
        requestId: 'a2',
        tenant: null,
        agent: null,
        subject: null,
        delegationChain: null,
        jti: null,
        method: 'CONNECT',
        scheme: null,
        host: 'x.example',
        port: 443,
        path: null,
        decision: 'denied',
        reason: 'invalid_token',
        matchedRule: null,
        resolvedAddress: null,
        inspected: false,
        status: 407,
        bytesIn: 0,
        bytesOut: 0,
        durationMs: 0,
        decisionMs: null,
        upstreamMs: null,
        detail: 'missing',
      },
    ];
    const packed: unknown[] = [];
    for (const event of published) packExchange(event, packed);
    expect(unpackExchanges(structuredClone(packed))).toEqual(published);
  });
});

describe('what a gateway thread loads', () => {
  /** Every module a file imports for its values (type-only imports erased), transitively. */
  async function valueImports(entry: string): Promise<Set<string>> {
    const seen = new Set<string>();
    const queue = [entry];
    while (queue.length > 0) {
      const file = queue.pop() as string;
      if (seen.has(file)) continue;
      seen.add(file);
      if (!file.startsWith('/')) continue;
      const source = await readFile(file, 'utf8');
      for (const match of source.matchAll(/^(?:import|export)\s+(?!type\s)[^;]*?from\s+'([^']+)'/gms)) {
        const specifier = match[1] as string;
        queue.push(specifier.startsWith('.') ? resolve(dirname(file), specifier) : specifier);
      }
    }
    return seen;
  }

  it('opens no database: neither src/store nor a driver is among its modules', async () => {
    const modules = [...(await valueImports(join(SRC, 'runtime/gateway-thread.ts')))];
    expect(modules).toContain(join(SRC, 'gateway/proxy.ts'));
    expect(modules.filter((m) => m.startsWith(join(SRC, 'store/')))).toEqual([]);
    expect(modules.filter((m) => m === 'pg' || m.startsWith('@electric-sql/'))).toEqual([]);
  });
});
