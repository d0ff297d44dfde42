// Tokens that name key ids the gateway does not know: refused with 407 without a database read
// per request (the key set is read again at most once per cooldown, concurrent misses share that
// read, a failed read is not retried per request either), never cached as valid, and unable to
// push valid tokens out of the verified-token cache. A key rotated in by another process is still
// accepted once the cooldown has passed. Reads are counted through a Db wrapper: every query the
// gateway's key loader sends goes through it.
import { decodeJwt, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import pino from 'pino';
import { Client } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseOpening } from '../../src/egress/index.ts';
import { AuditWriter } from '../../src/gateway/audit.ts';
import { KEY_REFRESH_COOLDOWN_MS, KeySet } from '../../src/gateway/keys.ts';
import { LiveState } from '../../src/gateway/live-state.ts';
import { type Gateway, startGateway } from '../../src/gateway/proxy.ts';
import { tableResolver } from '../../src/gateway/resolve.ts';
import { TokenVerifier } from '../../src/gateway/token.ts';
import { loadKeys, loadPublicJwks, rotateKeys } from '../../src/server/keys/index.ts';
import type { Queryable, QueryResult } from '../../src/store/db.ts';
import { sourcesOf } from '../policy/support.ts';
import {
  type AuthServer,
  basic,
  GATEWAY,
  requestToken,
  startAuthServer,
} from '../server/provider/support.ts';
import { testBackends } from '../support/db.ts';
import {
  auditedStream,
  gatewayPolicy,
  startUpstream,
  type Upstream,
  WORKER_ENV,
  WORKER_SECRET,
  within,
} from './support.ts';

/** The gateway's database as its key loader sees it: every query counted, and breakable. */
class CountingDb implements Queryable {
  queries = 0;
  down = false;
  constructor(private readonly db: Queryable) {}
  query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.queries++;
    if (this.down) return Promise.reject(new Error('connection refused'));
    return this.db.query<R>(sql, params);
  }
}

/** Milliseconds on the key set's clock; tests move it. */
class Clock {
  ms = 1_000_000;
  readonly now = () => this.ms;
}

