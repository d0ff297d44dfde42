// Verification of users' tokens from trusted issuers (RFC 8693 subject_token): one named row per
// refusal reason with a guard that every reason has one, adversarial tokens (alg none, HS256 keyed
// with the public key, embedded keys, crit), the typ matrix, the JWKS cache, and properties.
import fc from 'fast-check';
import {
  CompactSign,
  type CryptoKey,
  createLocalJWKSet,
  exportJWK,
  exportSPKI,
  importJWK,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  IssuerKeys,
  type IssuerTrust,
  MAX_USER_TOKEN_LENGTH,
  peekIssuer,
  type SubjectTokenType,
  USER_TOKEN_FAILURES,
  type UserTokenFailureReason,
  verifyUserToken,
} from '../../../src/server/exchange/subject-token.ts';
import {
  ACCESS_TOKEN,
  AUDIENCE,
  base64url,
  claims,
  type Fixture,
  handBuilt,
  ID_TOKEN,
  ISSUER,
  JWKS_URI,
  JWT,
  JwksEndpoint,
  makeFixture,
  makeSigner,
  NOW,
  NOW_S,
  remoteTrust,
  sign,
} from './subject-token-support.ts';

let f: Fixture;
beforeAll(async () => {
  f = await makeFixture();
});

interface Presentation {
  readonly token: string;
  readonly trust?: IssuerTrust;
  readonly keys?: JWTVerifyGetKey;
  readonly tokenType?: SubjectTokenType;
}

function verify(p: Presentation) {
  return verifyUserToken(p.token, p.trust ?? f.trust, p.keys ?? f.keys, NOW, p.tokenType ?? ACCESS_TOKEN);
}

const good = () => sign(f.issuer.privateKey);
const encoder = new TextEncoder();
type Case = readonly [name: string, build: () => Promise<Presentation>];

