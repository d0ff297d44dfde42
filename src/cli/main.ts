// argv → command. Each command lives in its own file and is added here; errors are turned
// into one line on stderr and an exit code (see failure.ts), never a stack trace.
import { Command, CommanderError } from 'commander';
import { auditCommand } from './audit.ts';
import { caCommand } from './ca.ts';
import { envCommand } from './env.ts';
import { CliError, EXIT } from './failure.ts';
import { gatewayCommand } from './gateway.ts';
import { keysCommand } from './keys.ts';
import { migrateCommand } from './migrate.ts';
import { policyCommand } from './policy.ts';
import { runCommand } from './run.ts';
import { serveCommand } from './serve.ts';

export function buildProgram(): Command {
  return (
    new Command('reins')
      .description(
        'Identity-bound outbound control for AI agents: an OAuth 2.0 authorization server and a verifying egress gateway.',
      )
      .showHelpAfterError('(run with --help for usage)')
      .exitOverride()
      // `reins run … -- COMMAND -x`: the command's own options are not reins's (run.ts).
      .enablePositionalOptions()
      .addCommand(serveCommand())
      .addCommand(gatewayCommand())
      .addCommand(migrateCommand())
      .addCommand(policyCommand())
      .addCommand(keysCommand())
      .addCommand(caCommand())
      .addCommand(auditCommand())
      .addCommand(runCommand())
      .addCommand(envCommand())
  );
}

/** Runs the command line and returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    return report(err);
  }
}

function report(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (or the help text).
    if (
      err.code === 'commander.helpDisplayed' ||
      err.code === 'commander.help' ||
      err.code === 'commander.version'
    ) {
      return EXIT.ok;
    }
    return EXIT.usage;
  }
  if (err instanceof CliError) {
    process.stderr.write(`reins: ${err.message}\n`);
    return err.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`reins: internal error: ${message}\n`);
  return EXIT.internal;
}
