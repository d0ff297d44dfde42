// The interception CA's own failures. Reading a stored private key fails with the signing keys'
// KeyEncryptionError (src/secrets/encryption.ts) instead: same scheme, same fixes.

export type InterceptionCaErrorCode =
  /** No CA is stored yet: the gateway creates one at first start, `reins ca rotate` ahead of it. */
  | 'ca_missing'
  /** The active CA is past its notAfter: it can sign nothing any client accepts. */
  | 'ca_expired'
  /** The stored private key does not belong to the stored certificate (a hand-edited row). */
  | 'ca_key_mismatch'
  /** A leaf was asked for a host that is neither a DNS name nor an IP address. */
  | 'invalid_host';

/** Messages name the CA (its id) and the fix, never key material or the secret. */
export class InterceptionCaError extends Error {
  constructor(
    readonly code: InterceptionCaErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'InterceptionCaError';
  }
}
