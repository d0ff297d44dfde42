// Private keys at rest, for both sides: the server's signing keys (server/keys/store.ts) and the
// gateway's interception CA (gateway/ca/authority.ts). A leaf: node:crypto only, so neither side
// reaches into the other for it. With REINS_SECRET_KEY set, a private key is stored as AES-256-GCM
// ciphertext under a key derived from that secret with scrypt (a stored random salt per key, so
// the secret may be a passphrase and equal keys never give equal ciphertexts). Without it, as
// plain PKCS#8 PEM (scheme 'none'), and the caller warns the operator.
//
// Stored value for 'aes-256-gcm+scrypt:v1', base64url parts joined by '.':
//   salt . check . iv . ciphertext . tag
// `check` is further output of the same scrypt derivation: it tells "the secret is not the one
// this was encrypted with" apart from "the stored bytes were altered", so the operator learns which
// of the two to fix. It weakens nothing: the GCM tag already lets anyone holding the row test a
// guessed secret. The caller's `context` (e.g. the kid) is authenticated as associated data, so a
// ciphertext copied onto another row fails to decrypt instead of silently serving the wrong key.
import { createCipheriv, createDecipheriv, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

export const ENCRYPTION_SCHEMES = ['none', 'aes-256-gcm+scrypt:v1'] as const;
export type EncryptionScheme = (typeof ENCRYPTION_SCHEMES)[number];

export type KeyEncryptionErrorCode =
  /** The key is encrypted but no secret was given. */
  | 'secret_key_missing'
  /** The secret given is not the one the key was encrypted with. */
  | 'secret_key_mismatch'
  /** The stored value is malformed or fails its integrity check. */
  | 'private_key_corrupt'
  /** The row names a scheme this version does not know (written by a newer reins?). */
  | 'encryption_scheme_unknown';

/** Messages name the key and the fix, never key material or the secret. */
export class KeyEncryptionError extends Error {
  constructor(
    readonly code: KeyEncryptionErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'KeyEncryptionError';
  }
}

export interface StoredPrivateKey {
  readonly encryption: EncryptionScheme;
  readonly privateKey: string;
}

const SCHEME = 'aes-256-gcm+scrypt:v1';
// scrypt cost: N=2^14, r=8 (16 MiB, tens of milliseconds): paid once per key at start and at
// rotation, never per token.
const SCRYPT = { N: 2 ** 14, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const IV_BYTES = 12; // the GCM nonce size NIST SP 800-38D recommends
const CHECK_BYTES = 16;
const TAG_BYTES = 16;

function derive(secret: string, salt: Buffer): Promise<{ key: Buffer; check: Buffer }> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, 32 + CHECK_BYTES, SCRYPT, (err, out) => {
      if (err) reject(err);
      else resolve({ key: out.subarray(0, 32), check: out.subarray(32) });
    });
  });
}

/** Encrypts `pem` when `secretKey` is set (non-empty); otherwise stores it as it is. */
export async function encryptPrivateKey(
  pem: string,
  secretKey: string | undefined,
  context: string,
): Promise<StoredPrivateKey> {
  if (!secretKey) return { encryption: 'none', privateKey: pem };
  const salt = randomBytes(SALT_BYTES);
  const iv = randomBytes(IV_BYTES);
  const { key, check } = await derive(secretKey, salt);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(pem, 'utf8'), cipher.final()]);
  const parts = [salt, check, iv, ciphertext, cipher.getAuthTag()].map((b) => b.toString('base64url'));
  return { encryption: SCHEME, privateKey: parts.join('.') };
}

/**
 * The PEM of a stored private key. `label` names the key in error messages (e.g. "signing key
 * <kid>"); `context` must be the one it was encrypted with.
 */
export async function decryptPrivateKey(
  stored: { readonly encryption: string; readonly privateKey: string },
  secretKey: string | undefined,
  context: string,
  label: string,
): Promise<string> {
  if (stored.encryption === 'none') return stored.privateKey;
  if (stored.encryption !== SCHEME) {
    throw new KeyEncryptionError(
      'encryption_scheme_unknown',
      `${label} is stored with encryption scheme ${JSON.stringify(stored.encryption)}, which this version ` +
        'of reins cannot read: run the reins version that wrote it, or restore the row from a backup',
    );
  }
  if (!secretKey) {
    throw new KeyEncryptionError(
      'secret_key_missing',
      `${label} is encrypted (${SCHEME}) but REINS_SECRET_KEY is not set: ` +
        'set REINS_SECRET_KEY to the secret it was encrypted with',
    );
  }
  const parts = stored.privateKey.split('.').map((p) => Buffer.from(p, 'base64url'));
  const [salt, check, iv, ciphertext, tag] = parts;
  if (
    parts.length !== 5 ||
    salt?.length !== SALT_BYTES ||
    check?.length !== CHECK_BYTES ||
    iv?.length !== IV_BYTES ||
    tag?.length !== TAG_BYTES ||
    !ciphertext
  ) {
    throw corrupt(label);
  }
  const derived = await derive(secretKey, salt);
  if (!timingSafeEqual(derived.check, check)) {
    throw new KeyEncryptionError(
      'secret_key_mismatch',
      `REINS_SECRET_KEY is not the secret ${label} was encrypted with: ` +
        'set it back to that secret (a changed secret cannot read keys written under the old one)',
    );
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', derived.key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
  } catch {
    throw corrupt(label);
  }
}

function corrupt(label: string): KeyEncryptionError {
  return new KeyEncryptionError(
    'private_key_corrupt',
    `the stored private part of ${label} fails its integrity check (altered, truncated or copied ` +
      'from another row): restore the row from a backup',
  );
}
