// The interception CA in the database: created on first start by whichever gateway gets there
// first, loaded by every gateway on that database, rotated by `reins ca rotate`, exported as the
// bundle agents trust. The decisions are lifecycle.ts's (pure); this file reads rows, asks, and
// writes the answer. Private keys at rest use the signing keys' scheme (REINS_SECRET_KEY).
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  KeyObject,
  type webcrypto,
  X509Certificate,
} from 'node:crypto';
import { decryptPrivateKey, encryptPrivateKey, type StoredPrivateKey } from '../../secrets/encryption.ts';
import type { Db, Queryable } from '../../store/db.ts';
import { InterceptionCaError } from './errors.ts';
import {
  type CaRecord,
  type CaState,
  caState,
  chooseSigningCa,
  overlapEnd,
  trustedCas,
} from './lifecycle.ts';
import * as x509 from './x509.ts';

const DAY_MS = 24 * 60 * 60_000;

/** How long a new CA is valid: 3,650 days (about ten years). Agents trust it until then, or rotation. */
export const CA_VALIDITY_MS = 3650 * DAY_MS;

/** How long a CA that rotation replaced stays in the trusted bundle (never past its notAfter). */
export const DEFAULT_CA_OVERLAP_MS = 30 * DAY_MS;

/** From how long before its notAfter starting a gateway warns that the CA needs rotating. */
export const CA_EXPIRY_WARNING_MS = 30 * DAY_MS;

/**
 * How far back notBefore is set, for CAs and leaves alike: a client whose clock runs a little
 * behind the gateway's must not reject a certificate made a moment ago as "not yet valid".
 */
export const CLOCK_SKEW_MS = 5 * 60_000;

/** The active CA, ready to sign leaves. Its private key cannot be exported again. */
export interface SigningCa {
  readonly id: string;
  readonly certPem: string;
  readonly certificate: x509.X509Certificate;
  /** Hex, for the leaves' authorityKeyIdentifier (RFC 5280 §4.2.1.1). */
  readonly subjectKeyId: string;
  readonly privateKey: webcrypto.CryptoKey;
  readonly notAfter: Date;
}

/**
 * A SigningCa as it crosses to a gateway thread: the key as it is (a CryptoKey crosses by
 * structured clone, unextractable still), the certificate as its PEM (an X509Certificate object
 * does not cross), parsed again on the other side by signingCaFrom.
 */
export type PortableSigningCa = Omit<SigningCa, 'certificate'>;

export function portableSigningCa(ca: SigningCa): PortableSigningCa {
  const { certificate: _parsed, ...portable } = ca;
  return portable;
}

export function signingCaFrom(portable: PortableSigningCa): SigningCa {
  return { ...portable, certificate: new x509.X509Certificate(portable.certPem) };
}

/** A CA as `reins ca list` shows it: no private material. */
export interface CaInfo extends CaRecord {
  readonly state: CaState;
  readonly subject: string;
  /** SHA-256 of the certificate, colon-separated hex, as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprint256: string;
  /** The storage scheme of its private key, or 'erased' once rotation replaced it. */
  readonly encryption: string;
}

interface CaRow {
  id: string;
  cert_pem: string;
  private_key: string | null;
  encryption: string;
  created_at: Date;
  not_after: Date;
  retired_at: Date | null;
  trusted_until: Date | null;
}

interface StoredCa extends CaRecord {
  readonly certPem: string;
  readonly encryption: string;
  readonly privateKey: string | null;
}

const SELECT_CAS = `select id, cert_pem, private_key, encryption, created_at, not_after, retired_at, trusted_until
  from interception_ca`;

// Serialises rotations across processes; plain reads go on. SHARE ROW EXCLUSIVE conflicts with
// itself and with row writes, so "read, decide, write" happens one process at a time.
const LOCK = 'lock table interception_ca in share row exclusive mode';

const date = (value: Date | string) => new Date(value);

