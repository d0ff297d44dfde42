// Names that point elsewhere: may_act and may_delegate_to name agents, federation names a
// tenant, a user rule may name a trusted issuer. Nothing crosses tenants (SPEC.md), so a name
// that exists only in another tenant is an error that says so, not a silent "unknown".
import { describe } from './describe.ts';
import { type Diagnostic, error } from './diagnostic.ts';
import { didYouMean } from './suggest.ts';
import type { ClientEntry, Located, TenantDraft } from './tenants.ts';

export interface ReferenceContext {
  readonly tenant: TenantDraft;
  readonly clients: ReadonlyMap<string, ClientEntry>;
  /** Every tenant id declared anywhere, including in files that failed the schema. */
  readonly tenantIds: ReadonlySet<string>;
  /** False when a file of this tenant failed the schema: its definitions are unknown. */
  readonly complete: boolean;
}

/** Checks a list of agent names (may_act, may_delegate_to); returns the valid ones. */
export function checkAgentNames(
  owner: Located<unknown>,
  key: 'may_act' | 'may_delegate_to',
  names: readonly string[],
  context: ReferenceContext,
  out: Diagnostic[],
): string[] {
  const valid: string[] = [];
  const { tenant } = context;
  names.forEach((name, i) => {
    const path = [...owner.path, key, i];
    const at = owner.file.locate(path);
    if (tenant.agents.has(name)) {
      valid.push(name);
      return;
    }
    const elsewhere = context.clients.get(name);
    if (elsewhere && elsewhere.tenant !== tenant.id) {
      out.push(
        error(
          at,
          `'${name}' in ${describe(path)} is ${elsewhere.kind === 'agent' ? 'an agent' : 'an app'} of tenant ` +
            `'${elsewhere.tenant}'; nothing crosses tenants, so ${key} may only name agents of tenant '${tenant.id}'`,
        ),
      );
      return;
    }
    if (tenant.apps.has(name)) {
      out.push(error(at, `'${name}' in ${describe(path)} is an app; ${key} names agents`));
      return;
    }
    if (!context.complete) return;
    const known = [...tenant.agents.keys()].sort();
    out.push(
      error(
        at,
        `unknown agent '${name}' in ${describe(path)}${didYouMean(name, known)} ` +
          `(agents of tenant '${tenant.id}': ${known.join(', ') || 'none'})`,
      ),
    );
  });
  return [...new Set(valid)].sort();
}

/** A federation entry names another, existing tenant. Returns whether it does. */
export function checkFederationTenant(
  entry: Located<{ tenant: string }>,
  context: ReferenceContext,
  out: Diagnostic[],
): boolean {
  const name = entry.value.tenant;
  const at = entry.file.locate([...entry.path, 'tenant']);
  if (name === context.tenant.id) {
    out.push(
      error(
        at,
        `tenant '${name}' federates to itself; a tenant always reaches what it owns, remove this entry`,
      ),
    );
    return false;
  }
  if (context.tenantIds.has(name)) return true;
  const known = [...context.tenantIds].filter((id) => id !== context.tenant.id).sort();
  out.push(
    error(
      at,
      `unknown tenant '${name}' in ${describe(entry.path)}${didYouMean(name, known)} ` +
        `(other tenants: ${known.join(', ') || 'none'})`,
    ),
  );
  return false;
}

/** A user rule's `match.issuer` names one of the tenant's trusted issuers. */
export function checkMatchIssuer(
  user: Located<{ match: { issuer?: string } }>,
  context: ReferenceContext,
  out: Diagnostic[],
): void {
  const issuer = user.value.match.issuer;
  if (issuer === undefined) return;
  const known = context.tenant.issuers.map((i) => i.value.issuer);
  if (known.includes(issuer) || !context.complete) return;
  const path = [...user.path, 'match', 'issuer'];
  out.push(
    error(
      user.file.locate(path),
      `${describe(path)} '${issuer}' is not a trusted issuer of tenant '${context.tenant.id}' ` +
        `(trusted: ${known.join(', ') || 'none'}); add it under trusted_issuers${didYouMean(issuer, known)}`,
    ),
  );
}
