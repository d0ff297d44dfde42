// @peculiar/x509 builds the certificates (no hand-written ASN.1), on Node's own WebCrypto. Its
// dependency injection (tsyringe) needs the Reflect metadata API, which Node does not provide:
// the polyfill must be evaluated before the library, so every module here imports the library
// through this file and never directly.
import 'reflect-metadata';

export * from '@peculiar/x509';

/** ECDSA P-256 (FIPS 186-5): keys generate in about a millisecond, so a leaf per host is cheap. */
export const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
/** ecdsa-with-SHA256 (RFC 5758 §3.2) for every signature the CA makes. */
export const EC_SIGNATURE = { name: 'ECDSA', hash: 'SHA-256' } as const;

/**
 * A serial number: 16 random bytes (RFC 5280 §4.1.2.2 allows 20; CA/Browser Forum asks for at
 * least 64 random bits), the top bit clear so the INTEGER is positive and the next bit set so its
 * DER encoding needs no leading zero: 126 random bits.
 */
export function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x3f) | 0x40;
  return Buffer.from(bytes).toString('hex');
}
