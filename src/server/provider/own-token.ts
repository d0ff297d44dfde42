// Verification of reins' own access tokens (introspection, revocation, token exchange chains):
// signature by one of our published keys, `typ: at+jwt`, our issuer. Expiry is left to the
// caller, which answers an expired token differently from a forged one. Never throws.
import { createLocalJWKSet, type JWK, type JWTPayload, jwtVerify } from 'jose';

export type OwnTokenVerifier = (token: string, now: Date) => Promise<JWTPayload | undefined>;

/** Only the algorithms reins signs with (keys/): never `none`, never HMAC. */
const OWN_ALGORITHMS = ['ES256', 'EdDSA'];

export function ownTokenVerifier(issuer: string, keys: readonly JWK[]): OwnTokenVerifier {
  const jwks = createLocalJWKSet({ keys: keys.map(publicPart) });
  return async (token, now) => {
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer,
        typ: 'at+jwt',
        algorithms: OWN_ALGORITHMS,
        currentDate: now,
        // Expired tokens still verify here, so callers can say `expired` rather than `malformed`.
        clockTolerance: Number.MAX_SAFE_INTEGER,
      });
      return payload;
    } catch {
      return undefined;
    }
  };
}

function publicPart(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...rest } = jwk;
  return rest;
}
