// Signing keys in the database: created on first start, loaded for oidc-provider and the JWKS,
// rotated by `reins keys rotate`, retired once every token they signed has expired. The decisions
// are rotation.ts's (pure); this file reads rows, asks, and writes the answer under a lock, so
// that several processes sharing one PostgreSQL agree on one active key.
import { createPrivateKey } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, exportPKCS8, generateKeyPair, type JWK } from 'jose';
import { decryptPrivateKey, encryptPrivateKey, type StoredPrivateKey } from '../../secrets/encryption.ts';
import type { Db, Queryable } from '../../store/db.ts';
import {
  chooseSigningKey,
  type KeyRecord,
  type KeyState,
  planRetirement,
  planRotation,
  publishedKeys,
  type RetirementDecision,
  type Transition,
} from './rotation.ts';

/** The algorithm new keys use (SPEC.md: ES256 by default). */
export const SIGNING_ALG = 'ES256';

/**
 * How long a retiring key stays published after its successor became active, even when the
 * ledger holds no unexpired token it signed (see rotation.ts, `graceMs`). It must exceed the time
 * any process may keep signing with a key set it loaded before the rotation.
 */
export const DEFAULT_RETIRE_GRACE_MS = 10 * 60_000;

export interface KeySet {
  /** Private JWKs for oidc-provider's `jwks`: the active key first (it signs), then the rest published. */
  readonly signing: readonly { readonly kid: string; readonly privateJwk: JWK }[];
  /** What the JWKS endpoint serves: public members only, of every published key. */
  readonly publicJwks: { readonly keys: readonly JWK[] };
}

/** A key as `reins keys list` shows it: no private material. */
export interface KeyInfo extends KeyRecord {
  readonly alg: string;
  readonly encryption: string;
}

interface KeyRow {
  kid: string;
  alg: string;
  state: KeyState;
  public_jwk: JWK;
  private_key: string;
  encryption: string;
  created_at: Date;
  activated_at: Date | null;
  retired_at: Date | null;
}

interface StoredKey extends KeyInfo {
  readonly publicJwk: JWK;
  readonly stored: { readonly encryption: string; readonly privateKey: string };
}

const SELECT_KEYS = `select kid, alg, state, public_jwk, private_key, encryption, created_at, activated_at, retired_at
  from signing_keys`;

// Serialises every writer of signing_keys across processes; plain reads go on. SHARE ROW EXCLUSIVE
// conflicts with itself and with row writes, so "read, decide, write" happens one process at a time.
const LOCK = 'lock table signing_keys in share row exclusive mode';

type InfoRow = Omit<KeyRow, 'public_jwk' | 'private_key'>;

function toKeyInfo(row: InfoRow): KeyInfo {
  return {
    kid: row.kid,
    alg: row.alg,
    state: row.state,
    encryption: row.encryption,
    createdAt: new Date(row.created_at),
    activatedAt: row.activated_at === null ? null : new Date(row.activated_at),
    retiredAt: row.retired_at === null ? null : new Date(row.retired_at),
  };
}

function toStoredKey(row: KeyRow): StoredKey {
  return {
    ...toKeyInfo(row),
    publicJwk: row.public_jwk,
    stored: { encryption: row.encryption, privateKey: row.private_key },
  };
}

async function readKeys(q: Queryable): Promise<StoredKey[]> {
  const { rows } = await q.query<KeyRow>(SELECT_KEYS);
  return rows.map(toStoredKey);
}

// Associated data of the encryption: binds a ciphertext to its row.
const context = (kid: string) => `signing_keys:${kid}`;
const label = (kid: string) => `signing key ${kid}`;

/** Only the public members of a JWK, whatever the row holds: a private `d` never leaves here. */
function publicMembers(jwk: JWK, kid: string, alg: string): JWK {
  const { kty, crv, x, y } = jwk;
  const pub: JWK = { kty, crv, x };
  if (kty === 'EC') pub.y = y;
  return { ...pub, kid, alg, use: 'sig' };
}

interface NewKey {
  readonly kid: string;
  readonly publicJwk: JWK;
  readonly stored: StoredPrivateKey;
}

async function generateKey(secretKey: string | undefined): Promise<NewKey> {
  const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const jwk = await exportJWK(publicKey);
  // RFC 7638 thumbprint: the same key always gets the same kid, on every process.
  const kid = await calculateJwkThumbprint(jwk);
  const stored = await encryptPrivateKey(await exportPKCS8(privateKey), secretKey, context(kid));
  return { kid, publicJwk: publicMembers(jwk, kid, SIGNING_ALG), stored };
}

async function insertActive(tx: Queryable, key: NewKey, now: Date): Promise<void> {
  await tx.query(
    `insert into signing_keys (kid, alg, state, public_jwk, private_key, encryption, created_at, activated_at)
     values ($1, $2, 'active', $3::jsonb, $4, $5, $6::timestamptz, $6::timestamptz)`,
    [
      key.kid,
      SIGNING_ALG,
      JSON.stringify(key.publicJwk),
      key.stored.privateKey,
      key.stored.encryption,
      now.toISOString(),
    ],
  );
}

type StateChange = Pick<Transition, 'kid' | 'from' | 'to'>;

// `where state = from`: under the lock nothing else changes the row, but a transition written for
// a state the row is no longer in must not apply.
async function apply(tx: Queryable, transitions: readonly StateChange[], now: Date): Promise<void> {
  for (const t of transitions) {
    await tx.query(
      `update signing_keys set state = $2,
         retired_at = case when $2 = 'retired' then $3::timestamptz else retired_at end
       where kid = $1 and state = $4`,
      [t.kid, t.to, now.toISOString(), t.from],
    );
  }
}

