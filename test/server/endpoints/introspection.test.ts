// RFC 7662 introspection of reins' JWT access tokens over real HTTP, on every database backend.
import { generateKeyPair, importJWK, SignJWT } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadKeys } from '../../../src/server/keys/index.ts';
import { recordIssued } from '../../../src/server/provider/index.ts';
import { exampleSources } from '../../policy/support.ts';
import { testBackends } from '../../support/db.ts';
import { type AuthServer, clientAssertion, GATEWAY, startAuthServer } from '../provider/support.ts';
import { billingToken, introspect, portal, post, SECRETS, shipping, useTestSecrets } from './support.ts';

useTestSecrets();

describe.each(testBackends())('introspection on $name', (backend) => {
  let server: AuthServer;
  beforeEach(async () => {
    server = await startAuthServer(backend, exampleSources());
  });
  afterEach(async () => {
    await server.close();
  });

  it('answers a fresh token active, with its claims, to a client of the same tenant', async () => {
    const token = await billingToken(server);
    const { status, body } = await introspect(server, token, portal());
    expect(status).toBe(200);
    expect(body).toMatchObject({
      active: true,
      token_type: 'Bearer',
      client_id: 'billing-agent',
      sub: 'billing-agent',
      tenant: 'acme',
      iss: server.url,
      aud: GATEWAY,
      scope: expect.stringContaining('egress:payments'),
    });
    expect(body.jti).toEqual(expect.any(String));
    expect(Number(body.exp) - Number(body.iat)).toBe(120);
    expect(body.authorization_details).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'egress' })]),
    );
  });

  it('authenticates callers by private_key_jwt too', async () => {
    const token = await billingToken(server);
    const assertion = await clientAssertion(server, 'research-agent');
    const { status, body } = await introspect(server, token, {}, assertion);
    expect(status).toBe(200);
    expect(body.active).toBe(true);
  });

  it('authenticates callers by client_secret_post too', async () => {
    const token = await billingToken(server, shipping());
    const { status, body } = await introspect(
      server,
      token,
      {},
      {
        client_id: 'ops-console',
        client_secret: SECRETS.GLOBEX_OPS_CONSOLE_SECRET,
      },
    );
    expect(status).toBe(200);
    expect(body).toMatchObject({ active: true, tenant: 'globex', client_id: 'shipping-agent' });
  });

  it("answers another tenant's client inactive", async () => {
    const token = await billingToken(server);
    const { status, body } = await introspect(server, token, shipping());
    expect(status).toBe(200);
    expect(body).toEqual({ active: false });
  });

  it('refuses an unauthenticated caller with 401 invalid_client and reveals nothing', async () => {
    const token = await billingToken(server);
    const anonymous = await post(server, '/introspect', { token });
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.text)).toMatchObject({ error: 'invalid_client' });
    expect(anonymous.text).not.toContain('billing-agent');
    const wrongSecret = await introspect(server, token, {
      authorization: `Basic ${Buffer.from('support-portal:wrong').toString('base64')}`,
    });
    expect(wrongSecret.status).toBe(401);
    expect(wrongSecret.body).toMatchObject({ error: 'invalid_client' });
  });

  it('answers a garbage token inactive', async () => {
    for (const token of ['garbage', 'a.b.c', 'eyJhbGciOiJub25lIn0.e30.']) {
      const { status, body } = await introspect(server, token, portal());
      expect(status).toBe(200);
      expect(body).toEqual({ active: false });
    }
  });

  it('answers inactive for a token signed by a key that is not ours', async () => {
    const token = await billingToken(server);
    const [header, payload] = token.split('.');
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT(JSON.parse(Buffer.from(String(payload), 'base64url').toString()))
      .setProtectedHeader(JSON.parse(Buffer.from(String(header), 'base64url').toString()))
      .sign(privateKey);
    const { body } = await introspect(server, forged, portal());
    expect(body).toEqual({ active: false });
  });

  it('answers an expired token inactive although the ledger knows it', async () => {
    const keys = await loadKeys(server.db, undefined);
    const signing = keys.signing[0];
    if (!signing) throw new Error('no signing key');
    const now = Math.floor(Date.now() / 1000);
    const jti = crypto.randomUUID();
    await recordIssued(server.db, {
      jti,
      tenant: 'acme',
      clientId: 'billing-agent',
      sub: 'billing-agent',
      agent: 'billing-agent',
      parentJti: null,
      kind: 'client_credentials',
      kid: signing.kid,
      iat: now - 600,
      exp: now - 300,
    });
    const expired = await new SignJWT({ client_id: 'billing-agent', tenant: 'acme' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: signing.kid })
      .setIssuer(server.url)
      .setAudience(GATEWAY)
      .setSubject('billing-agent')
      .setJti(jti)
      .setIssuedAt(now - 600)
      .setExpirationTime(now - 300)
      .sign(await importJWK(signing.privateJwk, 'ES256'));
    const { status, body } = await introspect(server, expired, portal());
    expect(status).toBe(200);
    expect(body).toEqual({ active: false });
  });

  it('answers inactive for a token of ours whose jti the ledger does not know', async () => {
    const keys = await loadKeys(server.db, undefined);
    const signing = keys.signing[0];
    if (!signing) throw new Error('no signing key');
    const unknown = await new SignJWT({ client_id: 'billing-agent', tenant: 'acme' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: signing.kid })
      .setIssuer(server.url)
      .setAudience(GATEWAY)
      .setSubject('billing-agent')
      .setJti(crypto.randomUUID())
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(await importJWK(signing.privateJwk, 'ES256'));
    const { body } = await introspect(server, unknown, portal());
    expect(body).toEqual({ active: false });
  });
});
