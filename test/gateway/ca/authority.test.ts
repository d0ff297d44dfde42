// The interception CA in the database, on PGlite always and on PostgreSQL when DATABASE_URL is
// set: created once on first start (also by two processes at once), its private key encrypted at
// rest, rotation that keeps the old CA in the bundle for the overlap, and the refusals.
import { KeyObject } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CA_VALIDITY_MS,
  ensureInterceptionCa,
  exportTrustBundle,
  listInterceptionCas,
  loadSigningCa,
  rotateInterceptionCa,
} from '../../../src/gateway/ca/authority.ts';
import * as x509 from '../../../src/gateway/ca/x509.ts';
import { decryptPrivateKey } from '../../../src/secrets/encryption.ts';
import type { Db } from '../../../src/store/db.ts';
import { migrate } from '../../../src/store/migrate.ts';
import { openPg } from '../../../src/store/pg.ts';
import { openMigratedDb, testBackends, testDatabaseUrl, uniqueName } from '../../support/db.ts';
import { splitBundle } from './support.ts';

const T0 = new Date('2026-01-01T00:00:00Z');
const DAY = 24 * 60 * 60_000;
const days = (n: number) => new Date(T0.getTime() + n * DAY);
const SECRET = 'a test secret for the interception CA';

interface StoredRow {
  id: string;
  private_key: string | null;
  encryption: string;
}

