// Private keys at rest: encrypted under REINS_SECRET_KEY when it is set, and every way reading
// one back can fail named by a code and a message that says what to fix.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decryptPrivateKey,
  encryptPrivateKey,
  KeyEncryptionError,
  type KeyEncryptionErrorCode,
} from '../../src/secrets/encryption.ts';

const PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .privateKey.export({ format: 'pem', type: 'pkcs8' })
  .toString();
const SECRET = 'correct horse battery staple';
const CONTEXT = 'signing_keys:kid-1';

async function failure(promise: Promise<unknown>): Promise<KeyEncryptionError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KeyEncryptionError);
  return err as KeyEncryptionError;
}

function expectCode(err: KeyEncryptionError, code: KeyEncryptionErrorCode): void {
  expect(err.code).toBe(code);
  // Never the key material or the secret in a message an operator will paste somewhere.
  expect(err.message).not.toContain('PRIVATE KEY');
  expect(err.message).not.toContain(SECRET);
}

describe('private keys at rest', () => {
  it('round-trips a key under a secret, and the stored text does not contain the PEM', async () => {
    const stored = await encryptPrivateKey(PEM, SECRET, CONTEXT);
    expect(stored.encryption).toBe('aes-256-gcm+scrypt:v1');
    expect(stored.privateKey).not.toContain('PRIVATE KEY');
    expect(stored.privateKey).not.toContain(PEM.split('\n')[1]);
    expect(await decryptPrivateKey(stored, SECRET, CONTEXT, 'signing key kid-1')).toBe(PEM);
  });

  it('encrypts the same key differently every time (fresh salt and nonce)', async () => {
    const a = await encryptPrivateKey(PEM, SECRET, CONTEXT);
    const b = await encryptPrivateKey(PEM, SECRET, CONTEXT);
    expect(a.privateKey).not.toBe(b.privateKey);
  });

  it('stores the PEM as it is, scheme none, when no secret is set', async () => {
    for (const secret of [undefined, '']) {
      const stored = await encryptPrivateKey(PEM, secret, CONTEXT);
      expect(stored).toEqual({ encryption: 'none', privateKey: PEM });
      expect(await decryptPrivateKey(stored, undefined, CONTEXT, 'k')).toBe(PEM);
    }
  });

  it('detects an altered ciphertext', async () => {
    const stored = await encryptPrivateKey(PEM, SECRET, CONTEXT);
    const parts = stored.privateKey.split('.');
    const ciphertext = Buffer.from(parts[3] as string, 'base64url');
    ciphertext[0] = (ciphertext[0] as number) ^ 1;
    parts[3] = ciphertext.toString('base64url');
    const tampered = { ...stored, privateKey: parts.join('.') };
    const err = await failure(decryptPrivateKey(tampered, SECRET, CONTEXT, 'signing key kid-1'));
    expectCode(err, 'private_key_corrupt');
    expect(err.message).toContain('signing key kid-1');
  });

  it('detects a ciphertext moved onto another row', async () => {
    const stored = await encryptPrivateKey(PEM, SECRET, CONTEXT);
    const err = await failure(decryptPrivateKey(stored, SECRET, 'signing_keys:kid-2', 'signing key kid-2'));
    expectCode(err, 'private_key_corrupt');
  });

  it('detects a truncated value', async () => {
    const stored = await encryptPrivateKey(PEM, SECRET, CONTEXT);
    const truncated = { ...stored, privateKey: stored.privateKey.split('.').slice(0, 3).join('.') };
    expectCode(await failure(decryptPrivateKey(truncated, SECRET, CONTEXT, 'k')), 'private_key_corrupt');
  });

  it('tells a wrong secret apart from damage and says to restore the secret', async () => {
    const stored = await encryptPrivateKey(PEM, SECRET, CONTEXT);
    const err = await failure(decryptPrivateKey(stored, 'another secret', CONTEXT, 'signing key kid-1'));
    expectCode(err, 'secret_key_mismatch');
    expect(err.message).toMatch(/REINS_SECRET_KEY is not the secret signing key kid-1 was encrypted with/);
  });

  it('says to set REINS_SECRET_KEY when an encrypted key is read without it', async () => {
    const stored = await encryptPrivateKey(PEM, SECRET, CONTEXT);
    const err = await failure(decryptPrivateKey(stored, undefined, CONTEXT, 'signing key kid-1'));
    expectCode(err, 'secret_key_missing');
    expect(err.message).toContain('REINS_SECRET_KEY is not set');
  });

  it('refuses a scheme it does not know', async () => {
    const stored = { encryption: 'rot13:v9', privateKey: 'x' };
    expectCode(await failure(decryptPrivateKey(stored, SECRET, CONTEXT, 'k')), 'encryption_scheme_unknown');
  });
});
