// The gateway's threads (REINS_GATEWAY_WORKERS): each runs gateway-thread.ts, a listener on the
// same port (SO_REUSEPORT: the kernel spreads new connections over them), and this side — the
// process's main thread — feeds them and hears from them:
// - the live state: a snapshot when a thread starts, then every update of the main thread's
//   LiveState in order, so a revocation, quarantine or policy apply bites on every thread within
//   the second it bites here (one message, no database round trip per thread);
// - the key set, when a thread asks (a token named a kid it does not hold);
// - every exchange, in batches: republished on the process's one ExchangeStream, where the audit
//   writer, the log line and the metrics follow them (one audit stream, one /metrics), and
//   acknowledged once the writer has room, so a full audit queue holds every thread back.
// Why threads, not processes: docs/decisions.md ("Gateway threads on one port").
//
// A thread that dies unexpectedly (a bug: the gateway answers malfunctions, it does not throw them
// out of its loop) is logged and replaced on the same port, retried with a growing delay until one
// listens; its open connections are lost with it, and /readyz fails while no thread serves.
//
// SO_REUSEPORT lets any listener of the same user share the port, a second reins started on it by
// mistake included (the kernel would split connections between two gateways following different
// databases). So before the threads bind, the port is taken once without the option: anything
// already listening there refuses it (EADDRINUSE), as it did when one thread listened.
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import type { JSONWebKeySet } from 'jose';
import { Counter, type Registry } from 'prom-client';
import { DEFAULT_LIMITS } from '../gateway/core.ts';
import type { ExchangeStream } from '../gateway/events.ts';
import type { LiveState } from '../gateway/live-state.ts';
import { threadModule } from '../threads/module.ts';
import {
  type FromThread,
  type GatewayThreadData,
  type GatewayThreadSettings,
  type ToThread,
  unpackExchanges,
} from './gateway-messages.ts';
import type { Logger } from './logger.ts';

const THREAD = threadModule('gateway-thread', import.meta.url);

/** Exchanges a thread may have in flight to the audit writer before it waits. */
const MAX_UNACKED = 2_000;
/** A replacement for a thread that died: first tried after this, then after twice as long, … */
const RESPAWN_DELAY_MS = 1_000;
const RESPAWN_MAX_DELAY_MS = 30_000;
/** How long a stop waits for a thread beyond its shutdown grace before ending it. */
const CLOSE_MARGIN_MS = 10_000;
/** Where Node's listen() supports reusePort (nodejs.org/api/net.html#serverlistenoptions-callback). */
const REUSE_PORT_PLATFORMS: readonly string[] = ['linux', 'freebsd', 'dragonfly', 'sunos', 'aix'];

export interface GatewayWorkersOptions {
  readonly count: number;
  /** What every thread serves with (its port: where the first thread listens, when 0). */
  readonly settings: GatewayThreadSettings;
  readonly live: LiveState;
  readonly loadKeys: () => Promise<JSONWebKeySet>;
  /** Where the threads' exchanges are republished (audit, log line, metrics follow it). */
  readonly events: ExchangeStream;
  readonly onLookup: (result: 'hit' | 'miss', count: number) => void;
  readonly registry: Registry;
  readonly log: Logger;
}

export interface GatewayWorkers {
  readonly port: number;
  /** Threads serving now. */
  readonly serving: number;
  close(): Promise<void>;
}

/** A listener that could not start, with Node's code (EADDRINUSE, …) for the start-up's wording. */
/** Fails with EADDRINUSE (or EACCES) when anything listens on `port` already, or may not. */
async function assertPortFree(host: string, port: number): Promise<void> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ host, port, exclusive: true }, () => resolve());
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

export class GatewayThreadError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'GatewayThreadError';
  }
}

interface Thread {
  readonly index: number;
  readonly worker: Worker;
  /** Tunnels it reported open and not yet closed: closed on its behalf if it dies. */
  tunnels: { plain: number; inspected: number };
  /** Resolves once the thread said `closed` (or exited). */
  readonly closed: Promise<void>;
  listening: boolean;
}

