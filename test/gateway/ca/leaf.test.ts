// Leaf certificates as a TLS client sees them: Node's own TLS server and client on 127.0.0.1,
// verifying against the exported bundle; the certificate's fields; the cache's sharing, bounds
// and freshness; and the hosts it refuses.
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type SecureContext, type Server, type TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureInterceptionCa,
  exportTrustBundle,
  loadSigningCa,
  rotateInterceptionCa,
  type SigningCa,
} from '../../../src/gateway/ca/authority.ts';
import { issueLeaf, LEAF_VALIDITY_MS, LeafCache, normaliseLeafHost } from '../../../src/gateway/ca/leaf.ts';
import * as x509 from '../../../src/gateway/ca/x509.ts';
import type { Db } from '../../../src/store/db.ts';
import { migrate } from '../../../src/store/migrate.ts';
import { openPglite } from '../../../src/store/pglite.ts';
import { splitBundle } from './support.ts';

const HOUR = 60 * 60_000;

// Two CAs from one database: `oldCa`, then `ca` after a rotation. `oldBundle` is what agents held
// before the rotation (the old CA only), `bundle` what `reins ca export` prints after it (both).
let db: Db;
let oldCa: SigningCa;
let oldBundle: string;
let ca: SigningCa;
let bundle: string;
beforeAll(async () => {
  db = await openPglite('memory');
  await migrate(db);
  await ensureInterceptionCa(db, { now: new Date() });
  oldCa = await loadSigningCa(db, { now: new Date() });
  oldBundle = (await exportTrustBundle(db, new Date())).pem;
  await rotateInterceptionCa(db, { now: new Date() });
  ca = await loadSigningCa(db, { now: new Date() });
  bundle = (await exportTrustBundle(db, new Date())).pem;
});
afterAll(() => db.close());

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

/** A TLS server on 127.0.0.1 that answers "ok" with the context `contextFor` gives the client's SNI. */
async function sniServer(contextFor: (name: string) => Promise<SecureContext>): Promise<number> {
  const server = createServer(
    {
      SNICallback: (name, cb) =>
        contextFor(name).then(
          (ctx) => cb(null, ctx),
          (err: Error) => cb(err),
        ),
    },
    (socket) => socket.end('ok'),
  );
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** A TLS server on 127.0.0.1 that always presents `key` and `cert` (no SNI: e.g. an IP host). */
async function fixedServer(key: string, cert: string): Promise<number> {
  const server = createServer({ key, cert }, (socket) => socket.end('ok'));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

interface Handshake {
  readonly authorized: boolean;
  readonly error?: string;
  readonly body?: string;
  readonly peer?: X509Certificate;
}

/** Connects as an agent would, trusting `ca` only, and reports whether the server verified. */
function handshake(port: number, options: { ca: string; servername?: string }): Promise<Handshake> {
  return new Promise((resolve) => {
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, ...options }, () => {
      const peer = socket.getPeerX509Certificate();
      let body = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        body += chunk;
      });
      socket.on('end', () => resolve({ authorized: socket.authorized, body, ...(peer ? { peer } : {}) }));
    });
    socket.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ authorized: false, error: err.code ?? err.message }),
    );
  });
}