function toStoredCa(row: CaRow): StoredCa {
  return {
    id: row.id,
    certPem: row.cert_pem,
    encryption: row.encryption,
    privateKey: row.private_key,
    createdAt: date(row.created_at),
    notAfter: date(row.not_after),
    retiredAt: row.retired_at === null ? null : date(row.retired_at),
    trustedUntil: row.trusted_until === null ? null : date(row.trusted_until),
  };
}

async function readCas(q: Queryable): Promise<StoredCa[]> {
  const { rows } = await q.query<CaRow>(SELECT_CAS);
  return rows.map(toStoredCa);
}

// Associated data of the encryption: binds a ciphertext to its row.
const context = (id: string) => `interception_ca:${id}`;
const label = (id: string) => `interception CA ${id}`;

interface NewCa {
  readonly id: string;
  readonly certPem: string;
  readonly notAfter: Date;
  readonly stored: StoredPrivateKey;
}

async function generateCa(secretKey: string | undefined, now: Date): Promise<NewCa> {
  const keys = await crypto.subtle.generateKey(x509.EC_KEY, true, ['sign', 'verify']);
  // The id is derived from the public key, as a kid is: the same key always has the same id.
  const spki = Buffer.from(await crypto.subtle.exportKey('spki', keys.publicKey));
  const id = createHash('sha256').update(spki).digest('hex').slice(0, 16);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: x509.randomSerial(),
    // The id in the name: trust stores list CAs by subject, so an operator can tell which of the
    // bundle's CAs is which, and old and new never share a subject (OpenSSL's hashed certificate
    // directories and some chain builders look issuers up by subject name).
    name: `O=reins, CN=reins interception CA ${id}`,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + CA_VALIDITY_MS),
    keys,
    signingAlgorithm: x509.EC_SIGNATURE,
    extensions: [
      // pathLen 0: a leaf is all it may sign, never another CA (RFC 5280 §4.2.1.9).
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  return {
    id,
    certPem: `${certificate.toString('pem').trimEnd()}\n`,
    notAfter: certificate.notAfter,
    stored: await encryptPrivateKey(pem, secretKey, context(id)),
  };
}

async function insertCa(q: Queryable, ca: NewCa, now: Date, onConflict: string): Promise<number> {
  const { rowCount } = await q.query(
    `insert into interception_ca (id, cert_pem, private_key, encryption, created_at, not_after)
     values ($1, $2, $3, $4, $5::timestamptz, $6::timestamptz) ${onConflict}`,
    [
      ca.id,
      ca.certPem,
      ca.stored.privateKey,
      ca.stored.encryption,
      now.toISOString(),
      ca.notAfter.toISOString(),
    ],
  );
  return rowCount;
}

function expired(id: string, notAfter: Date): InterceptionCaError {
  return new InterceptionCaError(
    'ca_expired',
    `interception CA ${id} expired at ${notAfter.toISOString()}: run \`reins ca rotate\` and give agents ` +
      'the new bundle (`reins ca export`)',
  );
}

export interface EnsureCaOptions {
  readonly secretKey?: string | undefined;
  readonly now: Date;
  /** Told when the CA's private key is stored unencrypted, and when the CA is about to expire. */
  readonly warn?: (message: string) => void;
}

export interface EnsureCaResult {
  readonly id: string;
  /** Whether this call created the CA (first start). */
  readonly created: boolean;
}

/**
 * Makes sure a CA is active, creating one on first start. Safe when several processes start at
 * once: each inserts its candidate with `on conflict do nothing` against the unique index that
 * admits one active CA, then reads back whichever won. Throws `ca_expired` when the active CA
 * has expired (replacing it is the operator's call: agents need the new bundle).
 */
