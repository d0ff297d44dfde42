import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.ts';
import { StoreError } from '../../src/store/db.ts';
import { migrate, readMigrations } from '../../src/store/migrate.ts';
import { openPg } from '../../src/store/pg.ts';
import { testBackends, testDatabaseUrl, uniqueName } from '../support/db.ts';
import { runReins } from '../support/run-reins.ts';

const FOUNDATION_TABLES = [
  'audit_events',
  'interception_ca',
  'issued_tokens',
  'oidc_models',
  'revocations',
  'schema_migrations',
  'signing_keys',
];

async function landed(db: Db): Promise<Array<{ name: string; checksum: string }>> {
  const { rows } = await db.query<{ name: string; checksum: string }>(
    'select name, checksum from schema_migrations order by name',
  );
  return rows;
}

async function storeErrorOf(run: Promise<unknown>): Promise<StoreError> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreError);
  return err as StoreError;
}

describe.each(testBackends())('migrations on $name', (backend) => {
  const opened: Db[] = [];
  const dirs: string[] = [];
  async function open(): Promise<Db> {
    const db = await backend.open();
    opened.push(db);
    return db;
  }
  async function migrationsDir(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'reins-migrations-'));
    dirs.push(dir);
    for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
    return dir;
  }
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((db) => db.close()));
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('applies every migration in order on an empty database, and nothing on a second run', async () => {
    const db = await open();
    const files = await readMigrations();
    expect(files.map((file) => file.name)).toContain('001_foundation.sql');
    expect(await migrate(db)).toEqual({ applied: files.map((file) => file.name) });
    expect(await migrate(db)).toEqual({ applied: [] });
    expect(await landed(db)).toEqual(files.map(({ name, checksum }) => ({ name, checksum })));
  });

  it('creates the foundation tables', async () => {
    const db = await open();
    await migrate(db);
    const { rows } = await db.query<{ table_name: string }>(
      `select table_name from information_schema.tables where table_schema = current_schema()`,
    );
    expect(rows.map((row) => row.table_name)).toEqual(expect.arrayContaining(FOUNDATION_TABLES));
  });

  it('refuses a landed migration whose file changed, naming the file', async () => {
    const db = await open();
    const dir = await migrationsDir({ '001_a.sql': 'create table a (x int);' });
    await migrate(db, dir);
    await writeFile(join(dir, '001_a.sql'), 'create table a (x bigint);');
    const err = await storeErrorOf(migrate(db, dir));
    expect(err.code).toBe('migration_checksum_mismatch');
    expect(err.message).toContain('001_a.sql');
  });

  it('reads a landed migration checked out with CRLF line ends as unchanged', async () => {
    const db = await open();
    const dir = await migrationsDir({ '001_a.sql': 'create table a (x int);\n-- note\n' });
    await migrate(db, dir);
    await writeFile(join(dir, '001_a.sql'), 'create table a (x int);\r\n-- note\r\n');
    expect(await migrate(db, dir)).toEqual({ applied: [] });
  });

  it('rolls a failing migration back whole and names it, keeping the ones before', async () => {
    const db = await open();
    const dir = await migrationsDir({
      '001_a.sql': 'create table a (x int);',
      '002_b.sql': 'create table b (x int);\ninsert into b values (1);\nselect no_such_function();',
    });
    const err = await storeErrorOf(migrate(db, dir));
    expect(err.code).toBe('migration_failed');
    expect(err.message).toContain('002_b.sql');
    expect((await landed(db)).map((row) => row.name)).toEqual(['001_a.sql']);
    const { rows } = await db.query(`select 1 from information_schema.tables where table_name = 'b'
      and table_schema = current_schema()`);
    expect(rows).toEqual([]);
  });

  it('refuses a migration numbered below one already applied', async () => {
    const db = await open();
    const dir = await migrationsDir({ '001_a.sql': 'select 1;', '003_c.sql': 'select 3;' });
    await migrate(db, dir);
    await writeFile(join(dir, '002_b.sql'), 'select 2;');
    const err = await storeErrorOf(migrate(db, dir));
    expect(err.code).toBe('migration_failed');
    expect(err.message).toContain('002_b.sql');
  });

  it('refuses misnamed and duplicate-numbered migration files instead of skipping them', async () => {
    const misnamed = await migrationsDir({ '001_a.sql': 'select 1;', '2-b.sql': 'select 2;' });
    expect((await storeErrorOf(readMigrations(misnamed))).message).toContain('2-b.sql');
    const duplicate = await migrationsDir({ '001_a.sql': 'select 1;', '001_b.sql': 'select 2;' });
    expect((await storeErrorOf(readMigrations(duplicate))).message).toContain('001_b.sql');
  });
});

// Several processes starting together against one PostgreSQL (a scaled-out rollout).
describe.runIf(testDatabaseUrl())('concurrent migrations on PostgreSQL', () => {
  const url = testDatabaseUrl() ?? '';
  let admin: Db;
  beforeAll(async () => {
    admin = await openPg(url);
  });
  afterAll(() => admin.close());

  it('two migrate() calls on two pools against one fresh schema both succeed and apply each migration once', async () => {
    const schema = uniqueName();
    const [a, b] = await Promise.all([openPg(url, { schema }), openPg(url, { schema })]);
    try {
      const [ranA, ranB] = await Promise.all([migrate(a), migrate(b)]);
      const names = (await readMigrations()).map((file) => file.name);
      expect([...ranA.applied, ...ranB.applied].sort()).toEqual(names);
      const { rows } = await a.query<{ name: string; n: number }>(
        'select name, count(*) as n from schema_migrations group by name order by name',
      );
      expect(rows).toEqual(names.map((name) => ({ name, n: 1 })));
    } finally {
      await a.query(`drop schema "${schema}" cascade`);
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('two `reins migrate` processes started at the same moment both exit 0 and apply the schema once', async () => {
    const database = uniqueName('reins_t');
    await admin.query(`create database ${database}`);
    try {
      const databaseUrl = url.replace(/^(postgres(?:ql)?:\/\/[^/]*\/)[^?]*/i, `$1${database}`);
      const env = { DATABASE_URL: databaseUrl };
      const runs = await Promise.all([runReins(['migrate'], env), runReins(['migrate'], env)]);
      expect(runs.map((run) => [run.code, run.stderr])).toEqual([
        [0, ''],
        [0, ''],
      ]);
      const names = (await readMigrations()).map((file) => file.name);
      const appliedLines = runs.flatMap((run) =>
        run.stdout.split('\n').filter((line) => line.startsWith('applied ')),
      );
      expect(appliedLines.sort()).toEqual(names.map((name) => `applied ${name}`));
      const db = await openPg(databaseUrl);
      try {
        const { rows } = await db.query<{ name: string }>('select name from schema_migrations order by name');
        expect(rows.map((row) => row.name)).toEqual(names);
      } finally {
        await db.close();
      }
    } finally {
      await admin.query(`drop database if exists ${database} with (force)`);
    }
  }, 60_000);
});