const refusals: Record<UserTokenFailureReason, readonly Case[]> = {
  malformed: [
    ['an empty string', async () => ({ token: '' })],
    ['garbage', async () => ({ token: 'not a token at all' })],
    ['two parts', async () => ({ token: (await good()).split('.').slice(0, 2).join('.') })],
    ['five parts (a JWE)', async () => ({ token: `${await good()}.a.b` })],
    [
      'a token over the size cap',
      async () => ({ token: await sign(f.issuer.privateKey, { pad: 'x'.repeat(MAX_USER_TOKEN_LENGTH) }) }),
    ],
    ['a non-canonical spelling of the signature', async () => ({ token: respellLastChar(await good()) })],
    ['a header that is not JSON', async () => ({ token: handBuilt('{not json', claims(), 'c2ln') })],
    ['a header that is a JSON array', async () => ({ token: handBuilt(['ES256'], claims(), 'c2ln') })],
    ['a signed payload that is not JSON', async () => ({ token: await signedBytes('not json at all') })],
    [
      'a header with ok: true (never mistaken for a result)',
      async () => ({ token: handBuilt({ ok: true }, claims()) }),
    ],
  ],
  forbidden_header: [
    [
      'an attacker key embedded as jwk',
      async () => ({
        token: await sign(f.attacker.privateKey, {}, { jwk: f.attacker.publicJwk, kid: undefined }),
      }),
    ],
    [
      'jwk even when the issuer signed it',
      async () => ({ token: await sign(f.issuer.privateKey, {}, { jwk: f.issuer.publicJwk }) }),
    ],
    [
      'jku',
      async () => ({ token: await sign(f.issuer.privateKey, {}, { jku: 'https://attacker.example/jwks' }) }),
    ],
    [
      'x5u',
      async () => ({
        token: await sign(f.issuer.privateKey, {}, { x5u: 'https://attacker.example/cert.pem' }),
      }),
    ],
    ['x5c', async () => ({ token: await sign(f.issuer.privateKey, {}, { x5c: ['MIIBszCCAVmgAwIBAgIU'] }) })],
  ],
  unknown_critical_header: [
    [
      'an unknown crit extension',
      async () => ({
        token: await sign(
          f.issuer.privateKey,
          {},
          { crit: ['urn:example:ext'], 'urn:example:ext': 1 },
          { 'urn:example:ext': true },
        ),
      }),
    ],
    [
      'b64 named critical',
      async () => ({ token: await sign(f.issuer.privateKey, {}, { crit: ['b64'], b64: true }) }),
    ],
  ],
  algorithm_not_allowed: [
    ['alg none with an empty signature', async () => ({ token: handBuilt({ alg: 'none' }, claims()) })],
    [
      'alg none even when the issuer lists none',
      async () => ({
        token: handBuilt({ alg: 'none', typ: 'JWT' }, claims()),
        trust: { ...f.trust, algorithms: ['none', 'ES256'] },
      }),
    ],
    [
      'HS256 keyed with the issuer public key PEM',
      async () => ({
        token: await sign(encoder.encode(await exportSPKI(f.issuer.publicKey)), {}, { alg: 'HS256' }),
      }),
    ],
    [
      'HS256 keyed with the issuer public JWK, listed by the issuer',
      async () => ({
        token: await sign(encoder.encode(JSON.stringify(f.issuer.publicJwk)), {}, { alg: 'HS256' }),
        trust: { ...f.trust, algorithms: ['HS256', 'ES256'] },
      }),
    ],
    [
      'PS256 signed by the issuer when it lists only ES256',
      async () => ({ token: await sign(f.issuerRsa.privateKey, {}, { alg: 'PS256', kid: 'r1' }) }),
    ],
    [
      'an issuer with an empty list',
      async () => ({ token: await good(), trust: { ...f.trust, algorithms: [] } }),
    ],
  ],
  wrong_type: [
    [
      'a DPoP proof (dpop+jwt)',
      async () => ({ token: await sign(f.issuer.privateKey, {}, { typ: 'dpop+jwt' }) }),
    ],
    [
      'a logout token (application/logout+jwt)',
      async () => ({ token: await sign(f.issuer.privateKey, {}, { typ: 'application/logout+jwt' }) }),
    ],
    [
      'a security event (secevent+jwt)',
      async () => ({ token: await sign(f.issuer.privateKey, {}, { typ: 'secevent+jwt' }) }),
    ],
    [
      'an introspection response',
      async () => ({ token: await sign(f.issuer.privateKey, {}, { typ: 'token-introspection+jwt' }) }),
    ],
    ['an access token presented as an id_token', async () => ({ token: await good(), tokenType: ID_TOKEN })],
    ['a typ that is not a string', async () => ({ token: await sign(f.issuer.privateKey, {}, { typ: 42 }) })],
  ],
  bad_signature: [
    [
      'signed by an untrusted key with the issuer kid',
      async () => ({ token: await sign(f.attacker.privateKey) }),
    ],
    [
      'signed by an untrusted key with an unknown kid',
      async () => ({ token: await sign(f.attacker.privateKey, {}, { kid: 'k9' }) }),
    ],
    [
      'signed by an untrusted key with no kid',
      async () => ({ token: await sign(f.attacker.privateKey, {}, { kid: undefined }) }),
    ],
    ['claims swapped under a genuine signature', async () => ({ token: await swappedPayload() })],
    ['an empty signature under ES256', async () => ({ token: (await good()).replace(/[^.]+$/, '') })],
  ],
  expired: [
    ['exp past the leeway', async () => ({ token: await sign(f.issuer.privateKey, { exp: NOW_S - 31 }) })],
  ],
  not_yet_valid: [
    ['nbf beyond the leeway', async () => ({ token: await sign(f.issuer.privateKey, { nbf: NOW_S + 31 }) })],
    ['iat beyond the leeway', async () => ({ token: await sign(f.issuer.privateKey, { iat: NOW_S + 31 }) })],
  ],
  wrong_issuer: [
    [
      'another issuer',
      async () => ({ token: await sign(f.issuer.privateKey, { iss: 'https://evil.example' }) }),
    ],
    [
      'the issuer with a trailing slash',
      async () => ({ token: await sign(f.issuer.privateKey, { iss: `${ISSUER}/` }) }),
    ],
  ],
  wrong_audience: [
    ['another audience', async () => ({ token: await sign(f.issuer.privateKey, { aud: 'other-app' }) })],
    [
      'a list without an accepted audience',
      async () => ({ token: await sign(f.issuer.privateKey, { aud: ['a', 'b'] }) }),
    ],
    [
      'no audience when one is required',
      async () => ({ token: await sign(f.issuer.privateKey, { aud: undefined }) }),
    ],
  ],
  missing_claim: [
    ['no exp', async () => ({ token: await sign(f.issuer.privateKey, { exp: undefined }) })],
    ['no sub', async () => ({ token: await sign(f.issuer.privateKey, { sub: undefined }) })],
    ['no iss', async () => ({ token: await sign(f.issuer.privateKey, { iss: undefined }) })],
  ],
  invalid_claim: [
    ['an empty sub', async () => ({ token: await sign(f.issuer.privateKey, { sub: '' }) })],
    ['a numeric sub', async () => ({ token: await sign(f.issuer.privateKey, { sub: 42 }) })],
    [
      'an exp that is a string',
      async () => ({ token: await sign(f.issuer.privateKey, { exp: 'tomorrow' }) }),
    ],
  ],
  keys_unavailable: [
    ['an unreachable jwks_uri', async () => remote('unreachable')],
    ['a jwks_uri answering 500', async () => remote(500)],
    [
      'a jwks_uri that is not http(s)',
      async () => ({
        token: await good(),
        trust: remoteTrust(f.trust, 'file:///etc/jwks.json'),
        keys: new IssuerKeys().keysFor(remoteTrust(f.trust, 'file:///etc/jwks.json')),
      }),
    ],
    [
      'an inline JWKS that is not a key set',
      async () => ({
        token: await good(),
        keys: new IssuerKeys().keysFor({ ...f.trust, jwks: { keys: ['not a key' as unknown as object] } }),
      }),
    ],
    [
      'an inline key that cannot be imported',
      async () => ({
        token: await good(),
        keys: new IssuerKeys().keysFor({
          ...f.trust,
          jwks: { keys: [{ ...f.issuer.publicJwk, x: 'AAAA' }] },
        }),
      }),
    ],
  ],
};