describe.each(testBackends())('the interception CA on $name', (backend) => {
  let db: Db;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
  });
  afterAll(() => db.close());
  beforeEach(async () => {
    await db.query('delete from interception_ca');
  });

  const rows = async () =>
    (await db.query<StoredRow>('select id, private_key, encryption from interception_ca order by created_at'))
      .rows;

  describe('first start', () => {
    it('creates one self-signed P-256 CA, pathLen 0, valid ten years, and finds it again later', async () => {
      const first = await ensureInterceptionCa(db, { now: T0 });
      expect(first.created).toBe(true);
      expect(first.id).toMatch(/^[0-9a-f]{16}$/);
      expect(await ensureInterceptionCa(db, { now: days(1) })).toEqual({ id: first.id, created: false });

      const { pem } = await exportTrustBundle(db, days(1));
      const [cert, ...more] = splitBundle(pem);
      expect(more).toEqual([]);
      expect(cert?.ca).toBe(true);
      expect(cert?.subject).toBe(`O=reins\nCN=reins interception CA ${first.id}`);
      expect(cert?.checkIssued(cert)).toBe(true);
      expect(cert?.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: 'prime256v1' });
      expect(new Date(cert?.validTo ?? 0).getTime()).toBe(T0.getTime() + CA_VALIDITY_MS);
      // The extensions as the brief asks for them, read with the library's parser.
      const parsed = new x509.X509Certificate(pem);
      const basic = parsed.getExtension(x509.BasicConstraintsExtension);
      expect(basic).toMatchObject({ ca: true, pathLength: 0, critical: true });
      const usage = parsed.getExtension(x509.KeyUsagesExtension);
      expect(usage?.critical).toBe(true);
      expect(usage?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
      expect(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/);
    });

    it('ends with exactly one CA when two starts race', async () => {
      const results = await Promise.all([
        ensureInterceptionCa(db, { now: T0, secretKey: SECRET }),
        ensureInterceptionCa(db, { now: T0, secretKey: SECRET }),
      ]);
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(results[0]?.id).toBe(results[1]?.id);
      expect((await rows()).map((r) => r.id)).toEqual([results[0]?.id]);
    });

    it('refuses a second active CA written by hand', async () => {
      await ensureInterceptionCa(db, { now: T0 });
      await expect(
        db.query(
          `insert into interception_ca (id, cert_pem, private_key, not_after)
           select 'second', cert_pem, private_key, not_after from interception_ca`,
        ),
      ).rejects.toThrow(/interception_ca_one_active/);
    });

    it('warns when the key is stored unencrypted, and not when a secret is set', async () => {
      const warnings: string[] = [];
      await ensureInterceptionCa(db, { now: T0, warn: (m) => warnings.push(m) });
      expect(warnings).toEqual([expect.stringMatching(/stored unencrypted .* set REINS_SECRET_KEY/)]);

      await db.query('delete from interception_ca');
      warnings.length = 0;
      await ensureInterceptionCa(db, { now: T0, secretKey: SECRET, warn: (m) => warnings.push(m) });
      expect(warnings).toEqual([]);
    });
  });

  describe('encryption at rest', () => {
    it('stores ciphertext, not the PEM, when REINS_SECRET_KEY is set, and signs with the decrypted key', async () => {
      const { id } = await ensureInterceptionCa(db, { now: T0, secretKey: SECRET });
      const [row] = await rows();
      expect(row?.encryption).toBe('aes-256-gcm+scrypt:v1');
      const pem = await decryptPrivateKey(
        { encryption: row?.encryption ?? '', privateKey: row?.private_key ?? '' },
        SECRET,
        `interception_ca:${id}`,
        'test',
      );
      const body = pem.split('\n').filter((line) => line !== '' && !line.startsWith('-----'));
      expect(body.length).toBeGreaterThan(0);
      expect(row?.private_key).not.toContain('PRIVATE KEY');
      for (const line of body) expect(row?.private_key).not.toContain(line);

      const ca = await loadSigningCa(db, { secretKey: SECRET, now: T0 });
      expect(ca.id).toBe(id);
      const signature = await crypto.subtle.sign(x509.EC_SIGNATURE, ca.privateKey, Buffer.from('hello'));
      expect(
        await crypto.subtle.verify(
          x509.EC_SIGNATURE,
          await ca.certificate.publicKey.export(x509.EC_KEY, ['verify']),
          signature,
          Buffer.from('hello'),
        ),
      ).toBe(true);
      // The loaded key signs, and cannot be read back out of the process.
      expect(ca.privateKey.extractable).toBe(false);
    });

    it('refuses to load or rotate with a missing or wrong secret, and changes nothing', async () => {
      await ensureInterceptionCa(db, { now: T0, secretKey: SECRET });
      await expect(loadSigningCa(db, { now: T0 })).rejects.toMatchObject({
        code: 'secret_key_missing',
        message: expect.stringMatching(
          /^interception CA [0-9a-f]{16} is encrypted .* REINS_SECRET_KEY is not set/,
        ),
      });
      await expect(loadSigningCa(db, { now: T0, secretKey: 'wrong' })).rejects.toMatchObject({
        code: 'secret_key_mismatch',
      });
      await expect(rotateInterceptionCa(db, { now: days(1) })).rejects.toMatchObject({
        code: 'secret_key_missing',
      });
      await expect(rotateInterceptionCa(db, { now: days(1), secretKey: 'wrong' })).rejects.toMatchObject({
        code: 'secret_key_mismatch',
      });
      expect(await rows()).toHaveLength(1);
    });

    it('stores the PEM unencrypted, scheme none, without a secret', async () => {
      await ensureInterceptionCa(db, { now: T0 });
      const [row] = await rows();
      expect(row?.encryption).toBe('none');
      expect(row?.private_key).toContain('BEGIN PRIVATE KEY');
    });

    it('refuses a stored key that does not belong to the certificate', async () => {
      await ensureInterceptionCa(db, { now: T0 });
      const other = await crypto.subtle.generateKey(x509.EC_KEY, true, ['sign', 'verify']);
      const pem = KeyObject.from(other.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
      await db.query('update interception_ca set private_key = $1', [pem]);
      await expect(loadSigningCa(db, { now: T0 })).rejects.toMatchObject({ code: 'ca_key_mismatch' });
    });
  });

  describe('rotation', () => {
    it('signs with the new CA and keeps the old one in the bundle for the overlap, newest first', async () => {
      const { id: oldId } = await ensureInterceptionCa(db, { now: T0, secretKey: SECRET });
      const rotation = await rotateInterceptionCa(db, { now: days(10), secretKey: SECRET });
      expect(rotation.id).not.toBe(oldId);
      expect(rotation.replaced).toEqual({ id: oldId, trustedUntil: days(40) });

      expect((await loadSigningCa(db, { secretKey: SECRET, now: days(11) })).id).toBe(rotation.id);
      expect(await ensureInterceptionCa(db, { now: days(11) })).toMatchObject({
        id: rotation.id,
        created: false,
      });

      const during = await exportTrustBundle(db, days(39));
      expect(during.cas.map((c) => [c.id, c.state])).toEqual([
        [rotation.id, 'active'],
        [oldId, 'trusted'],
      ]);
      expect(splitBundle(during.pem).map((c) => c.subject.split('CA ')[1])).toEqual([rotation.id, oldId]);

      const after = await exportTrustBundle(db, days(40));
      expect(after.cas.map((c) => c.id)).toEqual([rotation.id]);
      expect(splitBundle(after.pem)).toHaveLength(1);
    });

    it('erases the private key of the CA it replaces: it never signs again', async () => {
      const { id: oldId } = await ensureInterceptionCa(db, { now: T0 });
      await rotateInterceptionCa(db, { now: days(1) });
      const old = (await rows()).find((r) => r.id === oldId);
      expect(old?.private_key).toBeNull();
      const listed = await listInterceptionCas(db, days(2));
      expect(listed.find((c) => c.id === oldId)).toMatchObject({ state: 'trusted', encryption: 'erased' });
    });

    it('drops the old CA at once with an overlap of 0', async () => {
      await ensureInterceptionCa(db, { now: T0 });
      const rotation = await rotateInterceptionCa(db, { now: days(1), overlapMs: 0 });
      expect((await exportTrustBundle(db, days(1))).cas.map((c) => c.id)).toEqual([rotation.id]);
    });

    it('creates the first CA when none exists yet', async () => {
      const rotation = await rotateInterceptionCa(db, { now: T0 });
      expect(rotation.replaced).toBeNull();
      expect(await ensureInterceptionCa(db, { now: T0 })).toEqual({ id: rotation.id, created: false });
    });

    it('rotates twice in a row, one CA after the other, when two rotations race', async () => {
      const { id: first } = await ensureInterceptionCa(db, { now: T0 });
      const [a, b] = await Promise.all([
        rotateInterceptionCa(db, { now: days(1) }),
        rotateInterceptionCa(db, { now: days(1) }),
      ]);
      // Whichever went first replaced the first CA; the other replaced the one it had created.
      const [earlier, later] = a.replaced?.id === first ? [a, b] : [b, a];
      expect(earlier.replaced?.id).toBe(first);
      expect(later.replaced?.id).toBe(earlier.id);
      const listed = await listInterceptionCas(db, days(1));
      expect(listed.filter((c) => c.state === 'active').map((c) => c.id)).toEqual([later.id]);
      expect(listed).toHaveLength(3);
    });
  });

  describe('expiry', () => {
    it('warns within 30 days of the CA expiring', async () => {
      const warnings: string[] = [];
      await ensureInterceptionCa(db, { now: T0, secretKey: SECRET });
      await ensureInterceptionCa(db, { now: days(3640), secretKey: SECRET, warn: (m) => warnings.push(m) });
      expect(warnings).toEqual([expect.stringMatching(/expires at .*run `reins ca rotate`/)]);
    });

    it('refuses to sign or export with an expired CA, and says to rotate', async () => {
      await ensureInterceptionCa(db, { now: T0 });
      const later = days(3651);
      await expect(ensureInterceptionCa(db, { now: later })).rejects.toMatchObject({ code: 'ca_expired' });
      await expect(loadSigningCa(db, { now: later })).rejects.toMatchObject({ code: 'ca_expired' });
      await expect(exportTrustBundle(db, later)).rejects.toMatchObject({
        code: 'ca_expired',
        message: expect.stringContaining('reins ca rotate'),
      });
      const rotation = await rotateInterceptionCa(db, { now: later });
      expect((await exportTrustBundle(db, later)).cas.map((c) => c.id)).toEqual([rotation.id]);
    });
  });

  it('says there is no CA yet before the first start', async () => {
    await expect(exportTrustBundle(db, T0)).rejects.toMatchObject({ code: 'ca_missing' });
    await expect(loadSigningCa(db, { now: T0 })).rejects.toMatchObject({ code: 'ca_missing' });
    expect(await listInterceptionCas(db, T0)).toEqual([]);
  });

  it('lists every CA without private material', async () => {
    await ensureInterceptionCa(db, { now: T0, secretKey: SECRET });
    await rotateInterceptionCa(db, { now: days(1), secretKey: SECRET });
    const listed = await listInterceptionCas(db, days(2));
    expect(listed.map((c) => c.state)).toEqual(['active', 'trusted']);
    for (const info of listed) {
      expect(Object.keys(info).sort()).toEqual(
        [
          'createdAt',
          'encryption',
          'fingerprint256',
          'id',
          'notAfter',
          'retiredAt',
          'state',
          'subject',
          'trustedUntil',
        ].sort(),
      );
      expect(info.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    }
    expect(JSON.stringify(listed)).not.toContain('PRIVATE');
  });
});

const url = testDatabaseUrl();
describe.runIf(url !== undefined)('the interception CA shared by two processes on PostgreSQL', () => {
  it('ends with exactly one CA when two gateways start at once', async () => {
    const schema = uniqueName();
    const a = await openPg(url as string, { schema, max: 2 });
    const b = await openPg(url as string, { schema, max: 2 });
    try {
      await migrate(a);
      const results = await Promise.all([
        ensureInterceptionCa(a, { now: T0, secretKey: SECRET }),
        ensureInterceptionCa(b, { now: T0, secretKey: SECRET }),
      ]);
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(results[0]?.id).toBe(results[1]?.id);
      const [ca, other] = await Promise.all([
        loadSigningCa(a, { secretKey: SECRET, now: T0 }),
        loadSigningCa(b, { secretKey: SECRET, now: T0 }),
      ]);
      expect(ca.certPem).toBe(other.certPem);
      expect((await listInterceptionCas(b, T0)).map((c) => [c.id, c.state])).toEqual([
        [results[0]?.id, 'active'],
      ]);
    } finally {
      await a.query(`drop schema "${schema}" cascade`).catch(() => undefined);
      await Promise.all([a.close(), b.close()]);
    }
  });
});