export interface EnsureOptions {
  readonly secretKey?: string | undefined;
  readonly now: Date;
  /** Told when private keys are stored unencrypted (REINS_SECRET_KEY unset). */
  readonly warn?: (message: string) => void;
}

export interface EnsureResult {
  readonly kid: string;
  /** Whether this call created the key (first start). */
  readonly created: boolean;
}

/**
 * Makes sure exactly one key is active, creating an ES256 key on first start. Safe when several
 * processes start at once: the check is repeated under the table lock, so one creates and the
 * others find its key.
 */
export async function ensureSigningKey(db: Db, options: EnsureOptions): Promise<EnsureResult> {
  const { secretKey, now, warn } = options;
  if (!secretKey) {
    warn?.(
      'REINS_SECRET_KEY is not set: signing keys are stored unencrypted in the database; ' +
        'set it to encrypt new keys at rest',
    );
  }
  const fast = chooseSigningKey(await readKeys(db));
  if (fast.verdict === 'sign' && fast.repairs.length === 0) return { kid: fast.kid, created: false };

  // Generated before taking the lock (scrypt takes a moment); discarded if another process won.
  const candidate = await generateKey(secretKey);
  return db.transaction(async (tx) => {
    await tx.query(LOCK);
    const choice = chooseSigningKey(await readKeys(tx));
    if (choice.verdict === 'sign') {
      await apply(tx, choice.repairs, now);
      return { kid: choice.kid, created: false };
    }
    await insertActive(tx, candidate, now);
    return { kid: candidate.kid, created: true };
  });
}

/** The key set for oidc-provider (private, active first) and for the JWKS endpoint (public). */
export async function loadKeys(db: Queryable, secretKey: string | undefined): Promise<KeySet> {
  const published = publishedKeys(await readKeys(db));
  const signing = [];
  for (const key of published) {
    const pem = await decryptPrivateKey(key.stored, secretKey, context(key.kid), label(key.kid));
    const jwk = createPrivateKey(pem).export({ format: 'jwk' }) as JWK;
    signing.push({ kid: key.kid, privateJwk: { ...jwk, kid: key.kid, alg: key.alg, use: 'sig' } });
  }
  return {
    signing,
    publicJwks: { keys: published.map((k) => publicMembers(k.publicJwk, k.kid, k.alg)) },
  };
}

/** The published public keys only (the gateway verifies; it never needs a private key). */
export async function loadPublicJwks(db: Queryable): Promise<{ keys: JWK[] }> {
  const published = publishedKeys(await readKeys(db));
  return { keys: published.map((k) => publicMembers(k.publicJwk, k.kid, k.alg)) };
}

export interface RotateOptions {
  readonly secretKey?: string | undefined;
  readonly now: Date;
}

export interface RotationResult {
  /** The new active key. */
  readonly kid: string;
  /** The keys that stopped signing and stay published until their tokens have expired. */
  readonly retiring: readonly string[];
}

/**
 * Adds a new active key; the old active key becomes retiring. Refuses (KeyEncryptionError) when
 * the published keys cannot be read with `secretKey`: rotating with a missing or wrong secret
 * would store the new key unencrypted or under a secret the servers do not have.
 */
export async function rotateKeys(db: Db, options: RotateOptions): Promise<RotationResult> {
  const { secretKey, now } = options;
  await loadKeys(db, secretKey);
  const key = await generateKey(secretKey);
  return db.transaction(async (tx) => {
    await tx.query(LOCK);
    const plan = planRotation(await readKeys(tx), key.kid);
    await apply(tx, plan.transitions, now);
    await insertActive(tx, key, now);
    return { kid: plan.activate, retiring: plan.transitions.map((t) => t.kid) };
  });
}

export interface RetireOptions {
  /** See DEFAULT_RETIRE_GRACE_MS. */
  readonly graceMs?: number;
}

/**
 * Retires every retiring key whose tokens have all expired at `now` (the ledger, issued_tokens,
 * knows which key signed what). Returns the decision for each retiring key.
 */
export async function retireExpiredKeys(
  db: Db,
  now: Date,
  options: RetireOptions = {},
): Promise<RetirementDecision[]> {
  const graceMs = options.graceMs ?? DEFAULT_RETIRE_GRACE_MS;
  return db.transaction(async (tx) => {
    await tx.query(LOCK);
    const keys = await readKeys(tx);
    const { rows } = await tx.query<{ kid: string; last_expiry: Date }>(
      `select t.kid, max(t.expires_at) as last_expiry
         from issued_tokens t join signing_keys k on k.kid = t.kid
        where k.state = 'retiring'
        group by t.kid`,
    );
    const lastExpiry = new Map(rows.map((r) => [r.kid, new Date(r.last_expiry)]));
    const decisions = planRetirement({ keys, lastExpiry, now, graceMs });
    await apply(
      tx,
      decisions
        .filter((d) => d.verdict === 'retire')
        .map((d): StateChange => ({ kid: d.kid, from: 'retiring', to: 'retired' })),
      now,
    );
    return decisions;
  });
}

/** Every key, newest first, without private material. */
export async function listKeys(db: Queryable): Promise<KeyInfo[]> {
  const { rows } = await db.query<InfoRow>(
    `select kid, alg, state, encryption, created_at, activated_at, retired_at
       from signing_keys order by created_at desc, kid`,
  );
  return rows.map(toKeyInfo);
}
