// private_key_jwt (RFC 7523 §2.2, RFC 7521 §5.2): the agent proves itself with a short-lived
// JWT signed by its own private key; the server knows only the public half (the policy's
// `jwks`). The key file is read once; the key never leaves this module.
import { createPrivateKey, type KeyObject, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SignJWT } from 'jose';
import { AgentRunError } from './errors.ts';

/** RFC 7523 asks for a short `exp`; the server accepts each assertion once anyway. */
const ASSERTION_LIFETIME_SECONDS = 60;

/** The JWS algorithm each key type signs with (the server accepts these for assertions). */
export function algorithmFor(key: KeyObject): string | undefined {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return (
        { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' } as Record<string, string | undefined>
      )[key.asymmetricKeyDetails?.namedCurve ?? ''];
    case 'ed25519':
      return 'EdDSA';
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    default:
      return undefined;
  }
}

export interface AssertionSigner {
  readonly alg: string;
  /** A new assertion for `audience` (the token endpoint), with a fresh `jti`. */
  sign(audience: string): Promise<string>;
}

/** Reads a PEM private key (PKCS#8; PKCS#1 and SEC1 are read too) and signs for `clientId`. */
export async function loadAssertionSigner(
  file: string,
  clientId: string,
  kid: string | undefined,
): Promise<AssertionSigner> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new AgentRunError('key_unreadable', `cannot read the key ${file}: ${String(code ?? err)}`);
  }
  // PKCS#8 `ENCRYPTED PRIVATE KEY`, or a legacy PEM with `Proc-Type: 4,ENCRYPTED`.
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: *4, *ENCRYPTED/.test(pem)) {
    throw new AgentRunError(
      'key_unsupported',
      `cannot use the key ${file}: it is encrypted; give an unencrypted PKCS#8 PEM (openssl pkcs8 -topk8 -nocrypt)`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new AgentRunError(
      'key_unsupported',
      `cannot use the key ${file}: it is not a PEM private key (PKCS#8: -----BEGIN PRIVATE KEY-----)`,
    );
  }
  const alg = algorithmFor(key);
  if (alg === undefined) {
    throw new AgentRunError(
      'key_unsupported',
      `cannot use the key ${file}: use a P-256, P-384, P-521, Ed25519 or RSA key`,
    );
  }
  return {
    alg,
    sign: (audience) =>
      new SignJWT({})
        .setProtectedHeader(kid === undefined ? { alg } : { alg, kid })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(audience)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime(`${ASSERTION_LIFETIME_SECONDS}s`)
        .sign(key),
  };
}