describe('verifyUserToken refusals', () => {
  for (const [reason, cases] of Object.entries(refusals)) {
    for (const [name, build] of cases) {
      it(`refuses ${name} as ${reason}`, async () => {
        const result = await verify(await build());
        expect(result).toMatchObject({ ok: false, reason });
      });
    }
  }

  it('has a row for every failure reason', () => {
    for (const reason of USER_TOKEN_FAILURES) expect(refusals[reason].length).toBeGreaterThan(0);
  });

  it('never echoes the token in its detail', async () => {
    const token = await sign(f.attacker.privateKey, { sub: 'sentinel-subject' }, { typ: 'sentinel+jwt' });
    for (const tokenType of [ACCESS_TOKEN, JWT, ID_TOKEN] as const) {
      const result = await verify({ token, tokenType });
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.detail).not.toMatch(/sentinel|eyJ/);
    }
  });
});

describe('verifyUserToken acceptance', () => {
  it('verifies a good token and yields its claims and header', async () => {
    const result = await verify({ token: await good() });
    expect(result).toEqual({
      ok: true,
      claims: claims(),
      header: { alg: 'ES256', kid: 'k1', typ: 'at+jwt' },
    });
  });

  it('accepts exp, nbf and iat within the 30 s leeway', async () => {
    const token = await sign(f.issuer.privateKey, { exp: NOW_S - 29, nbf: NOW_S + 29, iat: NOW_S + 29 });
    expect((await verify({ token })).ok).toBe(true);
  });

  it('accepts an aud list holding an accepted audience, and any audience when none is configured', async () => {
    expect((await verify({ token: await sign(f.issuer.privateKey, { aud: ['x', AUDIENCE] }) })).ok).toBe(
      true,
    );
    const anyAudience = { ...f.trust, audience: [] };
    const token = await sign(f.issuer.privateKey, { aud: 'whatever' });
    expect((await verify({ token, trust: anyAudience })).ok).toBe(true);
  });

  it('ignores x5t and x5t#S256 thumbprints (Entra ID sets x5t on every token)', async () => {
    const token = await sign(f.issuer.privateKey, {}, { x5t: 'aGFzaA', 'x5t#S256': 'aGFzaA' });
    expect((await verify({ token })).ok).toBe(true);
  });

  it('accepts RS256 and PS256 from the issuer RSA key when the issuer lists them', async () => {
    const trust = { ...f.trust, algorithms: ['ES256', 'RS256', 'PS256'] };
    const { alg: _, ...privateJwk } = await exportJWK(f.issuerRsa.privateKey);
    for (const alg of ['RS256', 'PS256']) {
      const token = await sign((await importJWK(privateJwk, alg)) as CryptoKey, {}, { alg, kid: 'r1' });
      expect((await verify({ token, trust })).ok).toBe(true);
    }
  });

  it('tries each of the issuer keys when the token has no kid and several keys fit', async () => {
    const second = await makeSigner('ES256', 'k2');
    const trust = { ...f.trust, jwks: { keys: [second.publicJwk, f.issuer.publicJwk] } };
    const keys = new IssuerKeys().keysFor(trust);
    const token = await sign(f.issuer.privateKey, {}, { kid: undefined });
    expect((await verify({ token, trust, keys })).ok).toBe(true);
    const forged = await sign(f.attacker.privateKey, {}, { kid: undefined });
    expect(await verify({ token: forged, trust, keys })).toMatchObject({
      ok: false,
      reason: 'bad_signature',
    });
  });
});

