// The database options every command that touches the database shares (`serve`, `migrate`,
// `policy apply`), and how store failures become CLI exit codes.
import { type Command, Option } from 'commander';
import type { Db, StoreErrorCode } from '../store/db.ts';
import { StoreError } from '../store/db.ts';
import { openDb } from '../store/open.ts';
import { CliError, EXIT, type ExitCode } from './failure.ts';

export interface DatabaseOptions {
  databaseUrl?: string | undefined;
  dataDir: string;
}

export const DEFAULT_DATA_DIR = './.reins';

/** Adds --database-url (env DATABASE_URL) and --data-dir (env REINS_DATA_DIR) to `cmd`. */
export function addDatabaseOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--database-url <url>',
        'PostgreSQL to use, e.g. postgres://USER:PASSWORD@HOST:5432/DB; unset: the embedded database',
      ).env('DATABASE_URL'),
    )
    .addOption(
      new Option('--data-dir <dir>', "embedded database directory when no database URL is given, or 'memory'")
        .env('REINS_DATA_DIR')
        .default(DEFAULT_DATA_DIR),
    );
}

const EXIT_FOR: Record<StoreErrorCode, ExitCode> = {
  database_unavailable: EXIT.unavailable,
  // The migrations on disk do not fit the database: the input is wrong, retrying will not help.
  migration_checksum_mismatch: EXIT.invalid,
  migration_failed: EXIT.invalid,
};

/** A StoreError as a CliError with its exit code; anything else unchanged. */
export function toCliError(err: unknown): unknown {
  return err instanceof StoreError ? new CliError(err.message, EXIT_FOR[err.code]) : err;
}

export async function openDatabaseFromOptions(options: DatabaseOptions): Promise<Db> {
  try {
    return await openDb({ databaseUrl: options.databaseUrl, dataDir: options.dataDir });
  } catch (err) {
    throw toCliError(err);
  }
}
