// RFC 8414 and OpenID discovery over real HTTP, on every database backend.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withExtraMetadata } from '../../../src/server/endpoints/index.ts';
import { exampleSources } from '../../policy/support.ts';
import { testBackends } from '../../support/db.ts';
import { type AuthServer, startAuthServer } from '../provider/support.ts';

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe.each(testBackends())('discovery on $name', (backend) => {
  let server: AuthServer;
  beforeEach(async () => {
    server = await startAuthServer(backend, exampleSources());
  });
  afterEach(async () => {
    await server.close();
  });

  it('serves RFC 8414 metadata listing only what works', async () => {
    const { status, body } = await getJson(`${server.url}/.well-known/oauth-authorization-server`);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      issuer: server.url,
      token_endpoint: `${server.url}/token`,
      jwks_uri: `${server.url}/jwks`,
      grant_types_supported: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      authorization_details_types_supported: ['egress'],
      introspection_endpoint: `${server.url}/introspect`,
      revocation_endpoint: `${server.url}/revoke`,
      response_types_supported: [],
      // The runtime's extra member (src/runtime/ca-route.ts), passed in as extraMetadata.
      reins_interception_ca_uri: `${server.url}/ca.pem`,
    });
    for (const name of [
      'token_endpoint_auth_methods_supported',
      'introspection_endpoint_auth_methods_supported',
      'revocation_endpoint_auth_methods_supported',
    ]) {
      // Never `none`: every client authenticates, and an unauthenticated caller learns nothing.
      expect(body[name]).toEqual(['private_key_jwt', 'client_secret_basic', 'client_secret_post']);
    }
    expect(body).not.toHaveProperty('scopes_supported');
    expect(body).not.toHaveProperty('userinfo_endpoint');
  });

  it('keeps serving the OpenID document, naming the same ledger endpoints', async () => {
    const { status, body } = await getJson(`${server.url}/.well-known/openid-configuration`);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      issuer: server.url,
      token_endpoint: `${server.url}/token`,
      jwks_uri: `${server.url}/jwks`,
      introspection_endpoint: `${server.url}/introspect`,
      revocation_endpoint: `${server.url}/revoke`,
      reins_interception_ca_uri: `${server.url}/ca.pem`,
    });
  });
});

describe('extra discovery members', () => {
  it('are added, but never replace a member the document states', () => {
    const document = { issuer: 'https://auth.example', token_endpoint: 'https://auth.example/token' };
    expect(
      withExtraMetadata(document, {
        issuer: 'https://attacker.example',
        reins_interception_ca_uri: 'https://auth.example/ca.pem',
      }),
    ).toEqual({ ...document, reins_interception_ca_uri: 'https://auth.example/ca.pem' });
    expect(document).not.toHaveProperty('reins_interception_ca_uri');
  });
});
