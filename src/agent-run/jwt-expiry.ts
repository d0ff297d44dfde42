// A JWT's `exp`, read without verifying the signature: the agent cannot verify its own access
// token (the gateway does), and only needs to know when to replace it. PURE.
import { decodeJwt } from 'jose';

/** A JWS compact serialization; anything else is not a token the gateway would take. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** `exp` in milliseconds since the epoch, or undefined when `token` is no JWT with an `exp`. */
export function jwtExpiry(token: string): number | undefined {
  if (!COMPACT_JWS.test(token)) return undefined;
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
