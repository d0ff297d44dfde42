// The database options every command that touches the database shares (`migrate`, `policy
// apply`, `keys`, `ca`, `audit`); a store failure is thrown as it is (failure.ts reports it).
import { type Command, Option } from 'commander';
import type { Db } from '../store/db.ts';
import { openDb } from '../store/open.ts';

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

export function openDatabaseFromOptions(options: DatabaseOptions): Promise<Db> {
  return openDb({ databaseUrl: options.databaseUrl, dataDir: options.dataDir });
}
