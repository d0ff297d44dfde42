// One gateway thread (started by gateway-workers.ts): a gateway listener on the shared port
// (SO_REUSEPORT) that decides every request from what the main thread sends it — the live state,
// the key set, the interception CA — and hands every exchange back to the main thread, which
// writes its row and log line and counts it. Nothing here opens a database: no query, no driver,
// no engine runs on a thread that serves requests (SPEC.md, "Running"; docs/decisions.md).
//
// Exchanges go back in batches, one message per BATCH_MS at most (sooner when BATCH_MAX are
// waiting); each batch is acknowledged once the audit writer has room for it. A thread with more than `maxUnacked`
// exchanges unacknowledged makes its gateway wait (the event stream's back-pressure), exactly as
// a full audit queue does in one thread.
import { parentPort, workerData } from 'node:worker_threads';
import type { JSONWebKeySet } from 'jose';
import { LeafCache, signingCaFrom } from '../gateway/ca/index.ts';
import { ExchangeStream, type TunnelEvent } from '../gateway/events.ts';
import { LiveMemory } from '../gateway/live-memory.ts';
import { startGateway } from '../gateway/proxy.ts';
import { cachedResolver, systemResolver, tableResolver } from '../gateway/resolve.ts';
import { localKeys, TokenVerifier } from '../gateway/token.ts';
import { type FromThread, type GatewayThreadData, packExchange, type ToThread } from './gateway-messages.ts';

const data = workerData as GatewayThreadData;
const port = parentPort;
if (port === null)
  throw new Error('gateway-thread.ts runs as a worker thread (gateway-workers.ts starts it)');
const send = (message: FromThread) => port.postMessage(message);

const live = LiveMemory.from(data.live, Date.now());
const pruner = setInterval(() => live.prune(Date.now()), 30_000);
pruner.unref();

// The key set, from the main thread: asked for at most once per cooldown (keys.ts), as a gateway
// beside the database reads it.
let nextKeysId = 1;
const keyRequests = new Map<number, { resolve(jwks: JSONWebKeySet): void; reject(err: Error): void }>();
const keys = localKeys(
  () =>
    new Promise<JSONWebKeySet>((resolve, reject) => {
      const id = nextKeysId++;
      keyRequests.set(id, { resolve, reject });
      send({ type: 'keys', id });
    }),
);

// Exchanges, tunnel events and token-cache lookups on their way to the main thread.
/** Packed (packExchange): WIDTH values per exchange. */
let exchanges: unknown[] = [];
let exchangeCount = 0;
let tunnels: TunnelEvent[] = [];
let hits = 0;
let misses = 0;
let flushTimer: NodeJS.Timeout | undefined;
let unacked = 0;

/**
 * How long an exchange may wait for others to share its message. Each message wakes the main
 * thread and costs both threads a postMessage; one per turn of the event loop sent batches of a
 * few exchanges at a time under load. A few milliseconds delays only the audit row and the
 * metrics, never an answer (the thread answers first and publishes after), and is what a
 * SIGKILL can lose beyond the audit queue (bench/sigkill).
 */
const BATCH_MS = 5;
/** A batch this large goes at once: the message stays small, the main thread's turn short. */
const BATCH_MAX = 256;
let roomWaiters: (() => void)[] = [];

function flush(): void {
  if (flushTimer !== undefined) clearTimeout(flushTimer);
  flushTimer = undefined;
  if (exchangeCount === 0 && tunnels.length === 0 && hits === 0 && misses === 0) return;
  unacked += exchangeCount;
  send({ type: 'events', exchanges, tunnels, hits, misses });
  exchanges = [];
  exchangeCount = 0;
  tunnels = [];
  hits = 0;
  misses = 0;
}

function soon(): void {
  if (exchangeCount >= BATCH_MAX) flush();
  else flushTimer ??= setTimeout(flush, BATCH_MS);
}

const events = new ExchangeStream();
events.subscribe((event) => {
  packExchange(event, exchanges);
  exchangeCount++;
  soon();
  if (unacked + exchangeCount < data.maxUnacked) return undefined;
  return new Promise<void>((resolve) => roomWaiters.push(resolve));
});
events.onTunnel((event) => {
  tunnels.push(event);
  soon();
});

const verifier = new TokenVerifier({
  issuer: data.issuer,
  audience: data.audience,
  keys,
  onLookup: (result) => {
    if (result === 'hit') hits++;
    else misses++;
    soon();
  },
});
const verifierPruner = setInterval(() => verifier.prune(), 30_000);
verifierPruner.unref();

port.on('message', (message: ToThread) => {
  switch (message.type) {
    case 'live':
      live.apply(message.update, Date.now());
      return;
    case 'keys': {
      const request = keyRequests.get(message.id);
      keyRequests.delete(message.id);
      if (message.error !== undefined) request?.reject(new Error(message.error));
      else request?.resolve(message.jwks as JSONWebKeySet);
      return;
    }
    case 'ack': {
      unacked -= message.count;
      if (unacked + exchangeCount < data.maxUnacked && roomWaiters.length > 0) {
        const waiters = roomWaiters;
        roomWaiters = [];
        for (const resolve of waiters) resolve();
      }
      return;
    }
    case 'close':
      void stop();
      return;
  }
});

let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
try {
  gateway = await startGateway({
    host: data.host,
    port: data.port,
    reusePort: data.reusePort,
    verifier,
    live,
    openings: data.openings,
    resolve: cachedResolver(data.hosts === undefined ? systemResolver : tableResolver(data.hosts)),
    events,
    upstreamCa: data.upstreamCa,
    intercept: data.intercept,
    limits: data.limits,
    interceptor: new LeafCache(signingCaFrom(data.ca)),
  });
  send({ type: 'listening', port: gateway.port });
} catch (err) {
  const { message, code } = err as { message?: unknown; code?: unknown };
  send({
    type: 'failed',
    message: typeof message === 'string' ? message : String(err),
    code: typeof code === 'string' ? code : undefined,
  });
  port.close();
}

async function stop(): Promise<void> {
  // Every exchange the gateway began is published before close() resolves; the last batch goes
  // before `closed`, and messages arrive in order.
  await gateway?.close();
  clearInterval(pruner);
  clearInterval(verifierPruner);
  flush();
  send({ type: 'closed' });
  port?.close();
}
