// `reins agent quarantine|release` (SPEC.md, "Monitoring and containment"): an operator cuts an
// agent off — every gateway refuses every live token it acts in within a second, open tunnels
// are closed, the token endpoint issues it none — and lets it back. On the running server's admin
// API when there is one (admin-client.ts), else on the database.
import { Command } from 'commander';
import { type QuarantineChange, setQuarantine } from '../server/provider/quarantine.ts';
import { addServerOption, adminCall, onServerOrDatabase, type ServerOptions } from './admin-client.ts';
import { addDatabaseOptions, type DatabaseOptions } from './database-options.ts';
import { CliError, EXIT } from './failure.ts';

interface AgentOptions extends DatabaseOptions, ServerOptions {
  tenant: string;
  reason?: string;
}

const EXIT_HELP =
  '\nWhile `reins serve` holds the embedded database, this goes through its admin API\n' +
  '(--server URL asks any server; docs/admin-api.md).\n' +
  '\nExit codes: 0 done (or nothing to do), 1 no such agent in the applied policy or the server\n' +
  'refused the admin credential, 2 a bad option value, 3 the database or the server is unavailable.\n';

export function agentCommand(): Command {
  return new Command('agent')
    .description('contain an agent: quarantine it, or release it')
    .addCommand(changeCommand(true))
    .addCommand(changeCommand(false));
}

function changeCommand(quarantine: boolean): Command {
  const cmd = new Command(quarantine ? 'quarantine' : 'release')
    .description(
      quarantine
        ? 'refuse every token the agent acts in at every gateway (within a second) and issue it none, until released'
        : 'let a quarantined agent through again (its unexpired tokens work again)',
    )
    .argument('<agent>', "the agent's client id")
    .requiredOption('--tenant <tenant>', "the agent's tenant")
    .option('--reason <text>', 'why, recorded with the change')
    .addHelpText('after', EXIT_HELP);
  return addServerOption(addDatabaseOptions(cmd)).action(async (agent: string, options: AgentOptions) => {
    const tenant = options.tenant;
    const reason = options.reason ?? (quarantine ? 'quarantined by an operator' : 'released by an operator');
    const change = await onServerOrDatabase(
      options,
      async (target) =>
        (
          await adminCall<{ change: QuarantineChange }>(
            target,
            'POST',
            `agents/${quarantine ? 'quarantine' : 'release'}`,
            { tenant, agent, reason },
          )
        ).body.change,
      (db) => setQuarantine(db, tenant, agent, quarantine, reason),
    );
    process.stdout.write(`${describeChange(change, tenant, agent)}\n`);
  });
}

function describeChange(change: QuarantineChange, tenant: string, agent: string): string {
  const who = `agent ${agent} of tenant ${tenant}`;
  switch (change) {
    case 'quarantined':
      return `${who} is quarantined: every gateway refuses its tokens (agent_quarantined) and the token endpoint issues it none, until: reins agent release ${agent} --tenant ${tenant}`;
    case 'already_quarantined':
      return `${who} was already quarantined; nothing changed`;
    case 'released':
      return `${who} is released: its tokens work again and it may obtain new ones`;
    case 'not_quarantined':
      return `${who} was not quarantined; nothing changed`;
    case 'unknown_agent':
      throw new CliError(
        `tenant ${tenant} has no agent ${agent} in the applied policy: check the names (reins policy plan shows the applied agents)`,
        EXIT.invalid,
      );
  }
}
