// Warnings: the policy is valid but probably does not do what its author thinks. They never
// fail `validate`; they say where the effective egress differs from what the file reads like.
// - the tenant's ceiling cuts part of a grant (effective = grant ∩ ceiling);
// - an agent's grant reaches destinations another tenant owns without that tenant federating
//   them: the gateway refuses those requests (reason cross_tenant);
// - user rights without a trusted issuer, and apps that may delegate to no agent, never apply.
import { formatRule, intersectRules, type Rule, rulesCover } from '../egress/index.ts';
import type { ResolvedPrincipal, ResolvedTenant } from './compile.ts';
import { type Diagnostic, warning } from './diagnostic.ts';
import type { GrantItem } from './grants.ts';
import type { TenantModel } from './model.ts';
import type { TenantDraft } from './tenants.ts';

export function ceilingWarnings(tenant: ResolvedTenant): Diagnostic[] {
  const { ceiling } = tenant;
  if (!ceiling) return [];
  const out: Diagnostic[] = [];
  for (const principal of tenant.principals) {
    for (const item of principal.grant.items) {
      for (const rule of item.rules) {
        const remains = intersectRules([rule], ceiling);
        if (rulesCover(remains, rule)) continue;
        const left =
          remains.length === 0
            ? 'nothing of it remains effective'
            : `only ${remains.map((r) => `'${formatRule(r)}'`).join(', ')} remains effective`;
        out.push(
          warning(
            item.at,
            `the egress_ceiling of tenant '${tenant.id}' cuts ${what(principal, item, rule)}: ` +
              `${left}; widen the ceiling, or narrow the grant to what is effective`,
          ),
        );
      }
    }
  }
  return out;
}

export function crossTenantWarnings(tenants: readonly ResolvedTenant[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const tenant of tenants) {
    for (const principal of tenant.principals) {
      if (principal.kind !== 'agent') continue;
      for (const item of principal.grant.items) {
        for (const owner of tenants) {
          if (owner.id === tenant.id || owner.owns.length === 0) continue;
          const federated = owner.federation.get(tenant.id) ?? [];
          const reach = tenant.ceiling ? intersectRules(item.rules, tenant.ceiling) : item.rules;
          const refused = intersectRules(reach, owner.owns).filter((r) => !rulesCover(federated, r));
          if (refused.length === 0) continue;
          out.push(
            warning(
              item.at,
              `agent '${principal.name}' egress '${item.text}' reaches ${refused.map((r) => `'${formatRule(r)}'`).join(', ')}, ` +
                `which tenant '${owner.id}' owns and does not federate to tenant '${tenant.id}'; the gateway refuses ` +
                `it (cross_tenant) unless '${owner.id}' adds a federation entry for '${tenant.id}'`,
            ),
          );
        }
      }
    }
  }
  return out;
}

export function unusedWarnings(draft: TenantDraft, model: TenantModel): Diagnostic[] {
  const out: Diagnostic[] = [];
  const firstUser = draft.users[0];
  if (firstUser && draft.issuers.length === 0) {
    out.push(
      warning(
        firstUser.file.locateKey(['users']),
        `tenant '${draft.id}' has user rights but no trusted_issuers: no user token can be verified, so these rules never apply`,
      ),
    );
  }
  for (const app of model.apps) {
    const located = draft.apps.get(app.clientId);
    if (!located || app.mayDelegateTo.length > 0 || located.value.may_delegate_to?.length) continue;
    out.push(
      warning(
        located.file.locateKey(located.path),
        `app '${app.clientId}' may delegate to no agent, so it can obtain no tokens; add may_delegate_to: [<agent>]`,
      ),
    );
  }
  return out;
}

function what(principal: ResolvedPrincipal, item: GrantItem, rule: Rule): string {
  const via = item.integration ? ` (from integration '${item.integration}')` : '';
  return `'${formatRule(rule)}'${via} from ${principal.kind} '${principal.name}'`;
}
