// `reins policy validate DIR`: every mistake in the policy files, each as file:line:column.
import { Command } from 'commander';
import { summarise } from '../policy/index.ts';
import { count, DIR_HELP, loadAndValidate } from './policy-load.ts';

export function policyValidateCommand(): Command {
  return new Command('validate')
    .description('check policy files against the schema and each other; print every error and warning')
    .argument('<DIR>', 'policy directory')
    .addHelpText(
      'after',
      `\n${DIR_HELP}\n\n` +
        'Each problem is printed on stderr as FILE:LINE:COLUMN: error|warning: MESSAGE, the message\n' +
        'saying what to write instead. Warnings (a ceiling cutting part of a grant, a grant reaching\n' +
        "another tenant's owned destinations) do not fail validation.\n" +
        'Exit codes: 0 valid (possibly with warnings), 1 at least one error, 3 DIR unreadable.\n' +
        'Touches no database.',
    )
    .action(async (dir: string) => {
      const checked = await loadAndValidate(dir);
      const warned = checked.warnings > 0 ? ` with ${count(checked.warnings, 'warning')}` : '';
      process.stdout.write(`${dir}: valid${warned}: ${summarise(checked.model)}\n`);
    });
}
