// The embedded database's own thread: PGlite runs here, so that its work (PostgreSQL compiled to
// WebAssembly, synchronous once a query starts) never stalls a thread that serves requests.
// pglite-worker.ts starts this module as a worker and speaks the messages below; it keeps the
// data directory's lock and the transaction guards on its own side.
//
// Requests are answered out of order, each as soon as it finishes: PGlite's own mutex decides who
// waits. A query from outside an open transaction therefore waits in here, exactly as it does
// in-process, and never sees (or interleaves with) the transaction's uncommitted writes.
import { parentPort, workerData } from 'node:worker_threads';
import type { Db, Queryable } from './db.ts';
import { openPgliteIn } from './pglite.ts';

/** What the calling side hands the thread at start: an absolute, already locked directory. */
export interface ThreadData {
  readonly dir: string | 'memory';
}

/**
 * One request from the calling side. `id` names the reply; a transaction is named by the id of
 * the `begin` that opened it, a subscription by the id of its `listen`. Id 0 is taken by the one
 * reply the thread sends unasked: that the database opened, or why it did not.
 */
export type Request =
  | { op: 'query'; id: number; sql: string; params: readonly unknown[] | undefined; tx: number | undefined }
  | { op: 'begin'; id: number }
  | { op: 'end'; id: number; tx: number; commit: boolean }
  | { op: 'listen'; id: number; channel: string }
  | { op: 'unlisten'; id: number; sub: number }
  | { op: 'close'; id: number };

/** An error as it crosses the boundary: structured clone keeps neither its class nor `code`. */
export interface SerialisedError {
  readonly name: string;
  readonly message: string;
  readonly stack: string | undefined;
  /** Own string, number and boolean fields: PostgreSQL's code, detail, constraint, severity… */
  readonly fields: Record<string, string | number | boolean>;
}

/** A reply to request `id`, or a notification for subscription `sub`. Rows cross as structured clones. */
export type Reply =
  | { id: number; value: unknown; error?: undefined }
  | { id: number; error: SerialisedError }
  | { sub: number; payload: string };

// This module exports types only to the calling side: importing a value from it there would
// run main() on the calling thread.
const OPENED = 0;

// Fields that describe the call rather than the failure, and may hold what cannot be cloned.
const LEFT_BEHIND = new Set(['params', 'queryOptions']);

function serialiseError(err: unknown): SerialisedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err), stack: undefined, fields: {} };
  const fields: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(err)) {
    if (LEFT_BEHIND.has(key)) continue;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      fields[key] = value;
  }
  return { name: err.name, message: err.message, stack: err.stack, fields };
}

// Thrown into PGlite's transaction callback to make it roll back; never leaves this module.
const ROLLBACK = Symbol('rollback');

interface OpenTransaction {
  readonly tx: Queryable;
  readonly end: (how: { commit: boolean; id: number }) => void;
}

function serve(port: NonNullable<typeof parentPort>, db: Db): void {
  const transactions = new Map<number, OpenTransaction>();
  const subscriptions = new Map<number, () => Promise<void>>();

  const post = (reply: Reply) => {
    try {
      port.postMessage(reply);
    } catch (err) {
      // A value structured clone refuses: answer the request with that failure, never hang it.
      if ('id' in reply) port.postMessage({ id: reply.id, error: serialiseError(err) } satisfies Reply);
    }
  };
  const answer = (id: number, work: Promise<unknown>) => {
    work.then(
      (value) => post({ id, value }),
      (err: unknown) => post({ id, error: serialiseError(err) }),
    );
  };

  const begin = (id: number) => {
    let begun = false;
    let endedBy = id;
    db.transaction(
      (tx) =>
        new Promise<void>((resolve, reject) => {
          transactions.set(id, {
            tx,
            end: ({ commit, id: endId }) => {
              endedBy = endId;
              if (commit) resolve();
              else reject(ROLLBACK);
            },
          });
          begun = true;
          post({ id, value: null });
        }),
    )
      .then(
        () => post({ id: endedBy, value: null }),
        (err: unknown) => {
          // Before `begin` was answered the failure is the begin's; after, the commit's or rollback's.
          if (err === ROLLBACK) post({ id: endedBy, value: null });
          else post({ id: begun ? endedBy : id, error: serialiseError(err) });
        },
      )
      .finally(() => transactions.delete(id));
  };

  const handle = (request: Request) => {
    switch (request.op) {
      case 'query': {
        const on = request.tx === undefined ? db : transactions.get(request.tx)?.tx;
        if (!on) {
          post({ id: request.id, error: serialiseError(new Error('Transaction is closed')) });
          return;
        }
        answer(request.id, on.query(request.sql, request.params));
        return;
      }
      case 'begin':
        begin(request.id);
        return;
      case 'end': {
        const open = transactions.get(request.tx);
        if (open) open.end({ commit: request.commit, id: request.id });
        else post({ id: request.id, error: serialiseError(new Error('Transaction is closed')) });
        return;
      }
      case 'listen': {
        const { id, channel } = request;
        answer(
          id,
          db
            .listen(channel, (payload) => post({ sub: id, payload }))
            .then((unlisten) => {
              subscriptions.set(id, unlisten);
              return null;
            }),
        );
        return;
      }
      case 'unlisten': {
        const unlisten = subscriptions.get(request.sub);
        subscriptions.delete(request.sub);
        answer(request.id, unlisten ? unlisten().then(() => null) : Promise.resolve(null));
        return;
      }
      case 'close':
        answer(
          request.id,
          db.close().then(() => null),
        );
        return;
    }
  };
  port.on('message', handle);
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('pglite-thread runs as a worker thread: open it with openPgliteWorker()');
  const { dir } = workerData as ThreadData;
  let db: Db;
  try {
    // The calling side holds the lock and gives it back when this thread is gone: a no-op here.
    db = await openPgliteIn(dir, async () => undefined);
  } catch (err) {
    // Nothing listens on the port afterwards, so the thread ends on its own.
    port.postMessage({ id: OPENED, error: serialiseError(err) } satisfies Reply);
    return;
  }
  serve(port, db);
  port.postMessage({ id: OPENED, value: null } satisfies Reply);
}

await main();
