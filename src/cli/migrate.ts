// `reins migrate`: applies the pending schema migrations and says what it did. Safe to run from
// several processes at once (each migration is applied by exactly one of them).
import { Command } from 'commander';
import { migrate } from '../store/migrate.ts';
import { addDatabaseOptions, type DatabaseOptions, openDatabaseFromOptions } from './database-options.ts';

export function migrateCommand(): Command {
  const cmd = new Command('migrate')
    .description('apply pending database migrations (forward only; `reins serve` also applies them at start)')
    .addHelpText(
      'after',
      '\nMigrations are applied in order, each in its own transaction, under a lock, so several\n' +
        'processes may run this at once. A migration changed after it was applied is refused.\n' +
        'Exit codes: 0 applied or up to date, 1 the migrations do not fit the database,\n' +
        '3 the database is unavailable.\n',
    );
  return addDatabaseOptions(cmd).action(async (options: DatabaseOptions) => {
    const db = await openDatabaseFromOptions(options);
    try {
      const { applied } = await migrate(db);
      const lines =
        applied.length === 0 ? ['schema is up to date'] : applied.map((name) => `applied ${name}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    } finally {
      await db.close();
    }
  });
}