describe('a leaf over TLS', () => {
  it('verifies against the exported bundle for the name the agent asked for', async () => {
    const cache = new LeafCache(ca);
    const port = await sniServer((name) => cache.secureContextFor(name));
    const result = await handshake(port, { ca: bundle, servername: 'api.example.test' });
    expect(result).toMatchObject({ authorized: true, body: 'ok' });
    expect(result.peer?.subjectAltName).toBe('DNS:api.example.test');
    expect(result.peer?.issuer).toBe(`O=reins\nCN=reins interception CA ${ca.id}`);
  });

  it('is refused by a client that does not trust the CA', async () => {
    const cache = new LeafCache(ca);
    const port = await sniServer((name) => cache.secureContextFor(name));
    // The CA travels in the chain, self-signed: sending it does not make a client trust it.
    const result = await handshake(port, { ca: oldBundle, servername: 'api.example.test' });
    expect(result).toMatchObject({ authorized: false, error: 'SELF_SIGNED_CERT_IN_CHAIN' });
  });

  it('is refused for another name than the one it was issued for', async () => {
    const leaf = await issueLeaf(ca, 'api.example.test', { now: new Date() });
    const port = await fixedServer(leaf.keyPem, leaf.chainPem);
    const result = await handshake(port, { ca: bundle, servername: 'evil.example.test' });
    expect(result).toMatchObject({ authorized: false, error: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });

  it('names an IP host in an iPAddress subjectAltName, which verifies', async () => {
    const leaf = await issueLeaf(ca, '127.0.0.1', { now: new Date() });
    const port = await fixedServer(leaf.keyPem, leaf.chainPem);
    // No servername: Node checks the certificate against the IP it dialled.
    const result = await handshake(port, { ca: bundle });
    expect(result).toMatchObject({ authorized: true, body: 'ok' });
    expect(result.peer?.subjectAltName).toBe('IP Address:127.0.0.1');
  });

  it('names IPv6 hosts by their address, in any spelling', async () => {
    for (const [host, address] of [
      ['[::1]', '::1'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
    ] as const) {
      const leaf = await issueLeaf(ca, host, { now: new Date() });
      expect(leaf.host).toBe(address);
      const cert = new X509Certificate(leaf.certPem);
      expect(cert.checkIP(address)).toBe(address);
      expect(cert.subjectAltName).toMatch(/^IP Address:/);
    }
  });

  it('keeps verifying across a rotation for agents that hold the new bundle', async () => {
    expect(splitBundle(oldBundle).map((c) => c.subject)).toEqual([
      `O=reins\nCN=reins interception CA ${oldCa.id}`,
    ]);
    expect(splitBundle(bundle).map((c) => c.subject)).toEqual([
      `O=reins\nCN=reins interception CA ${ca.id}`,
      `O=reins\nCN=reins interception CA ${oldCa.id}`,
    ]);
    const oldLeaf = await issueLeaf(oldCa, 'api.example.test', { now: new Date() });
    const newLeaf = await issueLeaf(ca, 'api.example.test', { now: new Date() });
    expect(new X509Certificate(newLeaf.certPem).checkIssued(new X509Certificate(ca.certPem))).toBe(true);

    // A leaf from the old CA (a gateway not yet restarted) and one from the new both verify…
    const oldPort = await fixedServer(oldLeaf.keyPem, oldLeaf.chainPem);
    const newPort = await fixedServer(newLeaf.keyPem, newLeaf.chainPem);
    const opts = { ca: bundle, servername: 'api.example.test' };
    expect(await handshake(oldPort, opts)).toMatchObject({ authorized: true });
    expect(await handshake(newPort, opts)).toMatchObject({ authorized: true });
    // …while an agent still holding only the old bundle does not accept the new CA's leaves:
    // hence "give agents the new bundle, then restart the gateways".
    expect(await handshake(newPort, { ...opts, ca: oldBundle })).toMatchObject({ authorized: false });
    expect(await handshake(oldPort, { ...opts, ca: oldBundle })).toMatchObject({ authorized: true });
  });
});

describe('the leaf certificate', () => {
  it('is a short-lived P-256 serverAuth certificate with the extensions a TLS client expects', async () => {
    const now = new Date('2026-03-04T05:06:07Z');
    const leaf = await issueLeaf(ca, 'API.Example.Test.', { now });
    expect(leaf.host).toBe('api.example.test');
    expect(leaf.caId).toBe(ca.id);
    expect(leaf.notBefore).toEqual(new Date(now.getTime() - 5 * 60_000));
    expect(leaf.notAfter).toEqual(new Date(now.getTime() + LEAF_VALIDITY_MS));
    expect(LEAF_VALIDITY_MS).toBe(24 * HOUR);
    expect(leaf.serialNumber).toMatch(/^[0-9a-f]{32}$/i);
    expect(leaf.chainPem).toBe(leaf.certPem + ca.certPem);

    const cert = new X509Certificate(leaf.certPem);
    expect(cert.ca).toBe(false);
    expect(cert.subject).toBe('CN=api.example.test');
    expect(cert.subjectAltName).toBe('DNS:api.example.test');
    expect(cert.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: 'prime256v1' });
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);

    const parsed = new x509.X509Certificate(leaf.certPem);
    expect(parsed.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: false, critical: true });
    const usage = parsed.getExtension(x509.KeyUsagesExtension);
    expect(usage).toMatchObject({ usages: x509.KeyUsageFlags.digitalSignature, critical: true });
    expect(parsed.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
    ]);
    expect(parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(ca.subjectKeyId);
    expect(parsed.getExtension(x509.SubjectAlternativeNameExtension)?.critical).toBe(false);
  });

  it('gets random serial numbers', async () => {
    const now = new Date();
    const serials = await Promise.all([1, 2, 3].map(() => issueLeaf(ca, 'a.example.test', { now })));
    expect(new Set(serials.map((l) => l.serialNumber)).size).toBe(3);
  });

  it('names a host too long for a commonName in a critical subjectAltName only (RFC 5280 §4.2.1.6)', async () => {
    const host = `${'a'.repeat(60)}.example.test`;
    const leaf = await issueLeaf(ca, host, { now: new Date() });
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.subject ?? '').toBe('');
    expect(cert.checkHost(host)).toBe(host);
    const parsed = new x509.X509Certificate(leaf.certPem);
    expect(parsed.getExtension(x509.SubjectAlternativeNameExtension)?.critical).toBe(true);
  });

  it('never outlives the CA that signed it', async () => {
    const now = new Date(ca.notAfter.getTime() - HOUR);
    const leaf = await issueLeaf(ca, 'a.example.test', { now });
    expect(leaf.notAfter).toEqual(ca.notAfter);
    await expect(issueLeaf(ca, 'a.example.test', { now: ca.notAfter })).rejects.toMatchObject({
      code: 'ca_expired',
    });
  });

  it.each([
    ['a wildcard', '*.example.test'],
    ['an empty name', ''],
    ['an empty label', 'a..example.test'],
    ['a port', 'example.test:443'],
    ['a zone id', 'fe80::1%eth0'],
    ['a URL', 'https://example.test/'],
    ['an IPv4 address in a form resolvers disagree on', '0x7f.1'],
    ['a control character', 'a\u0000.example.test'],
  ])('refuses %s', async (_, host) => {
    expect(normaliseLeafHost(host)).toBeNull();
    await expect(issueLeaf(ca, host, { now: new Date() })).rejects.toMatchObject({ code: 'invalid_host' });
  });
});