/** A token as an attacker makes it: real claims, a random kid, the attacker's own key. */
async function unknownKidToken(claimsOf: string, kid = crypto.randomUUID()): Promise<string> {
  const { privateKey } = await attackerKey;
  return new SignJWT({ ...decodeJwt(claimsOf), jti: crypto.randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
    .sign(privateKey);
}
const attackerKey = generateKeyPair('ES256');
type PrivateKey = Awaited<typeof attackerKey>['privateKey'];

/** The claims of `claimsOf`, a fresh jti, signed with `jwk` and the header given. */
async function signedWith(claimsOf: string, jwk: JWK, header: Record<string, unknown>): Promise<string> {
  return new SignJWT({ ...decodeJwt(claimsOf), jti: crypto.randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...header })
    .sign(jwk);
}

interface Sent {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

describe.each(testBackends())('unknown key ids on $name', (backend) => {
  let auth: AuthServer;
  let upstream: Upstream;
  let live: LiveState;
  let audit: AuditWriter;
  let gateway: Gateway;
  let keysDb: CountingDb;
  let clock: Clock;
  let verifier: TokenVerifier;
  let valid: string;
  let target: string;

  /** Sends one request for `target` through the gateway with `token`. */
  async function send(token: string): Promise<Sent> {
    const client = new Client(gateway.url);
    try {
      const answer = await client.request({
        method: 'GET',
        path: target,
        headers: { host: new URL(target).host, 'proxy-authorization': `Bearer ${token}` },
      });
      const text = await answer.body.text();
      // The gateway's own answers are JSON; the upstream echoes the (empty) request body.
      const own = String(answer.headers['content-type']).startsWith('application/json');
      return { status: answer.statusCode, body: own ? (JSON.parse(text) as Record<string, unknown>) : {} };
    } finally {
      await client.close();
    }
  }

  beforeAll(async () => {
    process.env[WORKER_ENV] = WORKER_SECRET;
    upstream = await startUpstream();
    auth = await startAuthServer(backend, sourcesOf(gatewayPolicy(upstream.port)));
    live = await LiveState.open(auth.db, { pollMs: 100 });
    audit = new AuditWriter(auth.db, pino({ level: 'silent' }));
    const opening = parseOpening(`127.0.0.1/32:${upstream.port}`);
    if (!opening.ok) throw new Error(opening.error.message);
    target = `http://api.test:${upstream.port}/v1/keys`;
    const { status, body } = await requestToken(
      auth,
      { grant_type: 'client_credentials' },
      basic('worker', WORKER_SECRET),
    );
    if (status !== 200) throw new Error(JSON.stringify(body));
    valid = String(body.access_token);
    keysDb = new CountingDb(auth.db);
    clock = new Clock();
    const keys = new KeySet(() => loadPublicJwks(keysDb), { now: clock.now });
    verifier = new TokenVerifier({ issuer: auth.url, audience: GATEWAY, keys: keys.getKey });
    gateway = await startGateway({
      host: '127.0.0.1',
      port: 0,
      verifier,
      live,
      openings: [opening.opening],
      resolve: tableResolver({ 'api.test': ['127.0.0.1'] }),
      events: auditedStream(audit),
    });
  });
  afterAll(async () => {
    await gateway?.close();
    await audit?.drain();
    await live?.close();
    await auth?.close();
    await upstream?.close();
  });
  beforeEach(() => {
    keysDb.down = false;
  });

  it('refuses 200 tokens naming random kids with 407 and reads the key set no more within a cooldown', async () => {
    expect((await send(valid)).status).toBe(200);
    const readsBefore = keysDb.queries;
    const seenBefore = upstream.seen.length;
    const { rows: before } = await auth.db.query<{ n: number }>(
      'select count(*)::int as n from audit_events where status = 407',
    );
    const tokens = await Promise.all(Array.from({ length: 200 }, () => unknownKidToken(valid)));
    const answers: Sent[] = [];
    for (let i = 0; i < tokens.length; i += 50) {
      answers.push(...(await Promise.all(tokens.slice(i, i + 50).map(send))));
    }
    expect(answers.map((a) => a.status)).toEqual(tokens.map(() => 407));
    expect(new Set(answers.map((a) => a.body.error))).toEqual(new Set(['invalid_token']));
    expect(keysDb.queries).toBe(readsBefore);
    expect(upstream.seen.length).toBe(seenBefore);
    expect(verifier.size).toBe(1);
    // Each refusal is audited like any other.
    await within(5_000, async () => {
      const { rows } = await auth.db.query<{ n: number }>(
        'select count(*)::int as n from audit_events where status = 407',
      );
      return (rows[0]?.n ?? 0) - (before[0]?.n ?? 0) >= 200 ? true : undefined;
    });
  });

  it('lets 50 concurrent misses past the cooldown share one read of the key set', async () => {
    clock.ms += KEY_REFRESH_COOLDOWN_MS;
    const readsBefore = keysDb.queries;
    const tokens = await Promise.all(Array.from({ length: 50 }, () => unknownKidToken(valid)));
    const answers = await Promise.all(tokens.map(send));
    expect(answers.map((a) => a.status)).toEqual(tokens.map(() => 407));
    expect(keysDb.queries - readsBefore).toBe(1);
    // The refresh just made starts a new cooldown: more misses read nothing.
    const more = await Promise.all(Array.from({ length: 20 }, () => unknownKidToken(valid)));
    expect((await Promise.all(more.map(send))).every((a) => a.status === 407)).toBe(true);
    expect(keysDb.queries - readsBefore).toBe(1);
  });

  it('accepts a key rotated in by another process once the cooldown has passed', async () => {
    // Another process rotates: the new key is in the database; this gateway has not read it.
    const rotation = await rotateKeys(auth.db, { now: new Date() });
    const signing = (await loadKeys(auth.db, undefined)).signing.find((k) => k.kid === rotation.kid);
    if (signing === undefined) throw new Error('the rotated key is not published');
    const rotated = await signedWith(valid, signing.privateJwk, { kid: rotation.kid });
    const readsBefore = keysDb.queries;
    const seenBefore = upstream.seen.length;
    // Within the cooldown of the last read it is refused like any unknown kid, without a read…
    const early = await send(rotated);
    expect(early.status).toBe(407);
    expect(keysDb.queries).toBe(readsBefore);
    // …and not remembered as refused: once the cooldown has passed, one read and it is accepted.
    clock.ms += KEY_REFRESH_COOLDOWN_MS;
    const later = await send(rotated);
    expect(later.status).toBe(200);
    expect(keysDb.queries - readsBefore).toBe(1);
    expect(upstream.seen.slice(seenBefore).map((s) => s.url)).toEqual(['/v1/keys']);
    // The key that was active still verifies (it is retiring, still published).
    const retiring = signingKeyOf(valid, await loadKeys(auth.db, undefined));
    expect((await send(await signedWith(valid, retiring, { kid: kidOf(valid) }))).status).toBe(200);
  });

  it('does not retry a failed read of the key set per request while the database is down', async () => {
    clock.ms += KEY_REFRESH_COOLDOWN_MS;
    keysDb.down = true;
    const readsBefore = keysDb.queries;
    const tokens = await Promise.all(Array.from({ length: 30 }, () => unknownKidToken(valid)));
    const answers = await Promise.all(tokens.map(send));
    expect(answers.map((a) => a.status)).toEqual(tokens.map(() => 407));
    const more = await Promise.all(Array.from({ length: 30 }, () => unknownKidToken(valid)));
    expect((await Promise.all(more.map(send))).every((a) => a.status === 407)).toBe(true);
    expect(keysDb.queries - readsBefore).toBe(1);
    // The keys already held still verify: a known kid needs no read.
    const fresh = await signedWith(valid, signingKeyOf(valid, await loadKeys(auth.db, undefined)), {
      kid: kidOf(valid),
    });
    expect((await send(fresh)).status).toBe(200);
    expect(keysDb.queries - readsBefore).toBe(1);
  });

  it('refuses a token without a kid without reading the key set, though its signature is good', async () => {
    clock.ms += KEY_REFRESH_COOLDOWN_MS;
    const readsBefore = keysDb.queries;
    const signing = signingKeyOf(valid, await loadKeys(auth.db, undefined));
    const kidless = await signedWith(valid, signing, {});
    const answer = await send(kidless);
    expect(answer.status).toBe(407);
    expect(answer.body.error).toBe('invalid_token');
    expect(keysDb.queries).toBe(readsBefore);
  });
});

/** The kid a token names. */
function kidOf(token: string): string {
  const header = JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString('utf8'));
  return String(header.kid);
}

/** The private key that signed `token`, from the server's key set. */
function signingKeyOf(token: string, keys: Awaited<ReturnType<typeof loadKeys>>): JWK {
  const key = keys.signing.find((k) => k.kid === kidOf(token));
  if (key === undefined) throw new Error('the signing key is not published');
  return key.privateJwk as JWK;
}

describe('the verified-token cache under a flood of bad tokens', () => {
  const issuer = 'https://issuer.reins.test';
  let signer: { privateKey: PrivateKey; jwk: JWK };
  let loads: number;
  let verifier: TokenVerifier;

  async function token(kid: string, key: PrivateKey | JWK = signer.privateKey): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      tenant: 'acme',
      client_id: 'worker',
      authorization_details: [{ type: 'egress', locations: ['https://api.example.com/v1'] }],
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
      .setIssuer(issuer)
      .setSubject('worker')
      .setAudience(GATEWAY)
      .setJti(crypto.randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(key);
  }

  beforeAll(async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    signer = { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } };
  });
  beforeEach(() => {
    loads = 0;
    const keys = new KeySet(async () => {
      loads++;
      return { keys: [signer.jwk] };
    });
    verifier = new TokenVerifier({ issuer, audience: GATEWAY, keys: keys.getKey, maxEntries: 2 });
  });

  it('makes concurrent misses wait for one refresh, which lets in a key it brings', async () => {
    const clock = new Clock();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let published = [signer.jwk];
    const keys = new KeySet(
      async () => {
        loads++;
        await gate;
        return { keys: published };
      },
      { now: clock.now },
    );
    const gated = new TokenVerifier({ issuer, audience: GATEWAY, keys: keys.getKey });
    const { privateKey: next, publicKey: nextPublic } = await generateKeyPair('ES256');
    const nextJwk: JWK = { ...(await exportJWK(nextPublic)), kid: 'k2', alg: 'ES256', use: 'sig' };
    const tokens = await Promise.all([
      ...Array.from({ length: 49 }, () => token(crypto.randomUUID())),
      token('k2', next),
    ]);
    const pending = tokens.map((t) => gated.verify(t));
    // Every check has reached the key set before the read it started answers.
    await new Promise((resolve) => setImmediate(resolve));
    expect(loads).toBe(1);
    published = [signer.jwk, nextJwk];
    release();
    const results = await Promise.all(pending);
    expect(results.slice(0, 49).every((r) => !r.ok)).toBe(true);
    expect(results[49]?.ok).toBe(true);
    expect(loads).toBe(1);
  });

  it('never caches a token with a bad signature or an unknown kid as valid', async () => {
    const { privateKey: other } = await generateKeyPair('ES256');
    const forged = await token('k1', other);
    const garbage = await token('not-a-key');
    for (const t of [forged, forged, garbage, garbage]) {
      const checked = await verifier.verify(t);
      expect(checked.ok).toBe(false);
    }
    // Each was checked afresh, none answered from the cache, nothing stored.
    expect(verifier.hits).toBe(0);
    expect(verifier.misses).toBe(4);
    expect(verifier.size).toBe(0);
    const checked = await verifier.verify(garbage);
    expect(checked).toMatchObject({ ok: false, problem: 'invalid' });
    expect(loads).toBe(1);
  });

  it('keeps a valid token cached through a flood of unknown kids and bad signatures', async () => {
    const good = await token('k1');
    expect((await verifier.verify(good)).ok).toBe(true);
    const { privateKey: other } = await generateKeyPair('ES256');
    const flood = await Promise.all([
      ...Array.from({ length: 100 }, () => token(crypto.randomUUID())),
      ...Array.from({ length: 20 }, () => token('k1', other)),
    ]);
    const results = await Promise.all(flood.map((t) => verifier.verify(t)));
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(verifier.size).toBe(1);
    const hitsBefore = verifier.hits;
    expect((await verifier.verify(good)).ok).toBe(true);
    expect(verifier.hits).toBe(hitsBefore + 1);
    expect(loads).toBe(1);
  });
});
