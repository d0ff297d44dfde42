// The Db interface on PGlite: PostgreSQL compiled to WebAssembly, running inside this process.
// It needs no server, which makes it the zero-setup default (REINS_DATA_DIR, or `memory`).
//
// PGlite is one connection. Its own mutex serialises everything: a query issued while a
// transaction is open waits until that transaction commits or rolls back, so it can never see
// (or interleave with) uncommitted writes. The flip side is that using the database itself from
// inside a transaction would wait forever, which guards.ts refuses up front.
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PGlite, type Results, type Transaction } from '@electric-sql/pglite';
import { lockDataDir } from './data-dir-lock.ts';
import type { Db, Queryable, QueryResult } from './db.ts';
import { StoreError } from './db.ts';
import { assertChannelName, assertNoOpenTransaction, deliver, runInTransactionScope } from './guards.ts';

export interface PgliteOptions {
  /** Told of failures outside any query (a notification listener that threw). */
  onBackgroundError?: (err: unknown) => void;
}

function toResult<R>(result: Results | undefined): QueryResult<R> {
  return { rows: (result?.rows ?? []) as R[], rowCount: result?.rowCount ?? result?.affectedRows ?? 0 };
}

// With parameters, one statement over the extended protocol; without, the simple protocol, which
// also runs several statements (migrations) and answers with the last one's result. This is what
// `pg` does too, so both backends accept the same SQL.
async function run<R>(target: PGlite | Transaction, sql: string, params?: readonly unknown[]) {
  if (params && params.length > 0) return toResult<R>(await target.query(sql, [...params]));
  const results = await target.exec(sql);
  return toResult<R>(results[results.length - 1]);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export async function openPglite(dataDir: string | 'memory', options: PgliteOptions = {}): Promise<Db> {
  if (dataDir === 'memory') return openPgliteIn('memory', async () => undefined, options);
  const { dir, release } = await claimDataDir(dataDir);
  return openPgliteIn(dir, release, options);
}

/**
 * Creates the embedded database directory if need be and takes its lock (data-dir-lock.ts),
 * worded for the operator when it cannot. Resolves to the absolute directory and the release.
 */
export async function claimDataDir(dataDir: string): Promise<{ dir: string; release: () => Promise<void> }> {
  const dir = resolve(dataDir);
  try {
    await mkdir(dir, { recursive: true });
    return { dir, release: await lockDataDir(dir) };
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw new StoreError(
      'database_unavailable',
      `cannot use ${dir} as the embedded database directory: ${messageOf(err)}; set REINS_DATA_DIR to a writable directory`,
    );
  }
}

/**
 * Opens PGlite in `dir`, an absolute directory whose lock the caller already holds (`release`
 * gives it back on close, or at once when opening fails). Split from openPglite so that the
 * engine can open in a worker thread while the lock is taken on the calling thread: the lock's
 * record of directories held by "this process" is module state, which each thread has apart.
 */
export async function openPgliteIn(
  dir: string | 'memory',
  release: () => Promise<void>,
  options: PgliteOptions = {},
): Promise<Db> {
  const onError = options.onBackgroundError ?? (() => undefined);
  if (dir === 'memory') return new PgliteDb(await PGlite.create(), release, onError);
  try {
    // PostgreSQL's own files go in a subdirectory, so that reins' lock file and anything else
    // reins keeps there stay out of PGDATA.
    return new PgliteDb(await PGlite.create(join(dir, 'pglite')), release, onError);
  } catch (err) {
    await release();
    throw new StoreError(
      'database_unavailable',
      `cannot open the embedded database in ${dir}: ${messageOf(err)}; ` +
        'check that the directory holds a reins database, or point REINS_DATA_DIR elsewhere',
    );
  }
}

class PgliteDb implements Db {
  readonly backend = 'pglite' as const;
  readonly #pg: PGlite;
  readonly #release: () => Promise<void>;
  readonly #onError: (err: unknown) => void;

  constructor(pg: PGlite, release: () => Promise<void>, onError: (err: unknown) => void) {
    this.#pg = pg;
    this.#release = release;
    this.#onError = onError;
  }

  async query<R = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    assertNoOpenTransaction(this, 'query()');
    return run<R>(this.#pg, sql, params);
  }

  async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    assertNoOpenTransaction(this, 'transaction()');
    // PGlite rolls back and rethrows when `work` throws, and refuses a handle used after its
    // transaction ended.
    return this.#pg.transaction((tx) =>
      runInTransactionScope(this, () => work({ query: (sql, params) => run(tx, sql, params) })),
    );
  }

  async listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    assertChannelName(channel);
    assertNoOpenTransaction(this, 'listen()');
    // A fresh function per subscription: PGlite keeps listeners in a Set, so subscribing the same
    // function twice would otherwise be one subscription that the first unsubscribe ends.
    const unlisten = await this.#pg.listen(channel, (payload) => deliver(onNotify, payload, this.#onError));
    let subscribed = true;
    return async () => {
      if (!subscribed) return;
      assertNoOpenTransaction(this, 'unlisten');
      subscribed = false;
      await unlisten();
    };
  }

  async notify(channel: string, payload: string): Promise<void> {
    assertChannelName(channel);
    await this.query('select pg_notify($1, $2)', [channel, payload]);
  }

  async close(): Promise<void> {
    if (!this.#pg.closed) await this.#pg.close();
    await this.#release();
  }
}