export async function ensureInterceptionCa(db: Db, options: EnsureCaOptions): Promise<EnsureCaResult> {
  const { secretKey, now, warn } = options;
  let cas = await readCas(db);
  let created = false;
  if (chooseSigningCa(cas, now, CA_EXPIRY_WARNING_MS).verdict === 'create') {
    const candidate = await generateCa(secretKey, now);
    created = (await insertCa(db, candidate, now, 'on conflict do nothing')) === 1;
    cas = await readCas(db);
  }
  const choice = chooseSigningCa(cas, now, CA_EXPIRY_WARNING_MS);
  if (choice.verdict === 'expired') throw expired(choice.id, choice.notAfter);
  if (choice.verdict === 'create') {
    // Only a concurrent hand edit (deleting the row just written) gets here.
    throw new InterceptionCaError('ca_missing', 'the interception CA disappeared while it was created');
  }
  const active = cas.find((ca) => ca.id === choice.id);
  if (active?.encryption === 'none') {
    warn?.(
      `the private key of interception CA ${choice.id} is stored unencrypted (REINS_SECRET_KEY was not set ` +
        'when it was created): whoever reads the database can impersonate any host to agents that trust it; ' +
        'set REINS_SECRET_KEY and run `reins ca rotate`',
    );
  }
  if (choice.expiresSoon && active) {
    warn?.(
      `interception CA ${choice.id} expires at ${active.notAfter.toISOString()}: run \`reins ca rotate\` ` +
        'and give agents the new bundle (`reins ca export`)',
    );
  }
  return { id: choice.id, created };
}

async function toSigningCa(ca: StoredCa, secretKey: string | undefined): Promise<SigningCa> {
  if (ca.privateKey === null) {
    throw new InterceptionCaError('ca_missing', `${label(ca.id)} has no private key (it was rotated out)`);
  }
  const pem = await decryptPrivateKey(
    { encryption: ca.encryption, privateKey: ca.privateKey },
    secretKey,
    context(ca.id),
    label(ca.id),
  );
  const keyObject = createPrivateKey(pem);
  const certificate = new x509.X509Certificate(ca.certPem);
  // Threat: a row whose key and certificate were swapped by hand would sign leaves no client can
  // verify, and the TLS failure would say nothing about why. Refuse at load instead.
  const ownSpki = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  if (!ownSpki.equals(Buffer.from(certificate.publicKey.rawData))) {
    throw new InterceptionCaError(
      'ca_key_mismatch',
      `the stored private key of ${label(ca.id)} does not belong to its certificate: restore the row from a backup`,
    );
  }
  const ski = certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  return {
    id: ca.id,
    certPem: ca.certPem,
    certificate,
    subjectKeyId:
      ski?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(certificate.publicKey)).keyId,
    // Not extractable: the gateway can sign with it, and nothing in the process can read it back.
    privateKey: keyObject.toCryptoKey(x509.EC_KEY, false, ['sign']),
    notAfter: ca.notAfter,
  };
}

export interface LoadCaOptions {
  readonly secretKey?: string | undefined;
  readonly now: Date;
}

/**
 * The active CA with its private key, for the gateway's leaves. Throws `ca_missing` before the
 * first start, `ca_expired`, `ca_key_mismatch`, or a KeyEncryptionError (missing or wrong secret).
 */
export async function loadSigningCa(db: Queryable, options: LoadCaOptions): Promise<SigningCa> {
  const cas = await readCas(db);
  const choice = chooseSigningCa(cas, options.now, CA_EXPIRY_WARNING_MS);
  if (choice.verdict === 'create') {
    throw new InterceptionCaError(
      'ca_missing',
      'no interception CA yet: the gateway creates one at first start, or run `reins ca rotate`',
    );
  }
  if (choice.verdict === 'expired') throw expired(choice.id, choice.notAfter);
  const active = cas.find((ca) => ca.id === choice.id) as StoredCa;
  return toSigningCa(active, options.secretKey);
}

export interface RotateCaOptions {
  readonly secretKey?: string | undefined;
  readonly now: Date;
  /** See DEFAULT_CA_OVERLAP_MS; 0 drops the replaced CA from the bundle at once (a leaked key). */
  readonly overlapMs?: number;
}

