// GET /ca.pem on the authorization server's listener, as `reins serve` starts it
// (src/runtime/auth-server.ts): the interception CA bundle from the database, its caching
// headers, discovery naming it, a rotation showing, and the answers when there is nothing to serve.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CA_URI_MEMBER as CLIENT_CA_URI_MEMBER } from '../../src/agent-run/ca-fetch.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ensureInterceptionCa, exportTrustBundle, rotateInterceptionCa } from '../../src/gateway/ca/index.ts';
import { type AuthServer, startAuthServer } from '../../src/runtime/auth-server.ts';
import {
  bundleEtag,
  CA_BUNDLE_MAX_AGE_SECONDS,
  CA_URI_MEMBER,
  ifNoneMatchHolds,
  interceptionCaRoute,
} from '../../src/runtime/ca-route.ts';
import type { Db } from '../../src/store/db.ts';
import { splitBundle } from '../gateway/ca/support.ts';
import { openMigratedDb, testBackends } from '../support/db.ts';

// The public name agents use; the listener is on an ephemeral loopback port behind it.
const ISSUER = 'https://auth.reins.test';
const config = loadConfig({}, { REINS_ISSUER: ISSUER, REINS_HOST: '127.0.0.1', REINS_PORT: '0' });
const silent = pino({ level: 'silent' });

describe.each(testBackends())('GET /ca.pem on $name', (backend) => {
  let db: Db;
  let server: AuthServer;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
    // Read on every request: these tests rotate and look at once. The cache has its own test.
    server = await startAuthServer(config, db, silent, { caBundleCacheMs: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await db?.close();
  });

  it('answers 404 with a JSON error saying there is no CA yet, stored nowhere', async () => {
    const response = await fetch(`${server.url}/ca.pem`);
    expect(response.status).toBe(404);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('etag')).toBeNull();
    expect(await response.json()).toEqual({
      error: 'ca_missing',
      error_description:
        'no interception CA yet: the gateway creates one at first start, or run `reins ca rotate`',
    });
  });

  it('serves the bundle `reins ca export` prints, as PEM with a strong ETag and a max-age', async () => {
    const { id } = await ensureInterceptionCa(db, { now: new Date() });
    const response = await fetch(`${server.url}/ca.pem`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toBe((await exportTrustBundle(db, new Date())).pem);
    expect(splitBundle(text).map((c) => [c.subject, c.ca])).toEqual([
      [`O=reins\nCN=reins interception CA ${id}`, true],
    ]);
    expect(text).not.toContain('PRIVATE KEY');
    expect(response.headers.get('content-type')).toBe('application/x-pem-file');
    expect(response.headers.get('etag')).toBe(bundleEtag(text));
    expect(response.headers.get('etag')).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(response.headers.get('cache-control')).toBe(`public, max-age=${CA_BUNDLE_MAX_AGE_SECONDS}`);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');

    const head = await fetch(`${server.url}/ca.pem`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('etag')).toBe(bundleEtag(text));
    expect(await head.text()).toBe('');
  });

  it('answers a conditional GET with the current ETag 304 and no body, any other ETag 200', async () => {
    const first = await fetch(`${server.url}/ca.pem`);
    const etag = String(first.headers.get('etag'));
    await first.text();
    const same = await fetch(`${server.url}/ca.pem`, { headers: { 'if-none-match': etag } });
    expect(same.status).toBe(304);
    expect(same.headers.get('etag')).toBe(etag);
    expect(await same.text()).toBe('');
    const listed = await fetch(`${server.url}/ca.pem`, { headers: { 'if-none-match': `"other", ${etag}` } });
    expect(listed.status).toBe(304);
    await listed.text();
    const other = await fetch(`${server.url}/ca.pem`, { headers: { 'if-none-match': '"not-the-bundle"' } });
    expect(other.status).toBe(200);
    expect(await other.text()).toContain('BEGIN CERTIFICATE');
  });

  it('holds both certificates after `reins ca rotate`, the new one first, under a new ETag', async () => {
    const before = await fetch(`${server.url}/ca.pem`);
    const oldEtag = String(before.headers.get('etag'));
    const [old] = splitBundle(await before.text());
    const rotated = await rotateInterceptionCa(db, { now: new Date() });
    expect(rotated.replaced).not.toBeNull();

    const after = await fetch(`${server.url}/ca.pem`, { headers: { 'if-none-match': oldEtag } });
    expect(after.status).toBe(200);
    const text = await after.text();
    expect(splitBundle(text).map((c) => c.subject)).toEqual([
      `O=reins\nCN=reins interception CA ${rotated.id}`,
      String(old?.subject),
    ]);
    expect(splitBundle(text)[1]?.fingerprint256).toBe(old?.fingerprint256);
    expect(after.headers.get('etag')).toBe(bundleEtag(text));
    expect(after.headers.get('etag')).not.toBe(oldEtag);
  });

  it('names the bundle as reins_interception_ca_uri in both discovery documents', async () => {
    expect(CA_URI_MEMBER).toBe(CLIENT_CA_URI_MEMBER);
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
      const response = await fetch(`${server.url}${path}`);
      expect(response.status, path).toBe(200);
      const metadata = (await response.json()) as Record<string, unknown>;
      expect(metadata.issuer, path).toBe(ISSUER);
      expect(metadata[CA_URI_MEMBER], path).toBe(`${ISSUER}/ca.pem`);
    }
  });

  it('refuses other methods with 405 and Allow: GET, HEAD', async () => {
    const response = await fetch(`${server.url}/ca.pem`, { method: 'POST', body: 'x' });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('GET, HEAD');
    expect(await response.json()).toMatchObject({ error: 'invalid_request' });
  });
});

