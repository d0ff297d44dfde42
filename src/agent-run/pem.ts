// PEM certificates in a text: each block found and parsed, so that a bundle with a damaged
// certificate is refused where it is read, not by a TLS client later with a vaguer message.
import { X509Certificate } from 'node:crypto';
import { AgentRunError } from './errors.ts';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export interface PemCertificate {
  readonly pem: string;
  readonly certificate: X509Certificate;
}

/** The certificates in `text` (from `source`, for the message); `ca_invalid` when none or one is unreadable. */
export function certificatesIn(text: string, source: string): PemCertificate[] {
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  const certificates = blocks.map((pem) => {
    try {
      return { pem, certificate: new X509Certificate(pem) };
    } catch {
      throw new AgentRunError('ca_invalid', `the CA ${source} holds a certificate that cannot be read`);
    }
  });
  if (certificates.length === 0) {
    throw new AgentRunError(
      'ca_invalid',
      `the CA ${source} holds no PEM certificate (reins ca export prints one)`,
    );
  }
  return certificates;
}

/** The PEM blocks of `text`, unchecked (the caller's own bundles, passed on as they are). */
export function pemBlocks(text: string): string[] {
  return text.match(PEM_CERTIFICATE) ?? [];
}
