// `reins policy plan DIR`: what `apply` would change, principal by principal, as a diff of the
// effective egress against the policy applied in the database (or in the running server's,
// through its admin API). Writes nothing.
import { Command, Option } from 'commander';
import type { InterceptMode } from '../policy/inspection.ts';
import { planReport } from '../policy/operations.ts';
import { addServerOption, adminCall, adminTarget, type ServerOptions } from './admin-client.ts';
import { addDatabaseOptions, type DatabaseOptions, openDatabaseFromOptions } from './database-options.ts';
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
        'Exit codes: 0 planned, 1 the policy has errors, 3 DIR, the database or the server unavailable.',
    );
  cmd.addOption(
    new Option('--intercept <mode>', 'the gateway interception mode to plan for [REINS_GATEWAY_INTERCEPT]')
      .choices(['auto', 'always', 'never'])
      .default(process.env.REINS_GATEWAY_INTERCEPT || 'auto'),
  );
  return addServerOption(addDatabaseOptions(cmd)).action(
    async (dir: string, options: DatabaseOptions & ServerOptions & { intercept: InterceptMode }) => {
      const checked = await loadAndValidate(dir);
      const target = await adminTarget(options);
      if (target !== null) {
        const { status, body } = await adminCall<{ text?: string; diagnostics?: string[] }>(
          target,
          'POST',
          'policy/plan',
          { sources: checked.sources, label: dir, intercept: options.intercept },
        );
        if (status === 422) refused(body.diagnostics ?? [], dir);
        process.stdout.write(body.text ?? '');
        return;
      }
      const db = await openDatabaseFromOptions(options);
      try {
        process.stdout.write(await planReport(db, checked, dir, options.intercept));
      } finally {
        await db.close();
      }
    },
  );
}
