// `reins policy …`: policy-as-code (SPEC.md, "Policies"). One file per subcommand.
import { Command } from 'commander';
import { policyApplyCommand } from './policy-apply.ts';
import { policyHashSecretCommand } from './policy-hash-secret.ts';
import { policyPlanCommand } from './policy-plan.ts';
import { policyValidateCommand } from './policy-validate.ts';

export function policyCommand(): Command {
  return new Command('policy')
    .description('validate, plan and apply the policy files (tenants, agents, apps, user rights)')
    .addHelpText(
      'after',
      '\nTypical use:\n' +
        '  reins policy validate policies/   # every mistake as file:line:column\n' +
        "  reins policy plan policies/       # what would change in each principal's egress\n" +
        '  reins policy apply policies/      # load it, all or nothing\n' +
        'The format is described in docs/policies.md; the schema is schema/policy.schema.json.',
    )
    .addCommand(policyValidateCommand())
    .addCommand(policyPlanCommand())
    .addCommand(policyApplyCommand())
    .addCommand(policyHashSecretCommand());
}
