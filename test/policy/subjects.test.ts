// Agents cannot pass for users (RFC 9700 §4.15): a client-credentials token has sub = the
// client's id, so no user subject a rule names may be a client id anywhere in the deployment.
import { describe, expect, it } from 'vitest';
import { ACME, at, errorsOf, GLOBEX, validate, where, yaml } from './support.ts';

const users = (...lines: string[]) => yaml('users:', ...lines);

describe('a user rule naming subjects', () => {
  it('may name a subject that differs from a client id only in case: subjects are compared exactly', () => {
    const text = `${ACME}${users('  - match: { sub: [Billing-Agent, billing-agent2, billing] }', '    egress: []')}`;
    expect(errorsOf(validate({ 'a.yaml': text }))).toEqual([]);
  });

  it("may use a client id as a group, role or email: only the subject is a token's sub", () => {
    const text = `${ACME}${users(
      '  - match: { groups: [billing-agent], roles: [billing-agent], email: billing-agent }',
      '    egress: []',
    )}`;
    expect(errorsOf(validate({ 'a.yaml': text }))).toEqual([]);
  });

  it('is refused at every subject that is a client id, and only there', () => {
    const text = `${ACME}${users(
      '  - match: { sub: [alice, billing-agent, shipping-agent], claims: { sub: billing-agent } }',
      '    egress: []',
    )}`;
    const files = { 'a.yaml': text, 'b.yaml': GLOBEX };
    const errors = errorsOf(validate(files));
    expect(errors.map(where)).toEqual([
      at('a.yaml', text, 'billing-agent,'),
      at('a.yaml', text, 'shipping-agent]'),
      at('a.yaml', text, 'billing-agent }'),
    ]);
    expect(errors.map((e) => e.message.split(' is the client id')[0])).toEqual([
      "users[0].match.sub[1] 'billing-agent'",
      "users[0].match.sub[2] 'shipping-agent'",
      "users[0].match.claims.sub 'billing-agent'",
    ]);
  });

  it("is refused for another tenant's agent defined in a later file, naming where it is defined", () => {
    const acme = `${ACME}${users('  - match: { sub: shipping-agent }', '    egress: []')}`;
    const errors = errorsOf(validate({ 'a.yaml': acme, 'b.yaml': GLOBEX }));
    expect(errors.map(where)).toEqual([at('a.yaml', acme, 'shipping-agent')]);
    expect(errors[0]?.message).toContain(
      `the agent 'shipping-agent' of tenant 'globex' at ${at('b.yaml', GLOBEX, 'shipping-agent')}`,
    );
  });

  it('leaves the policy without a model, so it can be neither planned nor applied', () => {
    const text = `${ACME}${users('  - match: { sub: billing-agent }', '    egress: []')}`;
    expect(validate({ 'a.yaml': text }).model).toBeNull();
  });
});
