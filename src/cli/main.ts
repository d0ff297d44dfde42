// argv → command. Each command lives in its own file and is added here (one addCommand each);
// errors are turned into one line on stderr and an exit code (see failure.ts), never a stack
// trace. Usage errors at every level get the same treatment (usage.ts). The Node.js version is
// checked before this module is even loaded (bin/reins.js).
import { readFileSync } from 'node:fs';
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
import { withUsageErrors } from './usage.ts';

/** package.json, from src/cli/ and dist/cli/ alike. */
const PACKAGE_JSON = new URL('../../package.json', import.meta.url);

export function buildProgram(): Command {
  const program = new Command('reins')
    .description(
      'Identity-bound outbound control for AI agents: an OAuth 2.0 authorization server and a verifying egress gateway.',
    )
    .version(packageVersion(), '-V, --version', 'print the version of reins')
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
    .addCommand(envCommand());
  // Last, so that it reaches every command added above.
  return withUsageErrors(program);
}

function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version?: unknown };
  return typeof version === 'string' ? version : 'unknown';
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
    // Commander has already printed its message (usage.ts), the help text or the version.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
    // `reins policy` without a subcommand prints its help on stderr with exitCode 1: a usage
    // error; `reins help` and `reins policy help` print it with 0.
    if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
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
