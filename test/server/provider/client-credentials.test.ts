// Client-credentials tokens for agents over real HTTP, on every database backend.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashSecret } from '../../../src/policy/index.ts';
import { exampleSources, sourcesOf, yaml } from '../../policy/support.ts';
import { nextValue, testBackends } from '../../support/db.ts';
import {
  type AuthServer,
  applySources,
  basic,
  clientAssertion,
  GATEWAY,
  requestToken,
  startAuthServer,
} from './support.ts';

// The example secret policies/acme.yaml publishes (auth.example_secret).
const BILLING_SECRET = 'reins-example-billing-secret';
const CC = { grant_type: 'client_credentials' };

let savedEnv: string | undefined;
beforeAll(() => {
  savedEnv = process.env.ACME_BILLING_AGENT_SECRET;
  process.env.ACME_BILLING_AGENT_SECRET = BILLING_SECRET;
});
afterAll(() => {
  if (savedEnv === undefined) delete process.env.ACME_BILLING_AGENT_SECRET;
  else process.env.ACME_BILLING_AGENT_SECRET = savedEnv;
});

async function verify(server: AuthServer, token: unknown) {
  const jwks = createRemoteJWKSet(new URL(`${server.url}/jwks`));
  return jwtVerify(String(token), jwks, { issuer: server.url, audience: GATEWAY, typ: 'at+jwt' });
}

const billing = () => basic('billing-agent', BILLING_SECRET);

