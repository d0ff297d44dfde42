// The Db interface on PGlite running in a thread of its own (pglite-thread.ts). In-process PGlite
// does its PostgreSQL work on the caller's event loop: every query, migration or vacuum stalls
// every request the process serves meanwhile. Here the engine's work happens on another thread
// and only messages cross: a request with an id, a reply with the result or a serialised error.
//
// What stays on this side, and why:
// - the data directory's lock: its record of directories this process holds is module state,
//   which each thread has apart, so a lock taken in the thread would not see another thread's;
// - the transaction guards (guards.ts): they follow the caller's async context, which does not
//   cross threads;
// - the transaction's work itself: it runs here, its queries go to the thread, which holds the
//   PGlite transaction open until this side says commit (the work resolved) or roll back (it threw).
//
// Rows cross by structured clone, which keeps what PGlite returns: Date, Uint8Array (bytea; PGlite
// gives a plain Uint8Array, never a Buffer), bigint, numbers, JSON values. A Buffer passed as a
// parameter arrives as a Uint8Array, which PGlite treats the same.
//
// The price is a message each way per request: 2000 sequential `select 1` took about 140-190 µs
// each through the thread against 75-140 µs in-process (a loaded 2-core machine), i.e. some 50-100
// µs a round trip, which buys a calling thread that never stalls on the engine.
import { Worker } from 'node:worker_threads';
import { threadModule } from '../threads/module.ts';
import type { Db, Queryable, QueryResult } from './db.ts';
import { StoreError, type StoreErrorCode } from './db.ts';
import { assertChannelName, assertNoOpenTransaction, deliver, runInTransactionScope } from './guards.ts';
import type { PgliteOptions } from './pglite.ts';
import { claimDataDir } from './pglite.ts';
import type { Reply, Request, SerialisedError, ThreadData } from './pglite-thread.ts';

const THREAD = threadModule('pglite-thread', import.meta.url);

/** The reply with this id says whether the database opened. */
const OPENED = 0;

interface Pending {
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

const threads = new WeakMap<Db, Worker>();

/**
 * The thread a database from openPgliteWorker runs in: for diagnostics (its
 * `performance.eventLoopUtilization()` says how busy the engine is) and for tests that stop it.
 */
export function engineThreadOf(db: Db): Worker | undefined {
  return threads.get(db);
}

/**
 * Opens PGlite in a worker thread; `dataDir` as for openPglite, with the same failures
 * (a directory in use, one that cannot be created, one that holds no database).
 */
export async function openPgliteWorker(dataDir: string | 'memory', options: PgliteOptions = {}): Promise<Db> {
  const claimed = dataDir === 'memory' ? undefined : await claimDataDir(dataDir);
  const workerData: ThreadData = { dir: claimed?.dir ?? 'memory' };
  let worker: Worker;
  try {
    worker = new Worker(THREAD.url, { workerData, execArgv: THREAD.execArgv });
  } catch (err) {
    await claimed?.release();
    throw stopped(err);
  }
  const db = new PgliteWorkerDb(
    worker,
    claimed?.release ?? (async () => undefined),
    options.onBackgroundError,
  );
  try {
    await db.opened;
  } catch (err) {
    await db.close();
    throw err;
  }
  threads.set(db, worker);
  return db;
}

/** A thread that ended: every request it held, and every one after, fails with this. */
function stopped(why: unknown): StoreError {
  const reason = why instanceof Error ? why.message : String(why);
  return new StoreError(
    'database_unavailable',
    `the embedded database thread stopped (${reason}); restart reins to open the database again`,
  );
}

const closed = () => new StoreError('database_unavailable', 'the embedded database is closed');

function revive(error: SerialisedError): Error {
  const { name, message, stack, fields } = error;
  if (name === 'StoreError' && typeof fields.code === 'string') {
    const revived = new StoreError(fields.code as StoreErrorCode, message);
    if (stack) revived.stack = stack;
    return revived;
  }
  // PostgreSQL's errors keep their fields (code, detail, constraint, severity…) so that callers
  // that read `err.code` (23505 and the like) behave as with in-process PGlite.
  const revived = Object.assign(new Error(message), fields);
  revived.name = name;
  if (stack) revived.stack = stack;
  return revived;
}

class PgliteWorkerDb implements Db {
  readonly backend = 'pglite' as const;
  readonly opened: Promise<void>;
  readonly #worker: Worker;
  readonly #release: () => Promise<void>;
  readonly #onError: (err: unknown) => void;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Map<number, (payload: string) => void>();
  #nextId = OPENED + 1;
  #isOpen = false;
  // Set once the thread is gone: the error every request fails with from then on.
  #ended: StoreError | undefined;
  #closing: Promise<void> | undefined;
  #released: Promise<void> | undefined;

