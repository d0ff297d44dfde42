// Which of a tenant's user rules a verified subject token satisfies, and the egress they grant
// (SPEC.md, "Policies": user rights). PURE: no I/O; the claims come in verified.
//
// The rules are @casl/ability conditions, so a rule reads as data: `{ groups: { $in: [...] } }`.
// Deny by default: a user no rule matches has no rights, and token exchange refuses.
//
// Threats:
// - a claim of the wrong type smuggling a match (an object whose toString is "finance"): only
//   strings, and arrays of strings, are facts; everything else is absent;
// - a user claiming someone else's address at an IdP that does not verify email: an `email`
//   condition never holds when the token says `email_verified: false`;
// - claim names with dots (`https://example.com/roles`) read as nested paths by the condition
//   language: custom claims are facts under encoded field names, never paths.
import { createMongoAbility, type MongoAbility, type MongoQuery, subject } from '@casl/ability';
import type { TenantModel, TrustedIssuerModel, UserRightModel } from '../../policy/model.ts';

/** The facts a rule may test, taken from a verified subject token. */
export interface UserFacts {
  readonly issuer: string;
  readonly sub: string | undefined;
  readonly email: string | undefined;
  /** `@domain`, lower case, when `email` has one. */
  readonly emailDomain: string | undefined;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  /** Every other claim, by name, as strings. */
  readonly claims: Readonly<Record<string, readonly string[]>>;
}

export interface UserRights {
  /** The user rule ids that matched, in policy order. */
  readonly matched: readonly string[];
  /** Union of their effective egress (canonical rule texts; each already ∩ the tenant ceiling). */
  readonly egress: readonly string[];
}

/** Reads the facts out of verified claims, as the issuer's policy names its claims. */
export function userFacts(trust: TrustedIssuerModel, claims: Readonly<Record<string, unknown>>): UserFacts {
  const email = claims.email_verified === false ? undefined : stringClaim(claims.email);
  const at = email?.lastIndexOf('@') ?? -1;
  const other: Record<string, readonly string[]> = {};
  for (const [name, value] of Object.entries(claims)) other[name] = stringsOf(value);
  return {
    issuer: trust.issuer,
    sub: stringClaim(claims[trust.subjectClaim]),
    email,
    emailDomain: email !== undefined && at > 0 ? email.slice(at).toLowerCase() : undefined,
    groups: stringsOf(claims[trust.groupsClaim]),
    roles: stringsOf(claims[trust.rolesClaim]),
    claims: other,
  };
}

type Action = 'hold';
type Ability = MongoAbility<[Action, 'UserRight' | ReturnType<typeof subject<'UserRight', object>>]>;

/** The rights the user's facts earn in `tenant`: every matching rule, unioned. */
export function userRights(tenant: TenantModel, facts: UserFacts): UserRights {
  const matched: string[] = [];
  const egress = new Set<string>();
  const fields = factFields(facts);
  for (const rule of tenant.users) {
    const ability: Ability = createMongoAbility([
      { action: 'hold', subject: 'UserRight', conditions: conditionsOf(rule) },
    ]);
    if (!ability.can('hold', subject('UserRight', fields))) continue;
    matched.push(rule.id);
    for (const text of rule.effectiveEgress) egress.add(text);
  }
  return { matched, egress: [...egress] };
}

/** A rule's match as casl (MongoDB-style) conditions: all keys must hold, a list holds on any value. */
export function conditionsOf(rule: UserRightModel): MongoQuery {
  const m = rule.match;
  const conditions: Record<string, unknown> = {};
  if (m.issuer !== null) conditions.issuer = m.issuer;
  if (m.sub !== null) conditions.sub = { $in: [...m.sub] };
  // `alice@acme.example` matches that address; `@acme.example` any address of that domain.
  if (m.email !== null) {
    conditions.emails = { $in: m.email.map((e) => (e.startsWith('@') ? e.toLowerCase() : e)) };
  }
  if (m.groups !== null) conditions.groups = { $in: [...m.groups] };
  if (m.roles !== null) conditions.roles = { $in: [...m.roles] };
  for (const [name, values] of Object.entries(m.claims ?? {})) {
    conditions[claimField(name)] = { $in: [...values] };
  }
  return conditions as MongoQuery;
}

function factFields(facts: UserFacts): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    issuer: facts.issuer,
    sub: facts.sub,
    // The address itself and `@domain`: one list, so one `$in` condition tests either.
    emails: [facts.email, facts.emailDomain].filter((e) => e !== undefined),
    groups: facts.groups,
    roles: facts.roles,
  };
  for (const [name, values] of Object.entries(facts.claims)) fields[claimField(name)] = values;
  return fields;
}

/** A field name no condition path can misread: no dots, no `$`, distinct from the fixed facts. */
function claimField(name: string): string {
  return `claim:${encodeURIComponent(name).replaceAll('.', '%2E')}`;
}

function stringClaim(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function stringsOf(value: unknown): readonly string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return [];
}
