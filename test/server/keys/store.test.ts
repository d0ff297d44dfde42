// Signing keys in the database, on PGlite always and on PostgreSQL when DATABASE_URL is set:
// creation on first start (also by two processes at once), rotation that keeps old tokens
// verifiable, retirement once their tokens have expired, and encryption at rest.
import { randomUUID } from 'node:crypto';
import { createLocalJWKSet, importJWK, type JWK, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ensureSigningKey,
  type KeySet,
  listKeys,
  loadKeys,
  retireExpiredKeys,
  rotateKeys,
} from '../../../src/server/keys/store.ts';
import type { Db } from '../../../src/store/db.ts';
import { migrate } from '../../../src/store/migrate.ts';
import { openPg } from '../../../src/store/pg.ts';
import { openMigratedDb, testBackends, testDatabaseUrl, uniqueName } from '../../support/db.ts';

const T0 = new Date('2026-01-01T00:00:00Z');
const minutes = (n: number) => new Date(T0.getTime() + n * 60_000);
const SECRET = 'a test secret for signing keys';

async function signWith(keys: KeySet, kid: string, now: Date): Promise<string> {
  const entry = keys.signing.find((k) => k.kid === kid);
  if (!entry) throw new Error(`no signing key ${kid}`);
  const iat = Math.floor(now.getTime() / 1000);
  return new SignJWT({ client_id: 'billing-agent' })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
    .setIssuer('http://127.0.0.1:3000')
    .setAudience('urn:reins:gateway')
    .setSubject('billing-agent')
    .setIssuedAt(iat)
    .setExpirationTime(iat + 300)
    .sign(await importJWK(entry.privateJwk, 'ES256'));
}

function verify(token: string, keys: KeySet, now: Date) {
  return jwtVerify(token, createLocalJWKSet({ keys: [...keys.publicJwks.keys] }), {
    typ: 'at+jwt',
    currentDate: now,
  });
}

async function recordToken(db: Db, kid: string, expiresAt: Date): Promise<void> {
  await db.query(
    `insert into issued_tokens (jti, tenant, client_id, sub, kind, kid, expires_at)
     values ($1, 'acme', 'billing-agent', 'billing-agent', 'client_credentials', $2, $3::timestamptz)`,
    [randomUUID(), kid, expiresAt.toISOString()],
  );
}

