// private_key_jwt client assertions live at most five minutes (RFC 7523 §3): the rule itself,
// and the token and introspection endpoints over real HTTP, asserting what the replay store kept.
import { generateKeyPairSync, hash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkAssertionLifetime, MAX_ASSERTION_LIFETIME } from '../../../src/server/clients/index.ts';
import { sourcesOf, yaml } from '../../policy/support.ts';
import { testBackends } from '../../support/db.ts';
import { introspect } from '../endpoints/support.ts';
import { type AuthServer, clientAssertion, requestToken, startAuthServer } from './support.ts';

// One private_key_jwt agent with a key made for this file.
const KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const PEM = KEY.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const JWK = { ...KEY.publicKey.export({ format: 'jwk' }), kid: 'jwt-agent-1' };
const POLICY = yaml(
  'tenant: lifetimes',
  'agents:',
  '  jwt-agent:',
  `    auth: { method: private_key_jwt, jwks: { keys: [${JSON.stringify(JWK)}] } }`,
  '    egress: ["GET https://en.wikipedia.org/"]',
);
const AGENT = 'jwt-agent';
const signed = (server: AuthServer, options: Parameters<typeof clientAssertion>[2] = {}) =>
  clientAssertion(server, AGENT, { pem: PEM, kid: 'jwt-agent-1', ...options });

const NOW = 1_800_000_000;
const TOLERANCE = 15;
const YEAR = 365 * 24 * 3600;

describe('the lifetime rule for client assertions', () => {
  const accepted: [string, { iat?: unknown; exp?: unknown }][] = [
    ['a one-minute assertion', { iat: NOW, exp: NOW + 60 }],
    ['one of exactly five minutes', { iat: NOW, exp: NOW + MAX_ASSERTION_LIFETIME }],
    ['one signed by a clock 10 s ahead of ours', { iat: NOW + 10, exp: NOW + 70 }],
    ['one without iat whose exp is a minute away', { exp: NOW + 60 }],
    ['one without iat at the limit, clock skew included', { exp: NOW + MAX_ASSERTION_LIFETIME + TOLERANCE }],
  ];
  for (const [name, claims] of accepted) {
    it(`accepts ${name}`, () => {
      expect(checkAssertionLifetime(claims, NOW, TOLERANCE)).toEqual({ ok: true });
    });
  }

  const refused: [string, { iat?: unknown; exp?: unknown }, string][] = [
    ['an assertion living a year', { iat: NOW, exp: NOW + YEAR }, `lives ${YEAR} s (exp - iat)`],
    ['one a second over the limit', { iat: NOW, exp: NOW + MAX_ASSERTION_LIFETIME + 1 }, 'at most 300 s'],
    ['one without iat whose exp is a year away', { exp: NOW + YEAR }, 'has no iat'],
    [
      'one whose iat is in the future, however short its span',
      { iat: NOW + YEAR, exp: NOW + YEAR + 60 },
      'in the future',
    ],
    ['one whose iat is not a number', { iat: 'now', exp: NOW + 60 }, 'iat must be a number'],
    ['one without exp', { iat: NOW }, 'numeric exp'],
  ];
  for (const [name, claims, says] of refused) {
    it(`refuses ${name}, saying what to fix`, () => {
      const checked = checkAssertionLifetime(claims, NOW, TOLERANCE);
      expect(checked.ok).toBe(false);
      if (checked.ok) return;
      expect(checked.description).toContain(says);
      expect(checked.description).toContain('with exp at most 300 s after iat');
      // It travels in a WWW-Authenticate parameter too: no double quotes.
      expect(checked.description).not.toContain('"');
    });
  }
});

describe.each(testBackends())('client assertion lifetime on $name', (backend) => {
  let server: AuthServer;
  beforeEach(async () => {
    server = await startAuthServer(backend, sourcesOf({ 'lifetimes.yaml': POLICY }));
  });
  afterEach(async () => {
    await server.close();
  });

  const now = () => Math.floor(Date.now() / 1000);
  const CC = { grant_type: 'client_credentials' };

  /** When the replay store forgets a jti (seconds since the epoch), or null if it never kept it. */
  async function replayKeptUntil(jti: string): Promise<number | null> {
    const id = hash('sha256', `${AGENT}${jti}`, 'base64url');
    const { rows } = await server.db.query<{ exp: string }>(
      `select extract(epoch from expires_at)::bigint as exp from oidc_models
        where model = 'ReplayDetection' and id = $1`,
      [id],
    );
    return rows[0] === undefined ? null : Number(rows[0].exp);
  }

  async function tokensOf(clientId: string): Promise<number> {
    const { rows } = await server.db.query<{ n: string }>(
      'select count(*) as n from issued_tokens where client_id = $1',
      [clientId],
    );
    return Number(rows[0]?.n);
  }

  it('issues a token for a four-minute assertion and keeps its jti only that long', async () => {
    const jti = crypto.randomUUID();
    const exp = now() + 240;
    const { status } = await requestToken(server, {
      ...CC,
      ...(await signed(server, { jti, exp })),
    });
    expect(status).toBe(200);
    const keptUntil = await replayKeptUntil(jti);
    expect(keptUntil).not.toBeNull();
    // oidc-provider keeps it until exp plus its clock tolerance (and a second of rounding).
    expect(Number(keptUntil)).toBeLessThanOrEqual(exp + TOLERANCE + 1);
  });

  it('refuses an assertion whose exp is a year after its iat, issues nothing and stores no jti', async () => {
    const jti = crypto.randomUUID();
    const { status, body } = await requestToken(server, {
      ...CC,
      ...(await signed(server, { jti, exp: now() + YEAR })),
    });
    expect([status, body.error]).toEqual([401, 'invalid_client']);
    expect(body.error_description).toMatch(/lives \d+ s \(exp - iat\); this server accepts at most 300 s/);
    expect(await replayKeptUntil(jti)).toBeNull();
    expect(await tokensOf(AGENT)).toBe(0);
  });

  it('refuses an assertion without iat whose exp is a year away, and accepts one a minute away', async () => {
    const far = crypto.randomUUID();
    const refused = await requestToken(server, {
      ...CC,
      ...(await signed(server, { jti: far, iat: null, exp: now() + YEAR })),
    });
    expect([refused.status, refused.body.error]).toEqual([401, 'invalid_client']);
    expect(refused.body.error_description).toContain('has no iat');
    expect(await replayKeptUntil(far)).toBeNull();

    const near = await requestToken(server, {
      ...CC,
      ...(await signed(server, { iat: null, exp: now() + 60 })),
    });
    expect(near.status).toBe(200);
  });

  it('refuses an assertion dated a year ahead, however short its own span', async () => {
    const jti = crypto.randomUUID();
    const iat = now() + YEAR;
    const { status, body } = await requestToken(server, {
      ...CC,
      ...(await signed(server, { jti, iat, exp: iat + 60 })),
    });
    expect([status, body.error]).toEqual([401, 'invalid_client']);
    expect(body.error_description).toContain('in the future');
    expect(await replayKeptUntil(jti)).toBeNull();
  });

  it('applies the same limit to callers of the introspection endpoint', async () => {
    const issued = await requestToken(server, { ...CC, ...(await signed(server)) });
    expect(issued.status).toBe(200);
    const token = String(issued.body.access_token);
    const jti = crypto.randomUUID();
    const long = await signed(server, { jti, exp: now() + YEAR });
    const { status, body } = await introspect(server, token, {}, long);
    expect([status, body.error]).toEqual([401, 'invalid_client']);
    expect(body).not.toHaveProperty('active');
    expect(await replayKeptUntil(jti)).toBeNull();
  });
});
