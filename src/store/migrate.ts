// Forward-only schema migrations: migrations/NNN_name.sql, applied in order, each in its own
// transaction, recorded in schema_migrations with the sha256 of its text.
//
// A landed migration is never edited: a database migrated from the old text and one migrated
// from the new would differ silently, so a changed file is refused by name. Several processes may
// start at once (a scaled-out deployment rolling out): every step holds an advisory lock scoped to
// the schema, so exactly one of them applies each migration and the others see it recorded.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Db, Queryable } from './db.ts';
import { StoreError } from './db.ts';

/** The repository's migrations/, two levels above both src/store/ and dist/store/. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

export interface Migration {
  readonly name: string;
  readonly sql: string;
  /** sha256 (hex) of the text with CRLF read as LF, so a Windows checkout is not a change. */
  readonly checksum: string;
}

const FILE_NAME = /^(\d{3})_[a-z0-9_]+\.sql$/;

// Two int4 keys: a constant that marks the lock as reins' (0x7265696e, "rein"), and a hash of the
// schema, so test files working in their own schemas do not wait for one another.
const TAKE_LOCK = `select pg_advisory_xact_lock(1919248750, hashtext('migrate:' || coalesce(current_schema(), '')))`;

const CREATE_LEDGER = `create table if not exists schema_migrations (
  name text primary key,
  checksum text not null,
  applied_at timestamptz not null default now()
)`;

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The migrations in `dir`, in order. A .sql file that is not named NNN_name.sql is an error. */
export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  } catch (err) {
    throw new StoreError(
      'migration_failed',
      `cannot read the migrations directory ${dir}: ${messageOf(err)}`,
    );
  }
  const numbers = new Map<string, string>();
  for (const name of names) {
    // Skipping a misnamed file would leave its change out of every database without a word.
    const number = FILE_NAME.exec(name)?.[1];
    if (number === undefined) {
      throw new StoreError(
        'migration_failed',
        `migrations/${name}: name migrations NNN_name.sql (lower case)`,
      );
    }
    const other = numbers.get(number);
    if (other)
      throw new StoreError('migration_failed', `migrations/${other} and ${name} share the number ${number}`);
    numbers.set(number, name);
  }
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(join(dir, name), 'utf8');
      const checksum = createHash('sha256').update(sql.replace(/\r\n/g, '\n')).digest('hex');
      return { name, sql, checksum };
    }),
  );
}

interface Landed {
  name: string;
  checksum: string;
}

function checkLanded(migrations: readonly Migration[], landed: readonly Landed[]): Migration | undefined {
  const byName = new Map(landed.map((row) => [row.name, row.checksum]));
  for (const migration of migrations) {
    const checksum = byName.get(migration.name);
    if (checksum !== undefined && checksum !== migration.checksum) {
      throw new StoreError(
        'migration_checksum_mismatch',
        `migrations/${migration.name} was changed after it was applied (recorded sha256 ${checksum.slice(0, 12)}…, ` +
          `file ${migration.checksum.slice(0, 12)}…): restore it and put the change in a new migration`,
      );
    }
  }
  // Landed names with no file are tolerated: an older release still running during a rollout.
  const pending = migrations.find((migration) => !byName.has(migration.name));
  const later = pending && landed.map((row) => row.name).find((name) => name > pending.name);
  if (pending && later) {
    throw new StoreError(
      'migration_failed',
      `migrations/${pending.name} is not applied but the later ${later} is: ` +
        'renumber it after the last landed migration',
    );
  }
  return pending;
}

/** One step under the lock: applies the first pending migration, or finds none. */
async function step(tx: Queryable, migrations: readonly Migration[]): Promise<string | undefined> {
  await tx.query(TAKE_LOCK);
  await tx.query(CREATE_LEDGER);
  const { rows } = await tx.query<Landed>('select name, checksum from schema_migrations');
  const pending = checkLanded(migrations, rows);
  if (!pending) return undefined;
  try {
    await tx.query(pending.sql);
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw new StoreError(
      'migration_failed',
      `migrations/${pending.name} failed and was rolled back: ${messageOf(err)}`,
    );
  }
  await tx.query('insert into schema_migrations (name, checksum) values ($1, $2)', [
    pending.name,
    pending.checksum,
  ]);
  return pending.name;
}

/** Applies every pending migration in `dir`; returns the names applied, in order. */
export async function migrate(db: Db, dir: string = MIGRATIONS_DIR): Promise<{ applied: string[] }> {
  const migrations = await readMigrations(dir);
  const applied: string[] = [];
  for (;;) {
    const name = await db.transaction((tx) => step(tx, migrations));
    if (name === undefined) return { applied };
    applied.push(name);
  }
}