describe('typ per subject token type', () => {
  const accepted: Record<SubjectTokenType, readonly (string | undefined)[]> = {
    [ACCESS_TOKEN]: ['at+jwt', 'application/at+jwt', 'AT+JWT', 'JWT', 'application/jwt', undefined],
    [JWT]: ['at+jwt', 'Application/AT+JWT', 'JWT', 'jwt', undefined],
    [ID_TOKEN]: ['JWT', 'application/JWT', undefined],
  };
  const refused: Record<SubjectTokenType, readonly string[]> = {
    [ACCESS_TOKEN]: [
      'dpop+jwt',
      'logout+jwt',
      'oauth-authz-req+jwt',
      'client-authentication+jwt',
      'jwt+at',
      'text/jwt',
    ],
    [JWT]: ['dpop+jwt', 'secevent+jwt', 'application/token-introspection+jwt', ''],
    [ID_TOKEN]: ['at+jwt', 'application/at+jwt', 'logout+jwt', 'dpop+jwt'],
  };
  for (const [tokenType, typs] of Object.entries(accepted) as [SubjectTokenType, (string | undefined)[]][]) {
    it(`accepts ${typs.map((t) => t ?? '(none)').join(', ')} as ${tokenType}`, async () => {
      for (const typ of typs) {
        const token = await sign(f.issuer.privateKey, {}, { typ });
        expect(await verify({ token, tokenType }), String(typ)).toMatchObject({ ok: true });
      }
    });
  }
  for (const [tokenType, typs] of Object.entries(refused) as [SubjectTokenType, string[]][]) {
    it(`refuses ${typs.join(', ')} as ${tokenType}`, async () => {
      for (const typ of typs) {
        const token = await sign(f.issuer.privateKey, {}, { typ });
        expect(await verify({ token, tokenType }), typ).toMatchObject({ ok: false, reason: 'wrong_type' });
      }
    });
  }
});

describe('crit', () => {
  it('is refused by jose itself for an unknown extension, so the check here is a second lock', async () => {
    const token = await sign(
      f.issuer.privateKey,
      {},
      { crit: ['urn:example:ext'], 'urn:example:ext': 1 },
      { 'urn:example:ext': true },
    );
    const jwks = createLocalJWKSet({ keys: [f.issuer.publicJwk] });
    await expect(jwtVerify(token, jwks)).rejects.toMatchObject({ code: 'ERR_JOSE_NOT_SUPPORTED' });
  });
});

