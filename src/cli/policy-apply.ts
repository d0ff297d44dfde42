// `reins policy apply DIR`: validate, show the plan, then write the policy in one transaction.
import { Command } from 'commander';
import { applyPolicy, formatPlan, planChanges, readAppliedPolicy } from '../policy/index.ts';
import { migrate } from '../store/migrate.ts';
import { isUnavailable } from '../store/pg-errors.ts';
import {
  addDatabaseOptions,
  type DatabaseOptions,
  openDatabaseFromOptions,
  toCliError,
} from './database-options.ts';
import { CliError, EXIT } from './failure.ts';
import { DIR_HELP, loadAndValidate } from './policy-load.ts';

export function policyApplyCommand(): Command {
  const cmd = new Command('apply')
    .description('validate the policy files and load them into the database, all or nothing')
    .argument('<DIR>', 'policy directory')
    .addHelpText(
      'after',
      `\n${DIR_HELP}\n\n` +
        'Runs pending migrations, prints the plan, then replaces the applied policy in one\n' +
        'transaction: if anything fails, nothing changes. The version number and the sha256 of\n' +
        'the files are recorded; applying the same files again writes nothing. Agents and apps\n' +
        'no longer in the files are removed: they get no new tokens, and their outstanding\n' +
        'tokens stop passing the gateway. Running servers are notified to reload.\n' +
        'Exit codes: 0 applied or already applied, 1 the policy has errors, 3 DIR or the\n' +
        'database unavailable.',
    );
  return addDatabaseOptions(cmd).action(async (dir: string, options: DatabaseOptions) => {
    const checked = await loadAndValidate(dir);
    const db = await openDatabaseFromOptions(options);
    try {
      await migrate(db);
      const applied = await readAppliedPolicy(db);
      const outcome = await applyPolicy(db, {
        model: checked.model,
        contentHash: checked.contentHash,
        files: checked.sources.map((s) => s.name),
      });
      if (outcome.status === 'unchanged') {
        process.stdout.write(
          `already applied, version ${outcome.version.version} (${outcome.version.contentHash}); nothing to do\n`,
        );
        return;
      }
      process.stdout.write(formatPlan(planChanges(applied.model, checked.model)));
      process.stdout.write(
        `\napplied version ${outcome.version.version} (${outcome.version.contentHash}): ${outcome.version.summary}\n`,
      );
    } catch (err) {
      throw failure(err);
    } finally {
      await db.close();
    }
  });
}

function failure(err: unknown): unknown {
  const converted = toCliError(err);
  if (converted instanceof CliError) return converted;
  const message = err instanceof Error ? err.message : String(err);
  // The transaction rolled back: say so, since "nothing changed" is what the operator needs to know.
  const code = isUnavailable(err) ? EXIT.unavailable : EXIT.internal;
  return new CliError(`apply failed and was rolled back, nothing changed: ${message}`, code);
}
