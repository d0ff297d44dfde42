// The interception CA bundle from the issuer: the URI its RFC 8414 metadata names
// (`reins_interception_ca_uri`), else `<issuer>/ca.pem`, fetched as the token is, over the same
// channel. So whoever can answer for the issuer can also hand the agent a CA: over plain HTTP off
// the machine that is anyone on the path (plainHttpOffLoopback says when to warn), which is why
// docs/interception-ca.md recommends an https:// issuer.

import { AgentRunError } from './errors.ts';
import { ISSUER_TIMEOUT_MS, issuerMetadata, printable, readJson, send, trimSlash } from './issuer-http.ts';
import { certificatesIn } from './pem.ts';

/** The discovery member (src/runtime/ca-route.ts publishes it; a test checks the two agree). */
export const CA_URI_MEMBER = 'reins_interception_ca_uri';
/** Where a reins issuer serves the bundle when its metadata does not say. */
export const DEFAULT_CA_PATH = '/ca.pem';
/** A bundle is a few certificates; anything much larger is not one. */
const MAX_BUNDLE_BYTES = 256 * 1024;

export interface FetchedCa {
  /** Where it came from. */
  readonly url: string;
  /** The certificates, PEM, one after the other. */
  readonly pem: string;
  readonly count: number;
}

/** Fetches and checks the bundle: at least one certificate, every one of them a CA. */
export async function fetchInterceptionCa(issuer: string, timeoutMs = ISSUER_TIMEOUT_MS): Promise<FetchedCa> {
  const metadata = await issuerMetadata(issuer, timeoutMs);
  const named = metadata?.[CA_URI_MEMBER];
  const uri = typeof named === 'string' ? named : `${trimSlash(issuer)}${DEFAULT_CA_PATH}`;
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new AgentRunError('ca_invalid', `the issuer's ${CA_URI_MEMBER} ${printable(uri)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new AgentRunError('ca_invalid', `the issuer's ${CA_URI_MEMBER} ${printable(uri)} is not http(s)`);
  }
  const response = await send(
    url,
    { method: 'GET', headers: { accept: 'application/x-pem-file, */*;q=0.1' } },
    timeoutMs,
  );
  if (response.status !== 200) {
    const body = await readJson(response);
    const description =
      typeof body?.error_description === 'string' ? `: ${printable(body.error_description)}` : '';
    throw new AgentRunError(
      'ca_unavailable',
      `${url.href} answered ${response.status}${description || ' (no interception CA there)'}`,
    );
  }
  const length = Number(response.headers.get('content-length') ?? 0);
  const text = length > MAX_BUNDLE_BYTES ? '' : await response.text();
  if (text.length > MAX_BUNDLE_BYTES || length > MAX_BUNDLE_BYTES) {
    throw new AgentRunError(
      'ca_invalid',
      `${url.href} answered more than ${MAX_BUNDLE_BYTES} bytes: not a CA bundle`,
    );
  }
  const certificates = certificatesIn(text, url.href);
  const notCa = certificates.find((c) => !c.certificate.ca);
  if (notCa !== undefined) {
    throw new AgentRunError(
      'ca_invalid',
      `${url.href} holds a certificate that is not a CA (${notCa.certificate.subject.replaceAll('\n', ', ')})`,
    );
  }
  return { url: url.href, pem: `${certificates.map((c) => c.pem).join('\n')}\n`, count: certificates.length };
}

/**
 * Whether `url` is plain HTTP to somewhere other than this machine: then a CA fetched from it is
 * only as trustworthy as the network between (the caller warns). PURE.
 */
export function plainHttpOffLoopback(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol !== 'http:') return false;
  const host = parsed.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const loopback =
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    host === '::1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  return !loopback;
}