describe('peekIssuer', () => {
  it('reads the unverified iss of a compact JWS', async () => {
    expect(peekIssuer(await sign(f.attacker.privateKey))).toBe(ISSUER);
  });

  it('answers undefined for garbage, a JWE, a non-string iss and an oversize token', async () => {
    expect(peekIssuer('garbage')).toBeUndefined();
    expect(peekIssuer(`${await good()}.a.b`)).toBeUndefined();
    expect(peekIssuer(handBuilt({ alg: 'ES256' }, { iss: 7 }))).toBeUndefined();
    expect(
      peekIssuer(handBuilt({ alg: 'ES256' }, { iss: ISSUER, pad: 'x'.repeat(MAX_USER_TOKEN_LENGTH) })),
    ).toBeUndefined();
  });
});

describe('IssuerKeys with a jwks_uri', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fetches the keys once and caches them across verifications', async () => {
    const endpoint = new JwksEndpoint([f.issuer.publicJwk]);
    const keys = new IssuerKeys({ fetch: endpoint.fetch });
    const trust = remoteTrust(f.trust);
    for (let i = 0; i < 3; i++) {
      const token = await good();
      expect((await verify({ token, trust, keys: keys.keysFor({ ...trust }) })).ok).toBe(true);
    }
    expect(endpoint.calls).toBe(1);
  });

  it('refetches on an unknown kid at most once per cooldown', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW);
    const endpoint = new JwksEndpoint([f.issuer.publicJwk]);
    const trust = remoteTrust(f.trust);
    const keys = new IssuerKeys({ fetch: endpoint.fetch, cooldownMs: 30_000 }).keysFor(trust);
    expect((await verify({ token: await good(), trust, keys })).ok).toBe(true);

    // The issuer rotates in k2; within the cooldown its tokens are refused without a fetch.
    const rotated = await makeSigner('ES256', 'k2');
    endpoint.jwks = { keys: [f.issuer.publicJwk, rotated.publicJwk] };
    const k2Token = await sign(rotated.privateKey, {}, { kid: 'k2' });
    expect(await verify({ token: k2Token, trust, keys })).toMatchObject({
      ok: false,
      reason: 'bad_signature',
    });
    expect(endpoint.calls).toBe(1);

    vi.setSystemTime(NOW.getTime() + 31_000);
    expect((await verify({ token: k2Token, trust, keys })).ok).toBe(true);
    expect(endpoint.calls).toBe(2);

    // Made-up kids: a burst within one cooldown, then another after it, cost one fetch each.
    const madeUp = (i: number) => sign(f.attacker.privateKey, {}, { kid: `x${i}` });
    for (let i = 0; i < 5; i++)
      expect((await verify({ token: await madeUp(i), trust, keys })).ok).toBe(false);
    expect(endpoint.calls).toBe(2);
    vi.setSystemTime(NOW.getTime() + 62_000);
    for (let i = 0; i < 5; i++)
      expect((await verify({ token: await madeUp(i), trust, keys })).ok).toBe(false);
    expect(endpoint.calls).toBe(3);
  });

  it('refetches keys older than the cache max age', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW);
    const endpoint = new JwksEndpoint([f.issuer.publicJwk]);
    const trust = remoteTrust(f.trust);
    const keys = new IssuerKeys({ fetch: endpoint.fetch, cacheMaxAgeMs: 600_000 }).keysFor(trust);
    await verify({ token: await good(), trust, keys });
    vi.setSystemTime(NOW.getTime() + 601_000);
    await verify({ token: await good(), trust, keys });
    expect(endpoint.calls).toBe(2);
  });

  it('fetches nothing for a token its header already refuses', async () => {
    const endpoint = new JwksEndpoint([f.issuer.publicJwk]);
    const trust = remoteTrust(f.trust);
    const keys = new IssuerKeys({ fetch: endpoint.fetch }).keysFor(trust);
    await verify({ token: handBuilt({ alg: 'none' }, claims()), trust, keys });
    await verify({ token: await sign(f.issuer.privateKey, {}, { jku: JWKS_URI }), trust, keys });
    expect(endpoint.calls).toBe(0);
  });

  it('answers keys_unavailable, without throwing, when the JWKS does not answer in time', async () => {
    const endpoint = new JwksEndpoint([f.issuer.publicJwk]);
    endpoint.answer = 'hang';
    const trust = remoteTrust(f.trust);
    const keys = new IssuerKeys({ fetch: endpoint.fetch, timeoutMs: 50 }).keysFor(trust);
    expect(await verify({ token: await good(), trust, keys })).toMatchObject({
      ok: false,
      reason: 'keys_unavailable',
    });
  });

  it('answers keys_unavailable when nothing listens at the jwks_uri (real fetch, loopback)', async () => {
    const trust = remoteTrust(f.trust, 'http://127.0.0.1:1/jwks');
    const keys = new IssuerKeys({ timeoutMs: 2_000 }).keysFor(trust);
    expect(await verify({ token: await good(), trust, keys })).toMatchObject({
      ok: false,
      reason: 'keys_unavailable',
    });
  });
});

