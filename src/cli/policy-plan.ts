// `reins policy plan DIR`: what `apply` would change, principal by principal, as a diff of the
// effective egress against the policy applied in the database. Writes nothing.
import { Command, Option } from 'commander';
import { formatPlan, planChanges, readAppliedPolicy } from '../policy/index.ts';
import { formatInspectionNotes, type InterceptMode, rulesNeedingInspection } from '../policy/inspection.ts';
import {
  addDatabaseOptions,
  type DatabaseOptions,
  openDatabaseFromOptions,
  toCliError,
} from './database-options.ts';
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
        'Exit codes: 0 planned, 1 the policy has errors, 3 DIR or the database unavailable.',
    );
  cmd.addOption(
    new Option('--intercept <mode>', 'the gateway interception mode to plan for [REINS_GATEWAY_INTERCEPT]')
      .choices(['auto', 'always', 'never'])
      .default(process.env.REINS_GATEWAY_INTERCEPT || 'auto'),
  );
  return addDatabaseOptions(cmd).action(
    async (dir: string, options: DatabaseOptions & { intercept: InterceptMode }) => {
      const checked = await loadAndValidate(dir);
      const db = await openDatabaseFromOptions(options);
      try {
        const applied = await readAppliedPolicy(db);
        const against = applied.version
          ? `version ${applied.version.version} (${applied.version.contentHash})`
          : 'an empty database (nothing applied yet)';
        const sameFiles = applied.version?.contentHash === checked.contentHash ? ' (same files)' : '';
        process.stdout.write(`Plan for ${dir} (${checked.contentHash}) against ${against}${sameFiles}\n\n`);
        process.stdout.write(formatPlan(planChanges(applied.model, checked.model)));
        const notes = formatInspectionNotes(rulesNeedingInspection(checked.model), options.intercept);
        if (notes !== '') process.stdout.write(`\n${notes}`);
      } catch (err) {
        throw toCliError(err);
      } finally {
        await db.close();
      }
    },
  );
}
