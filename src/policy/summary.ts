// One line that says what a policy holds, for `validate`, `apply` and the version history.
import type { PolicyModel } from './model.ts';

export function summarise(model: PolicyModel): string {
  const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  const sum = (pick: (t: PolicyModel['tenants'][number]) => number) =>
    model.tenants.reduce((total, tenant) => total + pick(tenant), 0);
  return [
    count(model.tenants.length, 'tenant'),
    count(
      sum((t) => t.integrations.length),
      'integration',
    ),
    count(
      sum((t) => t.agents.length),
      'agent',
    ),
    count(
      sum((t) => t.apps.length),
      'app',
    ),
    count(
      sum((t) => t.trustedIssuers.length),
      'trusted issuer',
    ),
    count(
      sum((t) => t.users.length),
      'user rule',
    ),
  ].join(', ');
}