describe('the /ca.pem cache', () => {
  const [backend] = testBackends();
  if (backend === undefined) throw new Error('no test backend');
  let db: Db;
  let server: Server | undefined;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
    await ensureInterceptionCa(db, { now: new Date() });
  });
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });
  afterAll(() => db?.close());

  /** The route alone in a Koa app on an ephemeral port, with the given clock and database. */
  async function serve(options: Parameters<typeof interceptionCaRoute>[0]): Promise<string> {
    const app = new Koa();
    app.use(interceptionCaRoute(options).middleware);
    server = createServer(app.callback());
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/ca.pem`;
  }

  it('reuses what it read for the cache period; a rotation in another process shows once it ends', async () => {
    let clock = Date.now();
    const now = () => new Date(clock);
    const url = await serve({ db, issuer: ISSUER, cacheMs: 10_000, now });
    const etagOf = async () => {
      const response = await fetch(url);
      await response.text();
      return response.headers.get('etag');
    };
    const before = await etagOf();
    await rotateInterceptionCa(db, { now: new Date() });
    clock += 9_999;
    expect(await etagOf()).toBe(before);
    clock += 2;
    const after = await etagOf();
    expect(after).not.toBe(before);
    expect(after).toBe(bundleEtag((await exportTrustBundle(db, new Date())).pem));
  });

  it('answers 503 without detail when the database cannot be read, and reports the error', async () => {
    const closed = await backend.open();
    await closed.close();
    const errors: unknown[] = [];
    const url = await serve({ db: closed, issuer: ISSUER, cacheMs: 0, onError: (err) => errors.push(err) });
    const response = await fetch(url);
    expect(response.status).toBe(503);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('retry-after')).toBe('1');
    expect(await response.json()).toEqual({
      error: 'temporarily_unavailable',
      error_description: 'the interception CA cannot be read from the database right now',
    });
    expect(errors).toHaveLength(1);
  });

  it.each([
    ['the ETag itself', '"abc"', true],
    ['a list holding it', '"x", "abc" ,"y"', true],
    ['its weak form (If-None-Match compares weakly)', 'W/"abc"', true],
    ['*', '*', true],
    ['another tag', '"abd"', false],
    ['the tag without quotes', 'abc', false],
    ['nothing', '', false],
  ])('If-None-Match: %s → 304 is %s', (_name, header, holds) => {
    expect(ifNoneMatchHolds(header, '"abc"')).toBe(holds);
  });

  it('passes every other path on', async () => {
    const url = await serve({ db, issuer: ISSUER });
    const response = await fetch(url.replace('/ca.pem', '/ca.pem.bak'));
    expect(response.status).toBe(404);
    expect(await response.text()).toBe('Not Found');
  });
});
