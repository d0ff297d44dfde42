// `reins policy plan DIR`: what `apply` would change, principal by principal, as a diff of the
// effective egress against the policy applied in the database (or in the running server's,
// through its admin API). Writes nothing.
import { Command, Option } from 'commander';
import { formatReplay } from '../gateway/replay.ts';
import { replaySince } from '../gateway/replay-read.ts';
import type { InterceptMode } from '../policy/inspection.ts';
import { planReport } from '../policy/operations.ts';
import { addServerOption, adminCall, adminTarget, type ServerOptions } from './admin-client.ts';
import { parseSince } from './arguments.ts';
import { addDatabaseOptions, type DatabaseOptions, openDatabaseFromOptions } from './database-options.ts';
import { CliError, EXIT } from './failure.ts';
import { refused } from './policy-apply.ts';
import { DIR_HELP, loadAndValidate } from './policy-load.ts';

export function policyPlanCommand(): Command {
  const cmd = new Command('plan')
    .description(
      'show what apply would change: every agent, app and user rule whose effective egress changes',
    )
    .argument('<DIR>', 'policy directory')
    .addHelpText(
      'after',
      `\n${DIR_HELP}\n\n` +
        'The files are validated first (errors as in `reins policy validate`). Then, per tenant:\n' +
        '  + added, - removed, ~ changed; under each agent, app and user rule the destinations it\n' +
        '  gains (+) or loses (-) after the tenant ceiling, and other changed attributes (~).\n' +
        "An app's destinations are the union of what the agents it may delegate to can reach.\n" +
        '"No changes." when the database already holds this policy. Nothing is written.\n' +
        'Then the https rules scoped to methods or paths, which need inspected tunnels; with\n' +
        '--intercept never (or REINS_GATEWAY_INTERCEPT=never) the origins that will be refused.\n' +
        'With --server, or while `reins serve` holds the embedded database, the plan is made\n' +
        'against what the running server has applied.\n' +
        'With --replay 24h, the gateway decisions recorded in the last 24 hours are judged again\n' +
        'under the applied and the planned policy: per agent, the destinations (method and origin)\n' +
        'whose requests would newly be refused (-) or allowed (+), and how many requests.\n' +
        'Exit codes: 0 planned, 1 the policy has errors, 3 DIR, the database or the server unavailable.',
    );
  cmd.addOption(
    new Option('--intercept <mode>', 'the gateway interception mode to plan for [REINS_GATEWAY_INTERCEPT]')
      .choices(['auto', 'always', 'never'])
      .default(process.env.REINS_GATEWAY_INTERCEPT || 'auto'),
  );
  cmd.option(
    '--replay <period>',
    'also judge the decisions recorded in this period back from now (30m, 24h, 7d) under both policies',
  );
  return addServerOption(addDatabaseOptions(cmd)).action(
    async (
      dir: string,
      options: DatabaseOptions & ServerOptions & { intercept: InterceptMode; replay?: string },
    ) => {
      const replay = replayOption(options.replay);
      const checked = await loadAndValidate(dir);
      const target = await adminTarget(options);
      if (target !== null) {
        const { status, body } = await adminCall<{ text?: string; diagnostics?: string[] }>(
          target,
          'POST',
          'policy/plan',
          {
            sources: checked.sources,
            label: dir,
            intercept: options.intercept,
            ...(replay ? { replay: { since: replay.since.toISOString(), period: replay.period } } : {}),
          },
        );
        if (status === 422) refused(body.diagnostics ?? [], dir);
        process.stdout.write(body.text ?? '');
        return;
      }
      const db = await openDatabaseFromOptions(options);
      try {
        let text = await planReport(db, checked, dir, options.intercept);
        if (replay)
          text += `\n${formatReplay(await replaySince(db, checked.model, replay.since), replay.period)}`;
        process.stdout.write(text);
      } finally {
        await db.close();
      }
    },
  );
}

/** `--replay 24h`: how far back, as a duration (an ISO time is not a period). */
function replayOption(text: string | undefined): { since: Date; period: string } | undefined {
  if (text === undefined) return undefined;
  const since = /^\d{1,9}[smhd]$/.test(text) ? parseSince(text, new Date()) : undefined;
  if (since === undefined) {
    throw new CliError(
      `--replay ${JSON.stringify(text)}: give a period back from now, e.g. 30m, 24h or 7d`,
      EXIT.usage,
    );
  }
  return { since, period: text };
}
