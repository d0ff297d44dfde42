// `reins policy apply DIR`: validate, show the plan, then write the policy in one transaction —
// on the database, or through a running server's admin API (admin-client.ts).
import { Command } from 'commander';
import { applyReport } from '../policy/operations.ts';
import { migrate } from '../store/migrate.ts';
import { addServerOption, adminCall, adminTarget, type ServerOptions } from './admin-client.ts';
import { addDatabaseOptions, type DatabaseOptions, openDatabaseFromOptions } from './database-options.ts';
import { CliError, ContextError, EXIT, isExplained } from './failure.ts';
import { type CheckedPolicy, DIR_HELP, loadAndValidate } from './policy-load.ts';

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
        'tokens stop passing the gateway. Running servers and gateways follow within a second.\n' +
        'With --server, or while `reins serve` holds the embedded database, the running server\n' +
        'applies the files (they are read and validated here, and again there).\n' +
        'Exit codes: 0 applied or already applied, 1 the policy has errors, 3 DIR, the\n' +
        'database or the server unavailable.',
    );
  return addServerOption(addDatabaseOptions(cmd)).action(
    async (dir: string, options: DatabaseOptions & ServerOptions) => {
      const checked = await loadAndValidate(dir);
      const target = await adminTarget(options);
      if (target !== null) {
        const { status, body } = await adminCall<{ text?: string; diagnostics?: string[] }>(
          target,
          'POST',
          'policy/apply',
          { sources: checked.sources, label: dir },
        );
        if (status === 422) return refused(body.diagnostics ?? [], dir);
        process.stdout.write(body.text ?? '');
        return;
      }
      await applyDirect(options, checked);
    },
  );
}

async function applyDirect(options: DatabaseOptions, checked: CheckedPolicy): Promise<void> {
  const db = await openDatabaseFromOptions(options);
  try {
    await migrate(db);
    process.stdout.write((await applyReport(db, checked)).text);
  } catch (err) {
    // Anything unforeseen happened inside the transaction, which rolled back: say so, since
    // "nothing changed" is what the operator needs to know.
    throw isExplained(err) ? err : new ContextError(err, 'apply failed and was rolled back, nothing changed');
  } finally {
    await db.close();
  }
}

/** The server found errors the local validation did not (another version of reins). */
export function refused(diagnostics: readonly string[], dir: string): never {
  for (const line of diagnostics) process.stderr.write(`${line}\n`);
  throw new CliError(`${dir}: the server refused the policy`, EXIT.invalid);
}
