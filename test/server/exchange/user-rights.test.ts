// User rights (src/server/exchange/user-rights.ts): which user rules a verified subject token
// satisfies, decided by @casl/ability conditions; deny by default.
import { describe, expect, it } from 'vitest';
import type {
  TenantModel,
  TrustedIssuerModel,
  UserMatchModel,
  UserRightModel,
} from '../../../src/policy/model.ts';
import { userFacts, userRights } from '../../../src/server/exchange/user-rights.ts';

const ISSUER: TrustedIssuerModel = {
  issuer: 'https://idp.acme.test',
  jwks: { keys: [] },
  jwksUri: null,
  audience: [],
  subjectClaim: 'sub',
  groupsClaim: 'groups',
  rolesClaim: 'https://acme.test/roles',
  algorithms: ['ES256'],
};

const NO_MATCH: UserMatchModel = {
  issuer: null,
  sub: null,
  email: null,
  groups: null,
  roles: null,
  claims: null,
};

function right(id: string, match: Partial<UserMatchModel>): UserRightModel {
  const egress = [`https://${id}.example`];
  return { id, match: { ...NO_MATCH, ...match }, integrations: [], egress, effectiveEgress: egress };
}

function tenantWith(...users: UserRightModel[]): TenantModel {
  return {
    id: 'acme',
    maxTokenTtl: 600,
    delegationDepth: 3,
    ceiling: null,
    owns: [],
    federation: [],
    integrations: [],
    agents: [],
    apps: [],
    trustedIssuers: [ISSUER],
    users,
    monitoring: null,
  };
}

const matched = (t: TenantModel, claims: Record<string, unknown>) =>
  userRights(t, userFacts(ISSUER, claims)).matched;

describe('user rights', () => {
  it('match on any of a rule’s groups', () => {
    const t = tenantWith(right('finance', { groups: ['finance', 'treasury'] }));
    expect(matched(t, { sub: 'bob', groups: ['staff', 'treasury'] })).toEqual(['finance']);
    expect(matched(t, { sub: 'bob', groups: 'finance' })).toEqual(['finance']);
    expect(matched(t, { sub: 'bob', groups: ['staff'] })).toEqual([]);
  });

  it('read roles from the claim the issuer names, dots and all', () => {
    const t = tenantWith(right('dispatch', { roles: ['dispatcher'] }));
    expect(matched(t, { sub: 'bob', 'https://acme.test/roles': ['dispatcher'] })).toEqual(['dispatch']);
    expect(matched(t, { sub: 'bob', roles: ['dispatcher'] })).toEqual([]);
  });

  it('require every condition of a rule', () => {
    const t = tenantWith(right('both', { sub: ['alice'], groups: ['finance'] }));
    expect(matched(t, { sub: 'alice', groups: ['finance'] })).toEqual(['both']);
    expect(matched(t, { sub: 'alice', groups: [] })).toEqual([]);
    expect(matched(t, { sub: 'bob', groups: ['finance'] })).toEqual([]);
  });

  it('match an exact email, or any email of a domain written as @domain', () => {
    const t = tenantWith(
      right('exact', { email: ['alice@acme.test'] }),
      right('domain', { email: ['@acme.test'] }),
    );
    expect(matched(t, { sub: 'a', email: 'alice@acme.test' })).toEqual(['exact', 'domain']);
    expect(matched(t, { sub: 'b', email: 'bob@ACME.test' })).toEqual(['domain']);
    expect(matched(t, { sub: 'c', email: 'carol@acme.test.evil.example' })).toEqual([]);
  });

  it('ignore an email the issuer says is unverified', () => {
    const t = tenantWith(right('domain', { email: ['@acme.test'] }));
    expect(matched(t, { sub: 'b', email: 'bob@acme.test', email_verified: false })).toEqual([]);
    expect(matched(t, { sub: 'b', email: 'bob@acme.test', email_verified: true })).toEqual(['domain']);
  });

  it('hold an issuer condition to the token’s issuer', () => {
    const t = tenantWith(
      right('here', { issuer: ISSUER.issuer }),
      right('there', { issuer: 'https://other.test' }),
    );
    expect(matched(t, { sub: 'bob' })).toEqual(['here']);
  });

  it('match other claims by their exact names, never as nested paths', () => {
    const t = tenantWith(right('dept', { claims: { 'org.dept': ['billing'] } }));
    expect(matched(t, { sub: 'bob', 'org.dept': 'billing' })).toEqual(['dept']);
    expect(matched(t, { sub: 'bob', org: { dept: 'billing' } })).toEqual([]);
  });

  it('take only strings as facts: objects and numbers never satisfy a condition', () => {
    const t = tenantWith(right('finance', { groups: ['finance'] }), right('n', { claims: { level: ['3'] } }));
    expect(matched(t, { sub: 'bob', groups: { toString: () => 'finance' } })).toEqual([]);
    expect(matched(t, { sub: 'bob', groups: [['finance']] })).toEqual([]);
    expect(matched(t, { sub: 'bob', level: 3 })).toEqual([]);
  });

  it('union the egress of every matching rule, and grant nothing when none matches', () => {
    const t = tenantWith(
      right('a', { groups: ['x'] }),
      right('b', { sub: ['bob'] }),
      right('c', { groups: ['y'] }),
    );
    expect(userRights(t, userFacts(ISSUER, { sub: 'bob', groups: ['x'] }))).toEqual({
      matched: ['a', 'b'],
      egress: ['https://a.example', 'https://b.example'],
    });
    expect(userRights(t, userFacts(ISSUER, { sub: 'eve' }))).toEqual({ matched: [], egress: [] });
  });
});
