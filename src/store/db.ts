// The one database interface every part of reins talks to. Two implementations stand behind
// it: PostgreSQL through a `pg` pool (DATABASE_URL) and PGlite, an embedded PostgreSQL that
// needs no server (the zero-setup default). Both run the same SQL and the same migrations;
// one contract test suite (test/store/contract.test.ts) holds them to the same behaviour.

export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount: number;
}

/** Anything that runs SQL: the database itself or an open transaction. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

export interface Db extends Queryable {
  readonly backend: 'pg' | 'pglite';
  /**
   * Runs `work` in one transaction on one connection: committed when it resolves, rolled back
   * when it throws (and the error rethrown).
   */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Subscribes to NOTIFY on `channel`. Returns the function that unsubscribes. Notifications
   * are wake-up hints only: a listener must re-read the state it cares about, because a
   * notification can be missed across a reconnect.
   */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

export type StoreErrorCode = 'database_unavailable' | 'migration_checksum_mismatch' | 'migration_failed';

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}
