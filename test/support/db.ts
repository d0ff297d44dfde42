// The databases every database test runs against: PGlite in memory always, and PostgreSQL when
// DATABASE_URL is set. Each open() gives a database of its own (a fresh PGlite, or a fresh
// schema dropped again on close), so test files run in parallel without seeing each other.
//
//   describe.each(testBackends())('$name', (backend) => {
//     let db: Db;
//     beforeAll(async () => { db = await openMigratedDb(backend); });
//     afterAll(() => db.close());
//   });
import { randomBytes } from 'node:crypto';
import { type Db, StoreError } from '../../src/store/db.ts';
import { migrate } from '../../src/store/migrate.ts';
import { openPg } from '../../src/store/pg.ts';
import { openPglite } from '../../src/store/pglite.ts';

export interface TestBackend {
  readonly name: 'pglite' | 'pg';
  open(): Promise<Db>;
}

/** DATABASE_URL when the PostgreSQL tests should run, else undefined. */
export function testDatabaseUrl(): string | undefined {
  return process.env.DATABASE_URL || undefined;
}

/** A schema or database name no other test uses. */
export function uniqueName(prefix = 't'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** Opens `url` in a fresh schema that close() drops again. */
export async function openPgInFreshSchema(url: string): Promise<Db> {
  const schema = uniqueName();
  const db = await openPg(url, { schema, max: 4 });
  return {
    backend: db.backend,
    query: (sql, params) => db.query(sql, params),
    transaction: (work) => db.transaction(work),
    listen: (channel, onNotify) => db.listen(channel, onNotify),
    notify: (channel, payload) => db.notify(channel, payload),
    async close() {
      try {
        await db.query(`drop schema "${schema}" cascade`);
      } finally {
        await db.close();
      }
    },
  };
}

export function testBackends(): TestBackend[] {
  const backends: TestBackend[] = [{ name: 'pglite', open: () => openPglite('memory') }];
  const url = testDatabaseUrl();
  if (url) backends.push({ name: 'pg', open: () => openPgInFreshSchema(url) });
  return backends;
}

/** Opens a database of the backend's kind with every migration applied. */
export async function openMigratedDb(backend: TestBackend): Promise<Db> {
  const db = await backend.open();
  try {
    await migrate(db);
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}

/** Resolves with the first value `subscribe`'s callback receives, or rejects after `ms`. */
export function nextValue<T>(subscribe: (resolve: (value: T) => void) => void, ms = 5_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing arrived within ${ms} ms`)), ms);
    subscribe((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** Opens a database that must fail to open; returns the StoreError it failed with. */
export async function openFailure(open: () => Promise<Db>): Promise<StoreError> {
  const err = await open().then(
    async (db) => {
      await db.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  if (!(err instanceof StoreError)) throw new Error(`expected a StoreError, got ${String(err)}`);
  return err;
}
