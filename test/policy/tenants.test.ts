import { describe, expect, it } from 'vitest';
import { errorsOf, validate, yaml } from './support.ts';

describe('a tenant spread over several files', () => {
  const settings = yaml(
    'tenant: acme',
    'settings: { max_token_ttl: 600, delegation_depth: 2 }',
    'integrations:',
    '  payments: ["POST https://api.stripe.com/v1/"]',
  );
  const agents = yaml(
    'tenant: acme',
    'agents:',
    '  billing-agent:',
    '    auth: { method: client_secret_basic, secret_env: A }',
    '    egress: [payments]',
  );
  const apps = yaml(
    'tenant: acme',
    'apps:',
    '  portal:',
    '    auth: { method: client_secret_post, secret_env: P }',
    '    may_delegate_to: [billing-agent]',
  );
  const result = validate({
    'acme/settings.yaml': settings,
    'acme/agents.yaml': agents,
    'acme/apps.yaml': apps,
  });

  it('merges into one tenant whose files may refer to each other', () => {
    expect(result.diagnostics).toEqual([]);
    const tenant = result.model?.tenants[0];
    expect(result.model?.tenants).toHaveLength(1);
    expect(tenant?.maxTokenTtl).toBe(600);
    expect(tenant?.agents[0]?.effectiveEgress).toEqual(['POST https://api.stripe.com/v1']);
    expect(tenant?.apps[0]?.mayDelegateTo).toEqual(['billing-agent']);
  });

  it('accepts a setting repeated with the same value', () => {
    const again = yaml('tenant: acme', 'settings: { max_token_ttl: 600 }');
    expect(errorsOf(validate({ 'a.yaml': settings, 'b.yaml': agents, 'c.yaml': again }))).toEqual([]);
  });

  it('reports an integration defined in two of its files', () => {
    const twice = yaml('tenant: acme', 'integrations:', '  payments: ["GET https://api.stripe.com/"]');
    const errors = errorsOf(validate({ 'a.yaml': settings, 'b.yaml': twice }));
    expect(errors.map((e) => `${e.file}:${e.line}:${e.column}`)).toEqual(['b.yaml:3:3']);
    expect(errors[0]?.message).toContain('already defined at a.yaml:4:3');
  });
});

describe('the compiled model', () => {
  const file = yaml(
    'tenant: acme',
    'agents:',
    '  a1:',
    '    auth: { method: client_secret_basic, secret_env: A }',
    '    egress: ["GET https://API.Example.com:443/v2/", "GET https://api.example.com/v2/x"]',
    'users:',
    '  - match: { groups: finance, sub: [bob, alice, bob] }',
    '    egress: []',
    'trusted_issuers:',
    '  - issuer: https://login.example.com',
    '    jwks_uri: https://login.example.com/jwks',
  );
  const tenant = validate({ 'a.yaml': file }).model?.tenants[0];

  it('applies defaults: one hour maximum, five-minute tokens, depth 3, no ceiling', () => {
    expect(tenant).toMatchObject({ maxTokenTtl: 3600, delegationDepth: 3, ceiling: null });
    expect(tenant?.agents[0]?.tokenTtl).toBe(300);
    expect(tenant?.trustedIssuers[0]).toMatchObject({
      audience: [],
      subjectClaim: 'sub',
      groupsClaim: 'groups',
      algorithms: ['ES256', 'ES384', 'ES512', 'EdDSA', 'PS256', 'RS256'],
    });
  });

  it('keeps rules canonical and drops those another rule contains', () => {
    expect(tenant?.agents[0]?.egress).toEqual(['GET https://api.example.com/v2']);
  });

  it('names a user rule without a name by its match, values sorted and de-duplicated', () => {
    expect(tenant?.users[0]?.id).toBe('sub=alice,bob groups=finance');
    expect(tenant?.users[0]?.match).toEqual({
      issuer: null,
      sub: ['alice', 'bob'],
      email: null,
      groups: ['finance'],
      roles: null,
      claims: null,
    });
  });
});
