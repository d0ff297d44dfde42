// trusted_issuers[].algorithms: the JWS algorithms a user token may be signed with. Asymmetric
// only: `none` passes an unsigned token, and an HMAC keyed with the issuer's public key passes a
// token anyone holding that public key has "signed" (RFC 8725 §2.1).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_ISSUER_ALGORITHMS, ISSUER_ALGORITHMS } from '../../src/policy/model.ts';
import { policySchema } from '../../src/policy/schema.ts';
import { at, errorsOf, validate, where, yaml } from './support.ts';

const issuer = (...extra: string[]) =>
  yaml(
    'tenant: acme',
    'trusted_issuers:',
    '  - issuer: https://login.acme.example',
    '    jwks_uri: https://login.acme.example/jwks',
    ...extra,
  );

const algorithmsOf = (text: string) =>
  validate({ 'a.yaml': text }).model?.tenants[0]?.trustedIssuers[0]?.algorithms;

describe("a trusted issuer's algorithms", () => {
  it('default to the asymmetric algorithms identity providers sign with', () => {
    expect(algorithmsOf(issuer())).toEqual(DEFAULT_ISSUER_ALGORITHMS);
    expect([...DEFAULT_ISSUER_ALGORITHMS].sort()).toEqual(
      ['ES256', 'ES384', 'ES512', 'EdDSA', 'RS256', 'PS256'].sort(),
    );
  });

  it('are kept sorted and without duplicates', () => {
    expect(algorithmsOf(issuer('    algorithms: [RS256, ES256, EdDSA, RS256]'))).toEqual([
      'ES256',
      'EdDSA',
      'RS256',
    ]);
  });

  it.each(ISSUER_ALGORITHMS)('accept %s', (algorithm) => {
    expect(algorithmsOf(issuer(`    algorithms: [${algorithm}]`))).toEqual([algorithm]);
  });

  it.each([
    ['HS256', 'shared-secret (HMAC)'],
    ['HS384', 'shared-secret (HMAC)'],
    ['HS512', 'shared-secret (HMAC)'],
    ['hs256', 'shared-secret (HMAC)'],
    ['none', 'unsigned token'],
    ['None', 'unsigned token'],
  ])('refuse %s, saying why and what to write instead', (algorithm, why) => {
    const text = issuer(`    algorithms: [ES256, ${algorithm}]`);
    const errors = errorsOf(validate({ 'a.yaml': text }));
    expect(errors.map(where)).toEqual([at('a.yaml', text, `${algorithm}]`)]);
    expect(errors[0]?.message).toContain(`trusted_issuers[0].algorithms[1] is '${algorithm}'`);
    expect(errors[0]?.message).toContain(why);
    expect(errors[0]?.message).toContain('e.g. [ES256, RS256]');
  });

  it('refuse an HMAC algorithm written without the list brackets, with the same reason', () => {
    const text = issuer('    algorithms: HS256');
    const errors = errorsOf(validate({ 'a.yaml': text }));
    expect(errors).toHaveLength(1);
    expect(errors[0]?.message).toContain('shared-secret (HMAC)');
    expect(errors[0]?.message).not.toContain('write [HS256]');
  });

  it('refuse an empty list, which no token could pass', () => {
    const errors = errorsOf(validate({ 'a.yaml': issuer('    algorithms: []') }));
    expect(errors.map((e) => e.message)).toEqual([
      'trusted_issuers[0].algorithms must not be empty; list at least one entry',
    ]);
  });

  it('are the same list in the JSON Schema as in the code, with no none or HMAC among them', () => {
    const definitions = policySchema().definitions as Record<string, { enum?: string[] }>;
    expect(definitions.issuerAlgorithm?.enum).toEqual([...ISSUER_ALGORITHMS]);
    for (const algorithm of ISSUER_ALGORITHMS) expect(algorithm).not.toMatch(/^(none|HS\d+)$/i);
    for (const algorithm of DEFAULT_ISSUER_ALGORITHMS) expect(ISSUER_ALGORITHMS).toContain(algorithm);
  });

  it('default in migration 003 to the same list, so issuers applied before it read back unchanged', () => {
    const sql = readFileSync(new URL('../../migrations/003_issuer_algorithms.sql', import.meta.url), 'utf8');
    const fallback = /default '(\[[^\]]*\])'/.exec(sql)?.[1];
    expect(JSON.parse(fallback ?? 'null')).toEqual(DEFAULT_ISSUER_ALGORITHMS);
  });
});
