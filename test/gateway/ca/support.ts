// Helpers the interception CA tests share.
import { X509Certificate } from 'node:crypto';

/** The certificates of a PEM bundle, in order; each parsed by Node's own X.509 parser. */
export function splitBundle(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? []).map(
    (block) => new X509Certificate(block),
  );
}