describe('the leaf cache', () => {
  it('returns the same context for the same host, whatever its spelling', async () => {
    const cache = new LeafCache(ca);
    const first = await cache.secureContextFor('api.example.test');
    expect(await cache.secureContextFor('API.example.test.')).toBe(first);
    expect(await cache.secureContextFor('other.example.test')).not.toBe(first);
    expect(cache.issued).toBe(2);
  });

  it('shares one generation between concurrent requests for one host', async () => {
    const cache = new LeafCache(ca);
    const contexts = await Promise.all(
      Array.from({ length: 20 }, () => cache.secureContextFor('api.example.test')),
    );
    expect(new Set(contexts).size).toBe(1);
    expect(cache.issued).toBe(1);
    const leaves = await Promise.all([cache.leafFor('api.example.test'), cache.leafFor('api.example.test')]);
    expect(leaves[0]).toBe(leaves[1]);
  });

  it('keeps at most maxEntries leaves, least recently used out first', async () => {
    const cache = new LeafCache(ca, { maxEntries: 2 });
    const a = await cache.leafFor('a.example.test');
    await cache.leafFor('b.example.test');
    await cache.leafFor('a.example.test'); // a is now the most recently used
    await cache.leafFor('c.example.test'); // evicts b
    expect(cache.size).toBe(2);
    expect(await cache.leafFor('a.example.test')).toBe(a);
    expect(cache.issued).toBe(3);
    await cache.leafFor('b.example.test');
    expect(cache.issued).toBe(4);
  });

  it('replaces a leaf half way through its validity, long before its notAfter', async () => {
    let now = new Date('2026-03-04T00:00:00Z');
    const cache = new LeafCache(ca, { now: () => now });
    const first = await cache.leafFor('api.example.test');
    now = new Date(now.getTime() + 11 * HOUR);
    expect(await cache.leafFor('api.example.test')).toBe(first);
    now = new Date(now.getTime() + 2 * HOUR);
    const second = await cache.leafFor('api.example.test');
    expect(second).not.toBe(first);
    expect(second.notAfter.getTime() - now.getTime()).toBe(LEAF_VALIDITY_MS);
  });

  it('does not keep a failed generation, and refuses bad hosts without caching them', async () => {
    let now = ca.notAfter;
    const cache = new LeafCache(ca, { now: () => now });
    await expect(cache.secureContextFor('api.example.test')).rejects.toMatchObject({ code: 'ca_expired' });
    expect(cache.size).toBe(0);
    now = new Date();
    await expect(cache.secureContextFor('api.example.test')).resolves.toBeDefined();
    await expect(cache.secureContextFor('*.example.test')).rejects.toMatchObject({ code: 'invalid_host' });
    expect(cache.size).toBe(1);
  });

  it('issues from the new CA after setCa, keyed by CA as well as host', async () => {
    const cache = new LeafCache(oldCa);
    const before = await cache.leafFor('api.example.test');
    cache.setCa(ca);
    expect(cache.ca).toBe(ca);
    const after = await cache.leafFor('api.example.test');
    expect(before.caId).toBe(oldCa.id);
    expect(after.caId).toBe(ca.id);
    expect(cache.size).toBe(1);
  });
});
