// Leaf certificates for the hosts the gateway terminates TLS for, signed by the active
// interception CA, and the bounded cache that keeps one per (CA, host) while it is fresh.
//
// Threat: the host comes from an agent (CONNECT target, SNI). Issue only for the CONNECT origin
// the decision allowed, never for whatever name a client hello asks for; the cache is bounded so
// that a flood of names costs CPU, not memory.
import { KeyObject } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { type Bytes, formatAddress, parseAddress } from '../../egress/address.ts';
import { normaliseName } from '../../egress/host.ts';
import { CLOCK_SKEW_MS, type SigningCa } from './authority.ts';
import { InterceptionCaError } from './errors.ts';
import * as x509 from './x509.ts';

/**
 * How long a leaf is valid. Short, so a leaf (and its key, which lives only in gateway memory)
 * that leaks is worth little, and a rotated CA's leaves are gone within a day.
 */
export const LEAF_VALIDITY_MS = 24 * 60 * 60_000;

/** How many leaves a LeafCache keeps, least recently used out first. */
export const DEFAULT_LEAF_CACHE_SIZE = 1000;

// RFC 5280 Appendix A, ub-common-name: a longer name goes in the subjectAltName only.
const COMMON_NAME_MAX = 64;

/** A leaf's host after normalisation: a DNS name (A-labels, lower case) or an IP address. */
export type LeafHost =
  | { readonly kind: 'dns'; readonly name: string }
  | { readonly kind: 'ip'; readonly address: string; readonly bytes: Bytes };

/**
 * Normalises a host for a leaf, as the egress rules normalise a request's host: an IP address
 * (dotted quad, IPv6 with or without brackets) or a DNS name. Null when it is neither: wildcards,
 * zone ids, empty labels.
 */
export function normaliseLeafHost(host: string): LeafHost | null {
  if (typeof host !== 'string') return null;
  const bytes = parseAddress(host);
  if (bytes !== null) return { kind: 'ip', address: formatAddress(bytes), bytes };
  const name = normaliseName(host);
  return name === null ? null : { kind: 'dns', name };
}

const hostText = (host: LeafHost) => (host.kind === 'ip' ? host.address : host.name);

// The library reads IPv6 text itself and misreads mixed notation (::ffff:1.2.3.4); eight hex
// groups it reads right.
function ipSanText(bytes: Bytes): string {
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return groups.join(':');
}

function invalidHost(host: unknown): InterceptionCaError {
  const shown = JSON.stringify(String(host).slice(0, 100));
  return new InterceptionCaError(
    'invalid_host',
    `no leaf certificate for ${shown}: give a DNS name or an IP address, without wildcard or port`,
  );
}

export interface IssuedLeaf {
  readonly caId: string;
  /** The normalised host the certificate names. */
  readonly host: string;
  readonly certPem: string;
  /** PKCS#8 PEM. It never leaves the gateway's memory. */
  readonly keyPem: string;
  /** The leaf, then the CA that signed it: what the TLS server sends. */
  readonly chainPem: string;
  /** Hex. */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface IssueLeafOptions {
  readonly now: Date;
  /** See LEAF_VALIDITY_MS. */
  readonly validityMs?: number;
}

/**
 * A fresh ECDSA P-256 leaf for `host`, signed by `ca`: subjectAltName dNSName or iPAddress,
 * serverAuth only, valid from CLOCK_SKEW_MS before `now` for LEAF_VALIDITY_MS (never past the
 * CA's notAfter). Throws `invalid_host` or `ca_expired`.
 */
export async function issueLeaf(ca: SigningCa, host: string, options: IssueLeafOptions): Promise<IssuedLeaf> {
  const target = normaliseLeafHost(host);
  if (target === null) throw invalidHost(host);
  const now = options.now.getTime();
  if (ca.notAfter.getTime() <= now) {
    throw new InterceptionCaError(
      'ca_expired',
      `interception CA ${ca.id} expired at ${ca.notAfter.toISOString()}: run \`reins ca rotate\``,
    );
  }
  const text = hostText(target);
  const keys = await crypto.subtle.generateKey(x509.EC_KEY, true, ['sign', 'verify']);
  const named = text.length <= COMMON_NAME_MAX;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: x509.randomSerial(),
    // The commonName is for people reading the certificate; clients match the subjectAltName
    // (RFC 6125 §6.4.4). Without one the subject is empty and the SAN must be critical (RFC 5280
    // §4.2.1.6).
    subject: new x509.Name(named ? [{ CN: [text] }] : []),
    issuer: ca.certificate.subjectName,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(Math.min(now + (options.validityMs ?? LEAF_VALIDITY_MS), ca.notAfter.getTime())),
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: x509.EC_SIGNATURE,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        [
          target.kind === 'ip'
            ? { type: 'ip', value: ipSanText(target.bytes) }
            : { type: 'dns', value: target.name },
        ],
        !named,
      ),
      new x509.AuthorityKeyIdentifierExtension(ca.subjectKeyId),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = `${certificate.toString('pem').trimEnd()}\n`;
  return {
    caId: ca.id,
    host: text,
    certPem,
    keyPem: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string,
    chainPem: certPem + ca.certPem,
    serialNumber: certificate.serialNumber,
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  };
}