export async function startGatewayWorkers(options: GatewayWorkersOptions): Promise<GatewayWorkers> {
  const { live, events, log } = options;
  const exchanges = new Counter({
    name: 'reins_gateway_thread_exchanges_total',
    help: 'Exchanges each gateway thread served (how evenly the kernel spreads connections over them).',
    labelNames: ['thread'],
    registers: [options.registry],
  });
  let count = Math.max(1, options.count);
  if (count > 1 && !REUSE_PORT_PLATFORMS.includes(process.platform)) {
    log.warn(
      { platform: process.platform, asked: count },
      'this platform cannot share a port between threads (SO_REUSEPORT): the gateway runs on one thread',
    );
    count = 1;
  }
  const threads = new Set<Thread>();
  let closing = false;
  let port = options.settings.port;
  // Subscribed before any snapshot is taken: an update made after a thread's snapshot reaches it
  // as a message after its workerData (messages to one worker arrive in order).
  const unsubscribe = live.onUpdate((update) => {
    for (const thread of threads) post(thread, { type: 'live', update });
  });

  function post(thread: Thread, message: ToThread): void {
    try {
      thread.worker.postMessage(message);
    } catch {
      // The thread is gone; its exit handler replaces it.
    }
  }

  function spawn(index: number): { thread: Thread; listening: Promise<number> } {
    const data: GatewayThreadData = {
      ...options.settings,
      // Connections the process accepts in all, shared out (each thread has its own listener).
      limits: {
        ...options.settings.limits,
        maxConnections: Math.ceil(
          (options.settings.limits.maxConnections ?? DEFAULT_LIMITS.maxConnections) / count,
        ),
      },
      port,
      reusePort: count > 1,
      index,
      live: live.snapshot(),
      maxUnacked: MAX_UNACKED,
    };
    const worker = new Worker(THREAD.url, {
      workerData: data,
      execArgv: THREAD.execArgv,
      name: `gateway-${index}`,
    });
    let resolveListening!: (port: number) => void;
    let rejectListening!: (err: Error) => void;
    const listening = new Promise<number>((resolve, reject) => {
      resolveListening = resolve;
      rejectListening = reject;
    });
    let resolveClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      resolveClosed = resolve;
    });
    const thread: Thread = { index, worker, closed, listening: false, tunnels: { plain: 0, inspected: 0 } };
    threads.add(thread);
    worker.on('message', (message: FromThread) => {
      switch (message.type) {
        case 'listening':
          thread.listening = true;
          resolveListening(message.port);
          return;
        case 'failed':
          rejectListening(new GatewayThreadError(message.message, message.code));
          return;
        case 'keys':
          options.loadKeys().then(
            (jwks) => post(thread, { type: 'keys', id: message.id, jwks }),
            (err: unknown) =>
              post(thread, {
                type: 'keys',
                id: message.id,
                error: err instanceof Error ? err.message : String(err),
              }),
          );
          return;
        case 'events': {
          if (message.hits > 0) options.onLookup('hit', message.hits);
          if (message.misses > 0) options.onLookup('miss', message.misses);
          for (const event of message.tunnels) {
            if (event.mode === 'plain' || event.mode === 'inspected') {
              thread.tunnels[event.mode] += event.phase === 'open' ? 1 : -1;
            }
            events.publishTunnel(event);
          }
          const exchanged = unpackExchanges(message.exchanges);
          for (const event of exchanged) events.publish(event);
          const count = exchanged.length;
          if (count === 0) return;
          exchanges.inc({ thread: String(index) }, count);
          const room = events.room();
          if (room === undefined) post(thread, { type: 'ack', count });
          else void room.then(() => post(thread, { type: 'ack', count }));
          return;
        }
        case 'closed':
          resolveClosed();
          return;
      }
    });
    worker.on('error', (err) => {
      log.error({ err, thread: index }, 'a gateway thread failed');
      rejectListening(err);
    });
    worker.on('exit', (code) => {
      threads.delete(thread);
      resolveClosed();
      rejectListening(
        new GatewayThreadError(`gateway thread ${index} exited (code ${code}) before listening`, undefined),
      );
      // What it held open is gone with it: the tunnels gauge must not count them for ever.
      for (const mode of ['plain', 'inspected'] as const) {
        for (; thread.tunnels[mode] > 0; thread.tunnels[mode]--)
          events.publishTunnel({ phase: 'close', mode });
      }
      if (closing || !thread.listening) return;
      log.error({ thread: index, code }, 'a gateway thread stopped unexpectedly; starting another');
      replace(index, RESPAWN_DELAY_MS);
    });
    return { thread, listening };
  }

  /** Starts a thread in place of one that died, again and again (each wait twice the last) until one listens. */
  function replace(index: number, delayMs: number): void {
    const timer = setTimeout(() => {
      if (closing) return;
      spawn(index).listening.catch((err: unknown) => {
        log.error({ err, thread: index }, 'could not replace a gateway thread; trying again');
        replace(index, Math.min(RESPAWN_MAX_DELAY_MS, delayMs * 2));
      });
    }, delayMs);
    timer.unref();
  }

  async function close(): Promise<void> {
    closing = true;
    const all = [...threads];
    for (const thread of all) post(thread, { type: 'close' });
    // A thread stops within its grace (then it cuts what is left); one that does not is ended.
    const patience =
      (options.settings.limits.shutdownGraceMs ?? DEFAULT_LIMITS.shutdownGraceMs) + CLOSE_MARGIN_MS;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        log.error(
          { threads: [...threads].map((t) => t.index) },
          'gateway threads did not stop in time; ending them',
        );
        resolve();
      }, patience);
    });
    await Promise.race([Promise.all(all.map((thread) => thread.closed)), late]);
    clearTimeout(timer);
    unsubscribe();
    await Promise.all(all.map((thread) => thread.worker.terminate()));
  }

  try {
    if (count > 1 && port !== 0) await assertPortFree(options.settings.host, port);
    // The first thread binds the port (an ephemeral one when 0); the others share what it got.
    port = await spawn(0).listening;
    await Promise.all(Array.from({ length: count - 1 }, (_, i) => spawn(i + 1).listening));
  } catch (err) {
    await close();
    throw err;
  }
  return {
    get port() {
      return port;
    },
    get serving() {
      return [...threads].filter((thread) => thread.listening).length;
    },
    close,
  };
}