describe('properties', () => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.';

  it('never throws and never accepts arbitrary strings', async () => {
    const tokens = fc.oneof(
      fc.string({ maxLength: 400 }),
      fc.array(fc.constantFrom(...alphabet), { maxLength: 400 }).map((chars) => chars.join('')),
      fc
        .tuple(fc.jsonValue(), fc.jsonValue(), fc.string({ maxLength: 20 }))
        .map(([h, p, s]) => `${base64url(h)}.${base64url(p)}.${base64url(s)}`),
      fc
        .tuple(fc.constantFrom('ES256', 'none', 'HS256', 'PS256'), fc.jsonValue())
        .map(([alg, p]) => handBuilt({ alg, kid: 'k1' }, p)),
    );
    await fc.assert(
      fc.asyncProperty(tokens, async (token) => {
        expect((await verify({ token })).ok).toBe(false);
        peekIssuer(token);
      }),
      { numRuns: 400 },
    );
  });

  it('never accepts a good token with one character changed', async () => {
    const token = await good();
    const mutation = fc
      .tuple(fc.nat({ max: token.length - 1 }), fc.constantFrom(...alphabet))
      .filter(([at, c]) => token[at] !== c);
    await fc.assert(
      fc.asyncProperty(mutation, async ([at, c]) => {
        const mutated = token.slice(0, at) + c + token.slice(at + 1);
        expect((await verify({ token: mutated })).ok).toBe(false);
      }),
      { numRuns: 400 },
    );
  });
});

/** The last signature character changed in its unused low bits: the same bytes, another spelling. */
function respellLastChar(token: string): string {
  const last = token.at(-1) ?? 'A';
  const index = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(last);
  const respelled = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[index ^ 1] ?? 'A';
  return token.slice(0, -1) + respelled;
}

/** A JWS over arbitrary bytes, signed by the issuer (a valid signature over a non-JWT payload). */
function signedBytes(payload: string): Promise<string> {
  return new CompactSign(encoder.encode(payload))
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .sign(f.issuer.privateKey);
}

/** The header and signature of a genuine token around the payload of another. */
async function swappedPayload(): Promise<string> {
  const [header, , signature] = (await good()).split('.');
  const [, payload] = (await sign(f.issuer.privateKey, { sub: 'mallory@acme.example' })).split('.');
  return `${header}.${payload}.${signature}`;
}

async function remote(answer: JwksEndpoint['answer']): Promise<Presentation> {
  const endpoint = new JwksEndpoint([f.issuer.publicJwk]);
  endpoint.answer = answer;
  const trust = remoteTrust(f.trust);
  return { token: await good(), trust, keys: new IssuerKeys({ fetch: endpoint.fetch }).keysFor(trust) };
}
