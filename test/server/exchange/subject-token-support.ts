// A trusted issuer, an attacker, and the tokens they sign for the subject-token tests; and a
// fake JWKS endpoint (a fetch function that serves a key set and counts its calls).
import {
  type CryptoKey,
  exportJWK,
  type FetchImplementation,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  SignJWT,
} from 'jose';
import { IssuerKeys, type IssuerTrust } from '../../../src/server/exchange/subject-token.ts';

export const NOW = new Date('2026-01-01T00:00:00Z');
export const NOW_S = NOW.getTime() / 1000;
export const ISSUER = 'https://login.acme.example';
export const AUDIENCE = 'support-portal';
export const JWKS_URI = 'https://login.acme.example/jwks';

export const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';

/** A signing key and its public JWK (with `kid` and `alg`, as an issuer publishes it). */
export interface Signer {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function makeSigner(alg: string, kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, publicKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg } };
}

export function withoutAlg(jwk: JWK): JWK {
  const { alg: _, ...rest } = jwk;
  return rest;
}

export interface Fixture {
  /** The trusted issuer's ES256 key, kid `k1`. */
  readonly issuer: Signer;
  /** The issuer's RSA key (kid `r1`), published too, for algorithm tests. */
  readonly issuerRsa: Signer;
  /** A key nobody trusts, kid `k1` as well (an attacker copies the issuer's kid). */
  readonly attacker: Signer;
  /** Inline JWKS trust in the issuer: ES256 only. */
  readonly trust: IssuerTrust;
  readonly keys: JWTVerifyGetKey;
}

export async function makeFixture(): Promise<Fixture> {
  const issuer = await makeSigner('ES256', 'k1');
  const issuerRsa = await makeSigner('PS256', 'r1');
  const attacker = await makeSigner('ES256', 'k1');
  const trust: IssuerTrust = {
    issuer: ISSUER,
    // The RSA key without `alg`, as many issuers publish theirs: it may verify RS* and PS* alike.
    jwks: { keys: [issuer.publicJwk, withoutAlg(issuerRsa.publicJwk)] },
    jwksUri: null,
    audience: [AUDIENCE],
    algorithms: ['ES256'],
  };
  return { issuer, issuerRsa, attacker, trust, keys: new IssuerKeys().keysFor(trust) };
}

/** The claims of a good user token at NOW; a key set to undefined is left out. */
export function claims(overrides: Record<string, unknown> = {}): JWTPayload {
  return {
    iss: ISSUER,
    sub: 'alice@acme.example',
    aud: AUDIENCE,
    iat: NOW_S - 60,
    exp: NOW_S + 300,
    groups: ['finance'],
    ...overrides,
  };
}

/** Signs `claims()` with overrides, header `{ alg: ES256, kid: k1, typ: at+jwt }` with overrides. */
export function sign(
  key: CryptoKey | Uint8Array,
  claimOverrides: Record<string, unknown> = {},
  headerOverrides: Record<string, unknown> = {},
  crit?: Record<string, boolean>,
): Promise<string> {
  const header = { alg: 'ES256', kid: 'k1', typ: 'at+jwt', ...headerOverrides };
  const protectedHeader = Object.fromEntries(Object.entries(header).filter(([, v]) => v !== undefined));
  return new SignJWT(claims(claimOverrides))
    .setProtectedHeader(protectedHeader as { alg: string })
    .sign(key, crit ? { crit } : undefined);
}

export function base64url(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return Buffer.from(text, 'utf8').toString('base64url');
}

/** A hand-built token: header and payload as given, and the signature part as given (default empty). */
export function handBuilt(header: unknown, payload: unknown, signature = ''): string {
  return `${base64url(header)}.${base64url(payload)}.${signature}`;
}

/** A fake JWKS endpoint: serves `jwks` (or fails as told) and counts fetches. */
export class JwksEndpoint {
  calls = 0;
  jwks: { keys: JWK[] };
  /** 200 serves `jwks`; another status answers with it; 'unreachable' rejects as Node's fetch does. */
  answer: number | 'unreachable' | 'hang' = 200;

  constructor(keys: JWK[]) {
    this.jwks = { keys };
  }

  readonly fetch: FetchImplementation = async (_url, init) => {
    this.calls += 1;
    if (this.answer === 'unreachable') throw new TypeError('fetch failed');
    if (this.answer === 'hang') {
      return new Promise((_, reject) => {
        init.signal.addEventListener('abort', () => reject(init.signal.reason));
      });
    }
    return new Response(JSON.stringify(this.jwks), {
      status: this.answer,
      headers: { 'content-type': 'application/jwk-set+json' },
    });
  };
}

/** Trust in the fixture's issuer through a jwks_uri instead of inline keys. */
export function remoteTrust(trust: IssuerTrust, jwksUri = JWKS_URI): IssuerTrust {
  return { ...trust, jwks: null, jwksUri };
}