export interface LeafCacheOptions {
  /** See DEFAULT_LEAF_CACHE_SIZE. */
  readonly maxEntries?: number;
  readonly now?: () => Date;
}

interface Served {
  readonly leaf: IssuedLeaf;
  readonly context: SecureContext;
}

interface Entry {
  readonly promise: Promise<Served>;
  /** When to stop serving it (ms); Infinity while it is being generated. */
  staleAt: number;
}

/**
 * Leaves by (CA id, host), least recently used out first beyond `maxEntries`. A leaf is served for
 * the first half of its validity only, so a client always receives one with hours to spare (and
 * a clock somewhat ahead still accepts it). Concurrent requests for one host share one generation.
 */
export class LeafCache {
  #ca: SigningCa;
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;
  readonly #now: () => Date;
  #issued = 0;

  constructor(ca: SigningCa, options: LeafCacheOptions = {}) {
    this.#ca = ca;
    this.#maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_LEAF_CACHE_SIZE);
    this.#now = options.now ?? (() => new Date());
  }

  /** The CA new leaves come from. */
  get ca(): SigningCa {
    return this.#ca;
  }

  /** Leaves held, including those being generated. */
  get size(): number {
    return this.#entries.size;
  }

  /** Leaves generated since construction. */
  get issued(): number {
    return this.#issued;
  }

  /** Switches to another CA (after a rotation): every leaf from then on is its. */
  setCa(ca: SigningCa): void {
    if (ca.id === this.#ca.id) return;
    this.#ca = ca;
    this.#entries.clear();
  }

  /** A leaf for `host`, cached or fresh. Rejects with `invalid_host` or `ca_expired`. */
  async leafFor(host: string): Promise<IssuedLeaf> {
    return (await this.#served(host)).leaf;
  }

  /** The TLS context serving `host`'s leaf and chain, for an SNICallback or a TLSSocket. */
  async secureContextFor(host: string): Promise<SecureContext> {
    return (await this.#served(host)).context;
  }

  #served(host: string): Promise<Served> {
    const target = normaliseLeafHost(host);
    if (target === null) return Promise.reject(invalidHost(host));
    const ca = this.#ca;
    const key = `${ca.id} ${hostText(target)}`;
    const now = this.#now();
    const hit = this.#entries.get(key);
    if (hit && now.getTime() < hit.staleAt) {
      // Most recently used goes last; the first key is the one to evict.
      this.#entries.delete(key);
      this.#entries.set(key, hit);
      return hit.promise;
    }
    const entry: Entry = {
      staleAt: Number.POSITIVE_INFINITY,
      promise: issueLeaf(ca, hostText(target), { now }).then(
        (leaf) => {
          entry.staleAt = now.getTime() + (leaf.notAfter.getTime() - now.getTime()) / 2;
          return { leaf, context: createSecureContext({ key: leaf.keyPem, cert: leaf.chainPem }) };
        },
        (err: unknown) => {
          // Not cached: the next request tries again.
          if (this.#entries.get(key) === entry) this.#entries.delete(key);
          throw err;
        },
      ),
    };
    this.#issued += 1;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
    }
    return entry.promise;
  }
}
