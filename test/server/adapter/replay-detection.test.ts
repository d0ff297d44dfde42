// A real oidc-provider on an ephemeral port, storing through our adapter, with a private_key_jwt
// client asking for client-credentials tokens: the assertion replay cases of issue 4.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdapterError,
  createAdapterFactory,
  installAtomicReplayDetection,
} from '../../../src/server/adapter/index.ts';
import type { Db } from '../../../src/store/db.ts';
import { openMigratedDb, testBackends } from '../../support/db.ts';

const CLIENT_ID = 'billing-agent';

interface Running {
  tokenEndpoint: string;
  provider: Provider;
  close(): Promise<void>;
}

async function startProvider(db: Db, clientJwk: JWK, options: { atomic: boolean }): Promise<Running> {
  let handler: ReturnType<Provider['callback']> | undefined;
  const server: Server = createServer((req, res) => handler?.(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const signing = await generateKeyPair('ES256', { extractable: true });
  const provider = new Provider(issuer, {
    adapter: createAdapterFactory(db),
    jwks: { keys: [{ ...(await exportJWK(signing.privateKey)), alg: 'ES256', use: 'sig', kid: 'server' }] },
    clients: [
      {
        client_id: CLIENT_ID,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        id_token_signed_response_alg: 'ES256',
        jwks: { keys: [clientJwk] },
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    clientAuthMethods: ['private_key_jwt'],
    features: { clientCredentials: { enabled: true }, devInteractions: { enabled: false } },
  });
  if (options.atomic) installAtomicReplayDetection(provider);
  handler = provider.callback();

  return {
    tokenEndpoint: `${issuer}/token`,
    provider,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function requestToken(tokenEndpoint: string, assertion: string): Promise<Response> {
  return fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: CLIENT_ID,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    }),
  });
}

describe.each(testBackends())('client assertion replay detection on $name', (backend) => {
  let db: Db;
  let clientKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  let clientJwk: JWK;
  let atomic: Running;

  const assertionFor = (aud: string, jti = randomUUID()) =>
    new SignJWT({ jti })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(CLIENT_ID)
      .setSubject(CLIENT_ID)
      .setAudience(aud)
      .setIssuedAt()
      .setExpirationTime('60s')
      .sign(clientKey);

  beforeAll(async () => {
    db = await openMigratedDb(backend);
    const pair = await generateKeyPair('ES256', { extractable: true });
    clientKey = pair.privateKey;
    clientJwk = { ...(await exportJWK(pair.publicKey)), alg: 'ES256', use: 'sig', kid: 'k1' };
    atomic = await startProvider(db, clientJwk, { atomic: true });
  });
  afterAll(async () => {
    await atomic?.close();
    await db?.close();
  });

  it('accepts the first use of an assertion and stores its token through the adapter', async () => {
    const response = await requestToken(atomic.tokenEndpoint, await assertionFor(atomic.tokenEndpoint));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { access_token: string; token_type: string };
    expect(body.token_type).toBe('Bearer');
    const rows = await db.query("select 1 from oidc_models where model = 'ClientCredentials'");
    expect(rows.rowCount).toBeGreaterThan(0);
  });

  it('answers invalid_client to a replay of the same assertion', async () => {
    const assertion = await assertionFor(atomic.tokenEndpoint);
    expect((await requestToken(atomic.tokenEndpoint, assertion)).status).toBe(200);
    const replay = await requestToken(atomic.tokenEndpoint, assertion);
    expect([400, 401]).toContain(replay.status);
    expect(await replay.json()).toMatchObject({ error: 'invalid_client' });
  });

  it('accepts exactly one of 20 copies of one assertion sent at once; the rest get invalid_client', async () => {
    const assertion = await assertionFor(atomic.tokenEndpoint);
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => requestToken(atomic.tokenEndpoint, assertion)),
    );
    const bodies = await Promise.all(responses.map((r) => r.json() as Promise<{ error?: string }>));
    expect(responses.filter((r) => r.status === 200)).toHaveLength(1);
    expect(bodies.filter((b) => b.error === 'invalid_client')).toHaveLength(19);
  });

  it('accepts 20 different assertions sent at once', async () => {
    const assertions = await Promise.all(
      Array.from({ length: 20 }, () => assertionFor(atomic.tokenEndpoint)),
    );
    const responses = await Promise.all(assertions.map((a) => requestToken(atomic.tokenEndpoint, a)));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
  });

  it("does not let another client's use of a jti block this client's assertion with the same jti", async () => {
    // The replay key is sha256(iss + jti), as in oidc-provider: one client's jti cannot block
    // another's. Here a row for a foreign issuer with the same jti must not stop this client.
    const jti = randomUUID();
    await atomic.provider.ReplayDetection.unique('another-agent', jti, Math.floor(Date.now() / 1000) + 60);
    const response = await requestToken(atomic.tokenEndpoint, await assertionFor(atomic.tokenEndpoint, jti));
    expect(response.status).toBe(200);
  });

  it('without the atomic hook still accepts only one of 20 copies (the adapter fails closed)', async () => {
    const stock = await startProvider(db, clientJwk, { atomic: false });
    try {
      const assertion = await assertionFor(stock.tokenEndpoint);
      const responses = await Promise.all(
        Array.from({ length: 20 }, () => requestToken(stock.tokenEndpoint, assertion)),
      );
      expect(responses.filter((r) => r.status === 200)).toHaveLength(1);
      // Copies whose stock find ran after the winner's write get invalid_client (401); those
      // whose find ran before it reach our upsert, which refuses, and end as server_error (500):
      // refused, but not with the right OAuth error. Hence the hook.
      const refused = responses.filter((r) => r.status !== 200).map((r) => r.status);
      expect(refused.every((status) => status === 401 || status === 500)).toBe(true);
    } finally {
      await stock.close();
    }
  });

  it('refuses to install the atomic hook on a provider that does not store through our adapter', () => {
    const provider = new Provider('http://127.0.0.1:1', {});
    expect(() => installAtomicReplayDetection(provider)).toThrow(AdapterError);
  });
});
