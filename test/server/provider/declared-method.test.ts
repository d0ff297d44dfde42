// A client authenticates only with the secret method its policy declares, at the token,
// introspection and revocation endpoints, in both directions (basic declared, post sent; post
// declared, Basic sent), with the right secret each time, so only the method can be the reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../../src/policy/index.ts';
import { presentedSecretMethod, secretMethodMismatch } from '../../../src/server/clients/index.ts';
import { sourcesOf, yaml } from '../../policy/support.ts';
import { testBackends } from '../../support/db.ts';
import { post } from '../endpoints/support.ts';
import { type AuthServer, basic, requestToken, startAuthServer } from './support.ts';

const CC = { grant_type: 'client_credentials' };
const postForm = (clientId: string, secret: string) => ({ client_id: clientId, client_secret: secret });

describe('the declared secret method', () => {
  it('reads an Authorization header as client_secret_basic and its absence as client_secret_post', () => {
    expect(presentedSecretMethod('Basic YTpi')).toBe('client_secret_basic');
    expect(presentedSecretMethod(undefined)).toBe('client_secret_post');
    expect(presentedSecretMethod('')).toBe('client_secret_post');
  });

  it('accepts the declared method and explains the other', () => {
    expect(secretMethodMismatch('a', 'client_secret_basic', 'client_secret_basic')).toBeNull();
    expect(secretMethodMismatch('a', 'client_secret_post', 'client_secret_post')).toBeNull();
    expect(secretMethodMismatch('a', 'client_secret_basic', 'client_secret_post')).toBe(
      "client 'a' is declared client_secret_basic in its policy and authenticates only that way: " +
        'the secret was sent as client_id and client_secret in the form body; ' +
        'send it in the Authorization header (HTTP Basic)',
    );
    expect(secretMethodMismatch('a', 'client_secret_post', 'client_secret_basic')).toContain(
      'send it as client_id and client_secret in the form body',
    );
  });
});

