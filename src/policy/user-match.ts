// A user rule's match: the subject-token claims a user must have. Canonical form: every value a
// sorted, de-duplicated list; absent conditions are null. Rendered, it is the rule's default id
// and what plan shows (`groups=finance`, `issuer=https://login.acme.example sub=alice`).
import { compareText } from './diagnostic.ts';
import type { UserMatchModel } from './model.ts';
import type { StringOrList, UserMatchData } from './shape.ts';

export function matchModel(match: UserMatchData): UserMatchModel {
  const claims = match.claims
    ? Object.fromEntries(
        Object.entries(match.claims)
          .sort(([a], [b]) => compareText(a, b))
          .map(([claim, value]) => [claim, list(value)]),
      )
    : null;
  return {
    issuer: match.issuer ?? null,
    sub: optionalList(match.sub),
    email: optionalList(match.email),
    groups: optionalList(match.groups),
    roles: optionalList(match.roles),
    claims,
  };
}

export function renderMatch(m: UserMatchModel): string {
  const parts: string[] = [];
  if (m.issuer !== null) parts.push(`issuer=${m.issuer}`);
  for (const key of ['sub', 'email', 'groups', 'roles'] as const) {
    const values = m[key];
    if (values) parts.push(`${key}=${values.join(',')}`);
  }
  for (const [claim, values] of Object.entries(m.claims ?? {})) parts.push(`${claim}=${values.join(',')}`);
  return parts.join(' ');
}

/** A string or a list of strings as a sorted list without duplicates. */
export function list(value: StringOrList): string[] {
  return [...new Set(typeof value === 'string' ? [value] : value)].sort(compareText);
}

function optionalList(value: StringOrList | undefined): string[] | null {
  return value === undefined ? null : list(value);
}