  constructor(worker: Worker, release: () => Promise<void>, onError: ((err: unknown) => void) | undefined) {
    this.#worker = worker;
    this.#release = release;
    this.#onError = onError ?? (() => undefined);
    this.opened = new Promise((resolve, reject) => {
      this.#pending.set(OPENED, {
        resolve: () => {
          this.#isOpen = true;
          resolve();
        },
        reject,
      });
    });
    worker.on('message', (reply: Reply) => this.#receive(reply));
    // 'error' (an exception the thread did not catch) comes before 'exit'; the first reason wins.
    worker.on('error', (err) => this.#stop(stopped(err)));
    worker.on('exit', (code) => this.#stop(stopped(`it exited with code ${code}`)));
    // A reply that could not be read would leave its request waiting forever: give up on the thread.
    worker.on('messageerror', (err) => this.#stop(stopped(err)));
  }

  async query<R = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    assertNoOpenTransaction(this, 'query()');
    return this.#request({ op: 'query', id: this.#nextId++, sql, params, tx: undefined }) as Promise<
      QueryResult<R>
    >;
  }

  async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    assertNoOpenTransaction(this, 'transaction()');
    const tx = this.#nextId++;
    await this.#request({ op: 'begin', id: tx });
    let open = true;
    const handle: Queryable = {
      query: async <R>(sql: string, params?: readonly unknown[]) => {
        // As PGlite refuses a handle used after its transaction ended; checked here too, so that a
        // late query cannot slip into whatever the thread runs next.
        if (!open) throw new Error('Transaction is closed');
        return this.#request({ op: 'query', id: this.#nextId++, sql, params, tx }) as Promise<QueryResult<R>>;
      },
    };
    let value: T;
    try {
      value = await runInTransactionScope(this, () => work(handle));
    } catch (err) {
      open = false;
      // The work's own error is what the caller needs; a rollback that fails means the thread
      // is gone, which onBackgroundError and every later request report.
      await this.#request({ op: 'end', id: this.#nextId++, tx, commit: false }).catch(() => undefined);
      throw err;
    }
    open = false;
    await this.#request({ op: 'end', id: this.#nextId++, tx, commit: true });
    return value;
  }

  async listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    assertChannelName(channel);
    assertNoOpenTransaction(this, 'listen()');
    const sub = this.#nextId++;
    // Registered before the thread subscribes, so no notification arrives without its listener.
    this.#listeners.set(sub, onNotify);
    try {
      await this.#request({ op: 'listen', id: sub, channel });
    } catch (err) {
      this.#listeners.delete(sub);
      throw err;
    }
    let subscribed = true;
    return async () => {
      if (!subscribed) return;
      assertNoOpenTransaction(this, 'unlisten');
      subscribed = false;
      this.#listeners.delete(sub);
      await this.#request({ op: 'unlisten', id: this.#nextId++, sub });
    };
  }

  async notify(channel: string, payload: string): Promise<void> {
    assertChannelName(channel);
    await this.query('select pg_notify($1, $2)', [channel, payload]);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  async #shutDown(): Promise<void> {
    // Closing PGlite first makes it finish its writes and release its files before the thread
    // goes; a thread already gone, or one that never opened the database, has nothing to close.
    if (this.#isOpen && !this.#ended) {
      await this.#request({ op: 'close', id: this.#nextId++ }).catch(() => undefined);
    }
    this.#stop(closed());
    await this.#worker.terminate();
    await this.#releaseLock();
  }

  #request(request: Request): Promise<unknown> {
    // Once close() began only its own request goes out, and what finishes a transaction already
    // open (its queries, its commit or rollback): PGlite closes after it, as in-process PGlite
    // does; refusing them would leave the engine waiting for a transaction that never ends.
    const finishing = request.op === 'end' || (request.op === 'query' && request.tx !== undefined);
    const refusal =
      this.#ended ?? (this.#closing && request.op !== 'close' && !finishing ? closed() : undefined);
    if (refusal) return Promise.reject(refusal);
    const { id } = request;
    return new Promise((resolve, reject) => {
      try {
        this.#worker.postMessage(request);
      } catch (err) {
        // A parameter structured clone refuses (a function, a class instance with private state).
        reject(err);
        return;
      }
      // The thread keeps the process alive only while a reply is awaited, as in-process PGlite
      // does: a database left open does not hold a finished process, a pending query does.
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve, reject });
    });
  }

  #receive(reply: Reply): void {
    if ('sub' in reply) {
      const listener = this.#listeners.get(reply.sub);
      if (listener) deliver(listener, reply.payload, this.#onError);
      return;
    }
    const pending = this.#pending.get(reply.id);
    if (!pending) return;
    this.#pending.delete(reply.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if (reply.error) pending.reject(revive(reply.error));
    else pending.resolve(reply.value);
  }

  /** Fails every awaited request, and every later one, with `reason`: nothing waits on a gone thread. */
  #stop(reason: StoreError): void {
    if (this.#ended) return;
    this.#ended = reason;
    const unexpected = this.#closing === undefined;
    for (const pending of this.#pending.values()) pending.reject(reason);
    this.#pending.clear();
    this.#listeners.clear();
    this.#worker.unref();
    if (unexpected) {
      // The engine is gone with the thread (or abandoned: see 'messageerror'), so nothing writes
      // the directory any more.
      void this.#worker.terminate().then(() => this.#releaseLock());
      if (this.#isOpen) this.#onError(reason);
    }
  }

  #releaseLock(): Promise<void> {
    this.#released ??= this.#release();
    return this.#released;
  }
}