describe.each(testBackends())('declared client authentication methods on $name', (backend) => {
  // Secrets from the environment (secret_env) and from a hash (secret_hash), each method once.
  const ENV = {
    METHODS_BASIC_AGENT: 'basic-env-secret-used-only-in-tests',
    METHODS_POST_APP: 'post-app-secret-used-only-in-tests',
  };
  const hashed = 'hashed-secret-used-only-in-tests';
  const policy = yaml(
    'tenant: methods',
    'agents:',
    '  env-agent:',
    '    auth: { method: client_secret_basic, secret_env: METHODS_BASIC_AGENT }',
    '    egress: ["GET https://en.wikipedia.org/"]',
    '  post-agent:',
    `    auth: { method: client_secret_post, secret_hash: "${hashSecret(hashed)}" }`,
    '    egress: ["GET https://en.wikipedia.org/"]',
    '  basic-agent:',
    `    auth: { method: client_secret_basic, secret_hash: "${hashSecret(hashed)}" }`,
    '    egress: ["GET https://en.wikipedia.org/"]',
    'apps:',
    '  post-app:',
    '    auth: { method: client_secret_post, secret_env: METHODS_POST_APP }',
  );
  const envAgent = () => basic('env-agent', ENV.METHODS_BASIC_AGENT);
  let server: AuthServer;
  beforeAll(async () => {
    Object.assign(process.env, ENV);
    server = await startAuthServer(backend, sourcesOf({ 'methods.yaml': policy }));
  });
  afterAll(async () => {
    await server.close();
    for (const name of Object.keys(ENV)) delete process.env[name];
  });

  async function tokensOf(clientId: string): Promise<number> {
    const { rows } = await server.db.query<{ n: string }>(
      'select count(*) as n from issued_tokens where client_id = $1',
      [clientId],
    );
    return Number(rows[0]?.n);
  }

  async function envAgentToken(): Promise<{ token: string; jti: string }> {
    const { status, body } = await requestToken(server, CC, envAgent());
    expect(status).toBe(200);
    const token = String(body.access_token);
    const jti = JSON.parse(Buffer.from(String(token.split('.')[1]), 'base64url').toString()).jti as string;
    return { token, jti };
  }

  it('refuses a client_secret_basic agent sending its right secret in the form, and issues nothing', async () => {
    const { status, body } = await requestToken(server, {
      ...CC,
      ...postForm('env-agent', ENV.METHODS_BASIC_AGENT),
    });
    expect([status, body.error]).toEqual([401, 'invalid_client']);
    expect(body.error_description).toContain("client 'env-agent' is declared client_secret_basic");
    expect(body.error_description).toContain('send it in the Authorization header (HTTP Basic)');
    expect(await tokensOf('env-agent')).toBe(0);
    // The same agent, the same secret, the declared way: a token.
    expect((await requestToken(server, CC, envAgent())).status).toBe(200);
  });

  it('refuses a client_secret_post agent sending its right secret by HTTP Basic', async () => {
    const response = await fetch(`${server.url}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...basic('post-agent', hashed),
      },
      body: new URLSearchParams(CC).toString(),
    });
    const body = (await response.json()) as Record<string, unknown>;
    expect([response.status, body.error]).toEqual([401, 'invalid_client']);
    expect(String(body.error_description)).toContain(
      'send it as client_id and client_secret in the form body',
    );
    // RFC 6749 §5.2: a client that used the Authorization header is told how to authenticate.
    expect(response.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    expect(await tokensOf('post-agent')).toBe(0);
    const declared = await requestToken(server, { ...CC, ...postForm('post-agent', hashed) });
    expect(declared.status).toBe(200);
  });

  it('refuses a hashed client_secret_basic agent sending its right secret in the form', async () => {
    const { status, body } = await requestToken(server, { ...CC, ...postForm('basic-agent', hashed) });
    expect([status, body.error]).toEqual([401, 'invalid_client']);
    expect(body.error_description).toContain("'basic-agent' is declared client_secret_basic");
    expect(await tokensOf('basic-agent')).toBe(0);
    expect((await requestToken(server, CC, basic('basic-agent', hashed))).status).toBe(200);
  });

  it('holds introspection callers to their declared method, both ways, and reveals nothing', async () => {
    const { token } = await envAgentToken();
    const basicInForm = await post(server, '/introspect', {
      token,
      ...postForm('basic-agent', hashed),
    });
    expect(basicInForm.status).toBe(401);
    expect(JSON.parse(basicInForm.text)).toMatchObject({ error: 'invalid_client' });
    expect(basicInForm.text).not.toContain('env-agent');

    const appByBasic = await post(server, '/introspect', { token }, basic('post-app', ENV.METHODS_POST_APP));
    expect(appByBasic.status).toBe(401);
    expect(JSON.parse(appByBasic.text)).toMatchObject({ error: 'invalid_client' });
    expect(appByBasic.text).not.toContain('env-agent');

    // The same callers, the declared way.
    const appInForm = await post(server, '/introspect', {
      token,
      ...postForm('post-app', ENV.METHODS_POST_APP),
    });
    expect(JSON.parse(appInForm.text)).toMatchObject({ active: true, client_id: 'env-agent' });
    const basicByBasic = await post(server, '/introspect', { token }, basic('basic-agent', hashed));
    expect(JSON.parse(basicByBasic.text)).toMatchObject({ active: true, client_id: 'env-agent' });
  });

  it('holds revocation callers to their declared method, and revokes nothing on a mismatch', async () => {
    const { token, jti } = await envAgentToken();
    const revokedAt = async () => {
      const { rows } = await server.db.query<{ revoked_at: unknown }>(
        'select revoked_at from issued_tokens where jti = $1',
        [jti],
      );
      return rows[0]?.revoked_at ?? null;
    };
    const inForm = await post(server, '/revoke', {
      token,
      ...postForm('env-agent', ENV.METHODS_BASIC_AGENT),
    });
    expect(inForm.status).toBe(401);
    expect(JSON.parse(inForm.text)).toMatchObject({ error: 'invalid_client' });
    const appByBasic = await post(server, '/revoke', { token }, basic('post-app', ENV.METHODS_POST_APP));
    expect(appByBasic.status).toBe(401);
    expect(await revokedAt()).toBeNull();

    const declared = await post(server, '/revoke', { token }, envAgent());
    expect(declared.status).toBe(200);
    expect(await revokedAt()).not.toBeNull();
  });
});