export interface CaRotationResult {
  /** The new active CA. */
  readonly id: string;
  readonly notAfter: Date;
  /** The CA it replaced, if any, and until when it stays in the bundle. */
  readonly replaced: { readonly id: string; readonly trustedUntil: Date } | null;
}

/**
 * Adds a new active CA; the one it replaces stops signing, loses its private key, and stays in
 * the trusted bundle for the overlap. Creates the first CA when there is none. Refuses
 * (KeyEncryptionError) when the active CA's key cannot be read with `secretKey`: rotating with a
 * missing or wrong secret would store the new key unencrypted or under a secret the gateways do
 * not have.
 */
export async function rotateInterceptionCa(db: Db, options: RotateCaOptions): Promise<CaRotationResult> {
  const { secretKey, now } = options;
  const overlapMs = options.overlapMs ?? DEFAULT_CA_OVERLAP_MS;
  // Generated before taking the lock (key generation and scrypt take a moment).
  const candidate = await generateCa(secretKey, now);
  return db.transaction(async (tx) => {
    await tx.query(LOCK);
    const cas = await readCas(tx);
    const active = cas.find((ca) => ca.retiredAt === null);
    let replaced: CaRotationResult['replaced'] = null;
    if (active) {
      if (active.privateKey !== null) {
        await decryptPrivateKey(
          { encryption: active.encryption, privateKey: active.privateKey },
          secretKey,
          context(active.id),
          label(active.id),
        );
      }
      const trustedUntil = overlapEnd(active, now, overlapMs);
      await tx.query(
        `update interception_ca set retired_at = $2::timestamptz, trusted_until = $3::timestamptz, private_key = null
          where id = $1 and retired_at is null`,
        [active.id, now.toISOString(), trustedUntil.toISOString()],
      );
      replaced = { id: active.id, trustedUntil };
    }
    await insertCa(tx, candidate, now, '');
    return { id: candidate.id, notAfter: candidate.notAfter, replaced };
  });
}

function toCaInfo(ca: StoredCa, now: Date): CaInfo {
  const cert = new X509Certificate(ca.certPem);
  return {
    id: ca.id,
    state: caState(ca, now),
    subject: cert.subject.split('\n').reverse().join(', '),
    fingerprint256: cert.fingerprint256,
    encryption: ca.privateKey === null ? 'erased' : ca.encryption,
    createdAt: ca.createdAt,
    notAfter: ca.notAfter,
    retiredAt: ca.retiredAt,
    trustedUntil: ca.trustedUntil,
  };
}

/** Every CA, newest first, without private material. */
export async function listInterceptionCas(db: Queryable, now: Date): Promise<CaInfo[]> {
  const cas = await readCas(db);
  return cas
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? -1 : 1))
    .map((ca) => toCaInfo(ca, now));
}

export interface TrustBundle {
  /** The certificates agents should trust, PEM, the active CA first, then newest first. */
  readonly pem: string;
  readonly cas: readonly CaInfo[];
}

/**
 * What `reins ca export` prints: every CA that is active or in its overlap. Throws `ca_missing`
 * when there is none yet, `ca_expired` when the only one has expired.
 */
export async function exportTrustBundle(db: Queryable, now: Date): Promise<TrustBundle> {
  const cas = await readCas(db);
  const trusted = trustedCas(cas, now);
  if (trusted.length === 0) {
    const choice = chooseSigningCa(cas, now, CA_EXPIRY_WARNING_MS);
    if (choice.verdict === 'expired') throw expired(choice.id, choice.notAfter);
    throw new InterceptionCaError(
      'ca_missing',
      'no interception CA yet: the gateway creates one at first start, or run `reins ca rotate`',
    );
  }
  return {
    pem: trusted.map((ca) => (ca.certPem.endsWith('\n') ? ca.certPem : `${ca.certPem}\n`)).join(''),
    cas: trusted.map((ca) => toCaInfo(ca, now)),
  };
}
