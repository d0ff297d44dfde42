// argv → command. Each command lives in its own file and is added here (one addCommand each);
// whatever a command throws is caught here, once, and turned into one line on stderr and an exit
// code by failure.ts's table, never a stack trace. Usage errors at every level get the same
// treatment (usage.ts). The Node.js version is checked before this module is even loaded
// (bin/reins.js).
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { agentCommand } from './agent.ts';
import { alertsCommand } from './alerts.ts';
import { auditCommand } from './audit.ts';
import { baselineCommand } from './baseline.ts';
import { caCommand } from './ca.ts';
import { envCommand } from './env.ts';
import { EXIT, failureOf } from './failure.ts';
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
    .addCommand(agentCommand())
    .addCommand(alertsCommand())
    .addCommand(baselineCommand())
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
    // The one catch: failure.ts says what any error means (exit code, line on stderr).
    const failure = failureOf(err);
    process.stderr.write(failure.text);
    return failure.exitCode;
  }
}
