// The Db interface on a PostgreSQL server through a `pg` pool: what several reins processes
// share when they scale out (DATABASE_URL).
import pg from 'pg';
import type { Db, Queryable, QueryResult } from './db.ts';
import { StoreError } from './db.ts';
import { assertChannelName, assertNoOpenTransaction, runInTransactionScope } from './guards.ts';
import { classify, unavailable } from './pg-errors.ts';
import { PgListener } from './pg-listen.ts';

export interface PgOptions {
  /**
   * Every connection works in this schema (`search_path`), created if missing. Tests use one
   * schema per test file; a deployment may use one to share a database with other software.
   * LISTEN/NOTIFY channels are database-wide: the schema does not separate them.
   */
  schema?: string;
  /** Pool size (default 10). */
  max?: number;
  /**
   * Told of failures that happen outside any query: an idle pooled connection dropped, the
   * listener connection lost or failing to come back. They never end the process.
   */
  onBackgroundError?: (err: unknown) => void;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const CONNECT_TIMEOUT_MS = 10_000;
const INT8_OID = 20;

// int8 (bigint, bigserial, count(*)) as a JS number while it is exact, else a bigint: the same
// as PGlite, so code never sees a string on one backend and a number on the other.
function parseInt8(text: string): number | bigint {
  const n = BigInt(text);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? parseInt8
      : pg.types.getTypeParser(oid, format ?? 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

function toResult<R>(result: pg.QueryResult | pg.QueryResult[]): QueryResult<R> {
  // Several statements in one parameterless query: pg answers with one result per statement;
  // the interface returns the last one, as PGlite's path does.
  const last = Array.isArray(result) ? result[result.length - 1] : result;
  return { rows: (last?.rows ?? []) as R[], rowCount: last?.rowCount ?? 0 };
}

export async function openPg(url: string, options: PgOptions = {}): Promise<Db> {
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new StoreError(
      'database_unavailable',
      'DATABASE_URL must be a PostgreSQL URL: postgres://USER:PASSWORD@HOST:PORT/DATABASE ' +
        '(or postgres://USER@/DATABASE?host=/var/run/postgresql for a unix socket)',
    );
  }
  const { schema } = options;
  if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
    throw new RangeError(
      `invalid schema name ${JSON.stringify(schema)}: use lower-case letters, digits and _`,
    );
  }
  const onBackgroundError = options.onBackgroundError ?? (() => undefined);
  if (schema !== undefined) await createSchema(url, schema);

  const config: pg.ClientConfig = {
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    application_name: 'reins',
    types,
    ...(schema === undefined ? {} : { options: `-c search_path=${schema}` }),
  };
  const pool = new pg.Pool({ ...config, max: options.max ?? 10 });
  // An idle client whose connection dies emits 'error' on the pool; unhandled, it would end the
  // process. The pool discards that client and the next query opens a fresh connection.
  pool.on('error', (err) => onBackgroundError(unavailable(url, err)));
  try {
    await pool.query('select 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw unavailable(url, err);
  }
  const listener = new PgListener(url, { ...config, application_name: 'reins-listener' }, onBackgroundError);
  return new PgDb(url, pool, listener);
}

// CREATE SCHEMA IF NOT EXISTS is not safe against itself: two sessions racing can both pass
// the check and one fails on the catalog's unique index. Losing that race is success.
async function createSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(`create schema if not exists "${schema}"`);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code !== '23505' && code !== '42P06') throw unavailable(url, err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

class PgDb implements Db {
  readonly backend = 'pg' as const;
  readonly #url: string;
  readonly #pool: pg.Pool;
  readonly #listener: PgListener;

  constructor(url: string, pool: pg.Pool, listener: PgListener) {
    this.#url = url;
    this.#pool = pool;
    this.#listener = listener;
  }

  async query<R = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    assertNoOpenTransaction(this, 'query()');
    try {
      return toResult<R>(await this.#pool.query(sql, params ? [...params] : undefined));
    } catch (err) {
      throw classify(this.#url, err);
    }
  }

  async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    assertNoOpenTransaction(this, 'transaction()');
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw unavailable(this.#url, err);
    }
    let open = true;
    const url = this.#url;
    const tx: Queryable = {
      async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
        // A handle kept past its transaction would run on a connection already back in the pool,
        // possibly inside someone else's transaction.
        if (!open) throw new Error('the transaction is closed');
        try {
          return toResult<R>(await client.query(sql, params ? [...params] : undefined));
        } catch (err) {
          throw classify(url, err);
        }
      },
    };
    let broken: Error | undefined;
    try {
      await client.query('begin');
      const result = await runInTransactionScope(this, () => work(tx));
      await client.query('commit');
      return result;
    } catch (err) {
      await client.query('rollback').catch((rollbackErr: Error) => {
        // The connection is unusable: destroy it rather than return it to the pool.
        broken = rollbackErr;
      });
      throw classify(this.#url, err);
    } finally {
      open = false;
      client.release(broken);
    }
  }

  async listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    assertNoOpenTransaction(this, 'listen()');
    return this.#listener.listen(channel, onNotify);
  }

  async notify(channel: string, payload: string): Promise<void> {
    assertChannelName(channel);
    await this.query('select pg_notify($1, $2)', [channel, payload]);
  }

  async close(): Promise<void> {
    await this.#listener.close();
    await this.#pool.end();
  }
}