describe.each(testBackends())('signing keys on $name', (backend) => {
  let db: Db;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
  });
  afterAll(() => db.close());
  beforeEach(async () => {
    await db.query('delete from issued_tokens');
    await db.query('delete from signing_keys');
  });

  describe('first start', () => {
    it('creates one active ES256 key whose kid is its RFC 7638 thumbprint, and finds it again later', async () => {
      const first = await ensureSigningKey(db, { now: T0 });
      expect(first.created).toBe(true);
      const again = await ensureSigningKey(db, { now: minutes(1) });
      expect(again).toEqual({ kid: first.kid, created: false });

      const keys = await listKeys(db);
      expect(keys).toEqual([expect.objectContaining({ kid: first.kid, alg: 'ES256', state: 'active' })]);
      const { publicJwks } = await loadKeys(db, undefined);
      const { calculateJwkThumbprint } = await import('jose');
      expect(await calculateJwkThumbprint(publicJwks.keys[0] as JWK)).toBe(first.kid);
    });

    it('warns when no secret is set, and not when one is', async () => {
      const warnings: string[] = [];
      await ensureSigningKey(db, { now: T0, warn: (m) => warnings.push(m) });
      await ensureSigningKey(db, { now: T0, secretKey: SECRET, warn: (m) => warnings.push(m) });
      expect(warnings).toEqual([expect.stringContaining('REINS_SECRET_KEY is not set')]);
    });

    it('ends with exactly one active key when two starts race on one database', async () => {
      const results = await Promise.all([
        ensureSigningKey(db, { now: T0 }),
        ensureSigningKey(db, { now: T0 }),
      ]);
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(results[0]?.kid).toBe(results[1]?.kid);
      const active = (await listKeys(db)).filter((k) => k.state === 'active');
      expect(active.map((k) => k.kid)).toEqual([results[0]?.kid]);
    });

    it('repairs two active keys: the newer signs, the older retires', async () => {
      const { kid: older } = await ensureSigningKey(db, { now: T0 });
      const { kid: newer } = await rotateKeys(db, { now: minutes(1) });
      await db.query(`update signing_keys set state = 'active' where kid = $1`, [older]);
      expect(await ensureSigningKey(db, { now: minutes(2) })).toEqual({ kid: newer, created: false });
      const states = Object.fromEntries((await listKeys(db)).map((k) => [k.kid, k.state]));
      expect(states).toEqual({ [older]: 'retiring', [newer]: 'active' });
    });
  });

  describe('the published key set', () => {
    it('holds public members only: no private d in the JWKS', async () => {
      await ensureSigningKey(db, { now: T0 });
      await rotateKeys(db, { now: minutes(1) });
      const keys = await loadKeys(db, undefined);
      expect(keys.publicJwks.keys).toHaveLength(2);
      for (const jwk of keys.publicJwks.keys) {
        expect(Object.keys(jwk).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
      }
      expect(JSON.stringify(keys.publicJwks)).not.toContain('"d"');
      // …while oidc-provider gets the private parts, the active key first.
      expect(keys.signing.every((k) => typeof k.privateJwk.d === 'string')).toBe(true);
    });
  });

  describe('rotation', () => {
    it('keeps a token signed by the old key verifiable, and the new key signs', async () => {
      const { kid: oldKid } = await ensureSigningKey(db, { now: T0 });
      const before = await loadKeys(db, undefined);
      const oldToken = await signWith(before, oldKid, T0);

      const rotation = await rotateKeys(db, { now: minutes(1) });
      expect(rotation.retiring).toEqual([oldKid]);
      expect(rotation.kid).not.toBe(oldKid);

      const after = await loadKeys(db, undefined);
      expect(after.signing[0]?.kid).toBe(rotation.kid);
      expect(after.publicJwks.keys.map((k) => k.kid)).toEqual([rotation.kid, oldKid]);
      const old = await verify(oldToken, after, minutes(2));
      expect(old.protectedHeader.kid).toBe(oldKid);
      const newToken = await signWith(after, rotation.kid, minutes(2));
      expect((await verify(newToken, after, minutes(2))).protectedHeader.kid).toBe(rotation.kid);
    });

    it('creates the first key when none exists yet', async () => {
      const rotation = await rotateKeys(db, { now: T0 });
      expect(rotation.retiring).toEqual([]);
      expect(await ensureSigningKey(db, { now: T0 })).toEqual({ kid: rotation.kid, created: false });
    });
  });

  describe('retirement', () => {
    it('keeps the old key published while a token it signed is valid, then retires it', async () => {
      const { kid: oldKid } = await ensureSigningKey(db, { now: T0 });
      await recordToken(db, oldKid, minutes(30));
      const { kid: newKid } = await rotateKeys(db, { now: minutes(1) });
      await recordToken(db, newKid, minutes(90));

      expect(await retireExpiredKeys(db, minutes(20))).toEqual([
        { kid: oldKid, verdict: 'keep', reason: 'unexpired_tokens' },
      ]);
      expect((await loadKeys(db, undefined)).publicJwks.keys.map((k) => k.kid)).toContain(oldKid);

      expect(await retireExpiredKeys(db, minutes(31))).toEqual([
        { kid: oldKid, verdict: 'retire', reason: 'tokens_expired' },
      ]);
      const after = await loadKeys(db, undefined);
      expect(after.publicJwks.keys.map((k) => k.kid)).toEqual([newKid]);
      expect(after.signing.map((k) => k.kid)).toEqual([newKid]);
      const old = (await listKeys(db)).find((k) => k.kid === oldKid);
      expect(old).toMatchObject({ state: 'retired', retiredAt: minutes(31) });
    });

    it('does not retire a key replaced within the grace period, even with no tokens', async () => {
      const { kid: oldKid } = await ensureSigningKey(db, { now: T0 });
      await rotateKeys(db, { now: minutes(1) });
      expect(await retireExpiredKeys(db, minutes(2))).toEqual([
        { kid: oldKid, verdict: 'keep', reason: 'grace_period' },
      ]);
      expect(await retireExpiredKeys(db, minutes(2), { graceMs: 0 })).toEqual([
        { kid: oldKid, verdict: 'retire', reason: 'no_tokens' },
      ]);
    });
  });

  describe('encryption at rest', () => {
    it('stores ciphertext, not the PEM, when REINS_SECRET_KEY is set, and signs with the decrypted key', async () => {
      const { kid } = await ensureSigningKey(db, { now: T0, secretKey: SECRET });
      const { rows } = await db.query<{ private_key: string; encryption: string }>(
        'select private_key, encryption from signing_keys',
      );
      expect(rows).toEqual([{ private_key: expect.any(String), encryption: 'aes-256-gcm+scrypt:v1' }]);
      expect(rows[0]?.private_key).not.toContain('PRIVATE KEY');

      const keys = await loadKeys(db, SECRET);
      const token = await signWith(keys, kid, T0);
      expect((await verify(token, keys, T0)).protectedHeader.kid).toBe(kid);
    });

    it('refuses to load or rotate encrypted keys with a missing or wrong secret', async () => {
      await ensureSigningKey(db, { now: T0, secretKey: SECRET });
      await expect(loadKeys(db, undefined)).rejects.toMatchObject({ code: 'secret_key_missing' });
      await expect(loadKeys(db, 'wrong')).rejects.toMatchObject({ code: 'secret_key_mismatch' });
      await expect(rotateKeys(db, { now: minutes(1) })).rejects.toMatchObject({ code: 'secret_key_missing' });
      expect(await listKeys(db)).toHaveLength(1);
    });

    it('stores the PEM unencrypted, scheme none, without a secret', async () => {
      await ensureSigningKey(db, { now: T0 });
      const { rows } = await db.query<{ private_key: string; encryption: string }>(
        'select private_key, encryption from signing_keys',
      );
      expect(rows[0]?.encryption).toBe('none');
      expect(rows[0]?.private_key).toContain('BEGIN PRIVATE KEY');
    });
  });
});

const url = testDatabaseUrl();
describe.runIf(url !== undefined)('signing keys shared by two processes on PostgreSQL', () => {
  it('ends with exactly one active key when two processes start at once', async () => {
    const schema = uniqueName();
    const a = await openPg(url as string, { schema, max: 2 });
    const b = await openPg(url as string, { schema, max: 2 });
    try {
      await migrate(a);
      const results = await Promise.all([
        ensureSigningKey(a, { now: T0, secretKey: SECRET }),
        ensureSigningKey(b, { now: T0, secretKey: SECRET }),
      ]);
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(results[0]?.kid).toBe(results[1]?.kid);
      const keys = await listKeys(b);
      expect(keys.map((k) => [k.kid, k.state])).toEqual([[results[0]?.kid, 'active']]);
    } finally {
      await a.query(`drop schema "${schema}" cascade`).catch(() => undefined);
      await Promise.all([a.close(), b.close()]);
    }
  });
});