describe.each(testBackends())('client credentials on $name', (backend) => {
  let server: AuthServer;
  beforeEach(async () => {
    server = await startAuthServer(backend, exampleSources());
  });
  afterEach(async () => {
    await server.close();
  });

  it('issues a client_secret_basic agent a JWT that verifies against the JWKS and carries its grant', async () => {
    const { status, body } = await requestToken(server, CC, billing());
    expect(status).toBe(200);
    expect(body.token_type).toBe('Bearer');
    expect(body.expires_in).toBe(120);
    const { payload, protectedHeader } = await verify(server, body.access_token);
    expect(protectedHeader).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
    expect(payload).toMatchObject({
      iss: server.url,
      aud: GATEWAY,
      sub: 'billing-agent',
      client_id: 'billing-agent',
      tenant: 'acme',
      scope: 'egress:payments',
    });
    expect(typeof payload.jti).toBe('string');
    expect((payload.exp as number) - (payload.iat as number)).toBe(120);
    expect(payload.authorization_details).toEqual([
      { type: 'egress', locations: ['https://acme.api.saas.example/invoices'], actions: ['GET'] },
      { type: 'egress', locations: ['https://api.stripe.com/v1'], actions: ['GET', 'POST'] },
    ]);
    // The token response echoes the grant (RFC 9396 §7).
    expect(body.authorization_details).toEqual(payload.authorization_details);
    expect(body.scope).toBe('egress:payments');
  });

  it('issues a private_key_jwt agent its token, with the default five-minute lifetime', async () => {
    const { status, body } = await requestToken(server, {
      ...CC,
      resource: GATEWAY,
      ...(await clientAssertion(server, 'research-agent')),
    });
    expect(status).toBe(200);
    const { payload } = await verify(server, body.access_token);
    expect(payload).toMatchObject({
      sub: 'research-agent',
      client_id: 'research-agent',
      tenant: 'acme',
      scope: 'egress:research',
      authorization_details: [{ type: 'egress', locations: ['https://**.wikipedia.org/'], actions: ['GET'] }],
    });
    expect((payload.exp as number) - (payload.iat as number)).toBe(300);
  });

  it('records every issued jti in the ledger before answering', async () => {
    const { body } = await requestToken(server, CC, billing());
    const { payload } = await verify(server, body.access_token);
    const kid = decodeProtectedHeader(String(body.access_token)).kid;
    const { rows } = await server.db.query<Record<string, unknown>>(
      `select tenant, client_id, sub, agent, kind, kid, extract(epoch from expires_at)::bigint as exp
         from issued_tokens where jti = $1`,
      [payload.jti],
    );
    expect(rows).toEqual([
      {
        tenant: 'acme',
        client_id: 'billing-agent',
        sub: 'billing-agent',
        agent: 'billing-agent',
        kind: 'client_credentials',
        kid,
        exp: expect.anything(),
      },
    ]);
    expect(Number(rows[0]?.exp)).toBe(payload.exp);
  });

  it('narrows the grant to what authorization_details asks for', async () => {
    const details = [{ type: 'egress', locations: ['https://api.stripe.com/v1/charges'], actions: ['POST'] }];
    const { status, body } = await requestToken(
      server,
      { ...CC, authorization_details: JSON.stringify(details) },
      billing(),
    );
    expect(status).toBe(200);
    const { payload } = await verify(server, body.access_token);
    expect(payload.authorization_details).toEqual(details);
    expect(payload.scope).toBe('egress:payments');
  });

  it('narrows the grant to the integrations scope asks for', async () => {
    const { status, body } = await requestToken(server, { ...CC, scope: 'egress:payments' }, billing());
    expect(status).toBe(200);
    const { payload } = await verify(server, body.access_token);
    expect(payload.scope).toBe('egress:payments');
    expect(payload.authorization_details).toEqual([
      { type: 'egress', locations: ['https://api.stripe.com/v1'], actions: ['GET', 'POST'] },
    ]);
  });

  it('refuses authorization_details beyond the registration instead of cutting them', async () => {
    const details = [{ type: 'egress', locations: ['https://api.stripe.com/v1'], actions: ['DELETE'] }];
    const { status, body } = await requestToken(
      server,
      { ...CC, authorization_details: JSON.stringify(details) },
      billing(),
    );
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_authorization_details');
  });

  it('refuses a malformed egress entry (methods inside locations)', async () => {
    const details = [{ type: 'egress', locations: ['GET https://api.stripe.com/v1'] }];
    const { status, body } = await requestToken(
      server,
      { ...CC, authorization_details: JSON.stringify(details) },
      billing(),
    );
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_authorization_details');
  });

  it('refuses a scope for an integration the agent is not registered for', async () => {
    const { status, body } = await requestToken(server, { ...CC, scope: 'egress:research' }, billing());
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_scope');
  });

  it('refuses a resource other than the gateway', async () => {
    const { status, body } = await requestToken(
      server,
      { ...CC, resource: 'https://elsewhere.example' },
      billing(),
    );
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_target');
  });

  it('refuses a wrong secret and an unknown client with invalid_client', async () => {
    const wrong = await requestToken(server, CC, basic('billing-agent', 'not-the-secret'));
    expect([wrong.status, wrong.body.error]).toEqual([401, 'invalid_client']);
    const unknown = await requestToken(server, CC, basic('nobody', BILLING_SECRET));
    expect([unknown.status, unknown.body.error]).toEqual([401, 'invalid_client']);
  });

  it('refuses an assertion signed with a key that is not the client’s', async () => {
    // A key reins knows, but as acme's identity provider's, and a key nobody registered.
    const idp = readFileSync(
      fileURLToPath(new URL('../../../policies/keys/acme-idp.pem', import.meta.url)),
      'utf8',
    );
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString();
    for (const [pem, kid] of [
      [idp, 'acme-idp-1'],
      [idp, 'research-agent-1'],
      [stranger, 'research-agent-1'],
    ] as const) {
      const { status, body } = await requestToken(server, {
        ...CC,
        ...(await clientAssertion(server, 'research-agent', { pem, kid })),
      });
      expect([status, body.error]).toEqual([401, 'invalid_client']);
    }
  });

  it('refuses an app asking for a token by client credentials with unauthorized_client', async () => {
    process.env.ACME_SUPPORT_PORTAL_SECRET = 'portal-secret-used-only-in-tests';
    try {
      const { status, body } = await requestToken(
        server,
        CC,
        basic('support-portal', 'portal-secret-used-only-in-tests'),
      );
      expect([status, body.error]).toEqual([400, 'unauthorized_client']);
    } finally {
      delete process.env.ACME_SUPPORT_PORTAL_SECRET;
    }
  });

  it('advertises the grant, the egress type and the JWKS in the OpenID discovery document', async () => {
    const response = await fetch(`${server.url}/.well-known/openid-configuration`);
    const discovery = (await response.json()) as Record<string, unknown>;
    expect(discovery).toMatchObject({
      issuer: server.url,
      token_endpoint: `${server.url}/token`,
      jwks_uri: `${server.url}/jwks`,
      authorization_details_types_supported: ['egress'],
    });
    expect(discovery.grant_types_supported).toContain('client_credentials');
  });

  it('refuses the next token of an agent a policy apply removed, without a restart', async () => {
    expect((await requestToken(server, CC, billing())).status).toBe(200);
    const withoutBilling = exampleSources().map((source) =>
      source.name === 'acme.yaml'
        ? {
            ...source,
            text: source.text
              .replace(/\n {2}billing-agent:[\s\S]*?\n {2}research-agent:/, '\n  research-agent:')
              .replace(/may_delegate_to: \[billing-agent, /, 'may_delegate_to: ['),
          }
        : source,
    );
    const reloaded = nextValue<number | null>((resolve) => server.clients.onReload(resolve));
    const version = await applySources(server.db, withoutBilling);
    expect(await reloaded).toBe(version);
    const { status, body } = await requestToken(server, CC, billing());
    expect([status, body.error]).toEqual([401, 'invalid_client']);
  });
});

describe.each(testBackends())('hashed client secrets on $name', (backend) => {
  const secret = 'hashed-secret-used-only-in-tests';
  let server: AuthServer;
  beforeAll(async () => {
    const policy = yaml(
      'tenant: hashy',
      'agents:',
      '  post-agent:',
      `    auth: { method: client_secret_post, secret_hash: "${hashSecret(secret)}" }`,
      '    egress: ["GET https://en.wikipedia.org/"]',
      '  basic-agent:',
      `    auth: { method: client_secret_basic, secret_hash: "${hashSecret(secret)}" }`,
      '    egress: ["GET https://en.wikipedia.org/"]',
    );
    server = await startAuthServer(backend, sourcesOf({ 'hashy.yaml': policy }));
  });
  afterAll(async () => {
    await server.close();
  });

  it('accepts the secret whose scrypt hash the policy holds (client_secret_post)', async () => {
    const { status, body } = await requestToken(server, {
      ...CC,
      client_id: 'post-agent',
      client_secret: secret,
    });
    expect(status).toBe(200);
    const { payload } = await verify(server, body.access_token);
    expect(payload).toMatchObject({ sub: 'post-agent', tenant: 'hashy' });
  });

  it('accepts the secret whose scrypt hash the policy holds (client_secret_basic)', async () => {
    const { status } = await requestToken(server, CC, basic('basic-agent', secret));
    expect(status).toBe(200);
  });

  it('refuses a wrong secret for a hashed client with invalid_client', async () => {
    const post = await requestToken(server, { ...CC, client_id: 'post-agent', client_secret: 'wrong' });
    expect([post.status, post.body.error]).toEqual([401, 'invalid_client']);
    const viaBasic = await requestToken(server, CC, basic('basic-agent', 'wrong'));
    expect([viaBasic.status, viaBasic.body.error]).toEqual([401, 'invalid_client']);
  });

  it('does not let a secret vouched for one client authenticate another', async () => {
    // The vouched secret belongs to post-agent; basic-agent's metadata must not show it.
    const { status, body } = await requestToken(server, CC, basic('basic-agent', 'wrong'));
    expect([status, body.error]).toEqual([401, 'invalid_client']);
  });
});
