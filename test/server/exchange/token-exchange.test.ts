// RFC 8693 token exchange over real HTTP, on every database backend: the worked example, every
// refusal, chains, and revocation of a parent reaching its descendants.
import { createLocalJWKSet, jwtVerify, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sourcesOf } from '../../policy/support.ts';
import { testBackends } from '../../support/db.ts';
import { type AuthServer, GATEWAY, startAuthServer } from '../provider/support.ts';
import {
  agentToken,
  claimsOf,
  delegationPolicy,
  envName,
  exchange,
  GLOBEX_IDP,
  ID_TOKEN,
  type IdpKeys,
  idpKeys,
  introspect,
  revoke,
  SECRETS,
  userToken,
  userTokenWithHeader,
} from './support.ts';

let acme: IdpKeys;
let globex: IdpKeys;
const saved = new Map<string, string | undefined>();
beforeAll(async () => {
  acme = await idpKeys();
  globex = await idpKeys();
  for (const [id, secret] of Object.entries(SECRETS)) {
    saved.set(envName(id), process.env[envName(id)]);
    process.env[envName(id)] = secret;
  }
});
afterAll(() => {
  for (const [name, value] of saved) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

describe.each(testBackends())('token exchange on $name', (backend) => {
  let server: AuthServer;
  beforeEach(async () => {
    server = await startAuthServer(backend, sourcesOf(delegationPolicy(acme.publicJwk, globex.publicJwk)));
  });
  afterEach(async () => {
    await server.close();
  });

  /** The portal's token for a finance user, acted on by billing-agent. */
  async function portalToken(): Promise<string> {
    const { status, body } = await exchange(server, 'portal', {
      subject_token: await userToken(acme.privateKey),
      actor_token: await agentToken(server, 'billing-agent'),
      actor_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    });
    expect(status, JSON.stringify(body)).toBe(200);
    return String(body.access_token);
  }

  describe('the worked example', () => {
    it('gives an app, acting for a finance user through billing-agent, the user rights ∩ the agent grant', async () => {
      const subject = await userToken(acme.privateKey, { expiresIn: 600 });
      const { status, body } = await exchange(server, 'portal', {
        subject_token: subject,
        actor_token: await agentToken(server, 'billing-agent'),
        actor_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      });
      expect(status, JSON.stringify(body)).toBe(200);
      expect(body).toMatchObject({
        issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        token_type: 'Bearer',
        expires_in: 120,
        scope: 'egress:payments',
      });
      const jwks = createLocalJWKSet((await (await fetch(`${server.url}/jwks`)).json()) as { keys: [] });
      const { payload, protectedHeader } = await jwtVerify(String(body.access_token), jwks, {
        issuer: server.url,
        audience: GATEWAY,
        typ: 'at+jwt',
      });
      expect(protectedHeader.alg).toBe('ES256');
      expect(payload).toMatchObject({
        sub: 'bob@acme.test',
        client_id: 'portal',
        tenant: 'acme',
        act: { sub: 'billing-agent' },
        scope: 'egress:payments',
        authorization_details: [
          { type: 'egress', locations: ['https://api.stripe.com/v1'], actions: ['GET', 'POST'] },
        ],
      });
      expect(Number(payload.exp) - Number(payload.iat)).toBe(120);
      // The invoices rule of billing-agent is not in the user's rights: it is not in the token.
      expect(JSON.stringify(payload)).not.toContain('invoices');
    });

    it('lets an agent exchange a user token for itself, without an actor token', async () => {
      const { status, body } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey),
      });
      expect(status, JSON.stringify(body)).toBe(200);
      expect(claimsOf(body.access_token)).toMatchObject({
        sub: 'bob@acme.test',
        client_id: 'billing-agent',
        act: { sub: 'billing-agent' },
      });
    });

    it('accepts an ID token as the subject token', async () => {
      const { status } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey),
        subject_token_type: ID_TOKEN,
      });
      expect(status).toBe(200);
    });

    it('lives no longer than the subject token', async () => {
      const { status, body } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey, { expiresIn: 45 }),
      });
      expect(status).toBe(200);
      expect(Number(body.expires_in)).toBeLessThanOrEqual(45);
      expect(Number(body.expires_in)).toBeGreaterThan(40);
    });

    it('narrows to what authorization_details asks, and refuses asking beyond the intersection', async () => {
      const narrowed = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey),
        authorization_details: JSON.stringify([
          { type: 'egress', locations: ['https://api.stripe.com/v1/refunds'], actions: ['POST'] },
        ]),
      });
      expect(narrowed.status, JSON.stringify(narrowed.body)).toBe(200);
      expect(claimsOf(narrowed.body.access_token).authorization_details).toEqual([
        { type: 'egress', locations: ['https://api.stripe.com/v1/refunds'], actions: ['POST'] },
      ]);
      // The agent may read invoices, the user may not: asking for it is an error, not a cut.
      const beyond = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey),
        authorization_details: JSON.stringify([
          { type: 'egress', locations: ['https://invoices.acme.test/api'], actions: ['GET'] },
        ]),
      });
      expect(beyond.status).toBe(400);
      expect(beyond.body.error).toBe('invalid_authorization_details');
    });

    it('is listed in both discovery documents', async () => {
      for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
        const body = (await (await fetch(`${server.url}${path}`)).json()) as Record<string, unknown>;
        expect(body.grant_types_supported).toContain('urn:ietf:params:oauth:grant-type:token-exchange');
      }
    });
  });

  describe('refusals', () => {
    it('refuses an app delegating to an agent it may not delegate to (unauthorized_client)', async () => {
      const { status, body } = await exchange(server, 'portal', {
        subject_token: await userToken(acme.privateKey, { groups: ['support'] }),
        actor_token: await agentToken(server, 'research-agent'),
        actor_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      });
      expect(status).toBe(400);
      expect(body).toMatchObject({ error: 'unauthorized_client' });
      expect(String(body.error_description)).toContain('may_delegate_to');
    });

    it('refuses an app that names no acting agent (invalid_request)', async () => {
      const { status, body } = await exchange(server, 'portal', {
        subject_token: await userToken(acme.privateKey),
      });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_request');
    });

    it('refuses an actor token that is a delegated token rather than the agent’s own', async () => {
      const delegated = await portalToken();
      const { status, body } = await exchange(server, 'portal', {
        subject_token: await userToken(acme.privateKey),
        actor_token: delegated,
        actor_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_grant');
    });

    it('refuses a user no rule grants anything (deny by default, invalid_grant)', async () => {
      const { status, body } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey, { groups: ['marketing'] }),
      });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_grant');
      expect(String(body.error_description)).toContain('no user rule');
    });

    it('refuses an empty intersection of user rights and agent grant (invalid_target)', async () => {
      // alice may use the CRM; billing-agent may not.
      const { status, body } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey, { sub: 'alice@acme.test', groups: [] }),
      });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_target');
      expect(String(body.error_description)).toContain('no destination in common');
    });

    it('refuses a subject whose name is an agent’s client id', async () => {
      const { status, body } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey, { sub: 'report-agent' }),
      });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_grant');
    });

    it('refuses requested_token_type other than an access token (invalid_request)', async () => {
      const { status, body } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey),
        requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token',
      });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_request');
    });

    it('refuses an unknown subject_token_type (invalid_request)', async () => {
      const { status, body } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(acme.privateKey),
        subject_token_type: 'urn:ietf:params:oauth:token-type:saml2',
      });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_request');
    });

    it('refuses a resource or audience other than the gateway (invalid_target)', async () => {
      const forms: Record<string, string>[] = [
        { resource: 'https://elsewhere.example' },
        { audience: 'https://elsewhere.example' },
      ];
      for (const form of forms) {
        const { status, body } = await exchange(server, 'billing-agent', {
          subject_token: await userToken(acme.privateKey),
          ...form,
        });
        expect(status).toBe(400);
        expect(body.error).toBe('invalid_target');
      }
    });

    it('refuses a user token of another tenant’s issuer (nothing crosses tenants)', async () => {
      const { status, body } = await exchange(server, 'billing-agent', {
        subject_token: await userToken(globex.privateKey, { issuer: GLOBEX_IDP }),
      });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_grant');
      expect(String(body.error_description)).toContain('trusted_issuers');
    });

    it('refuses a reins token of another tenant as the subject', async () => {
      const acmeDelegated = await portalToken();
      const { status, body } = await exchange(server, 'shipping-agent', { subject_token: acmeDelegated });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_grant');
      expect(String(body.error_description)).toContain('another tenant');
    });

    it('refuses a revoked subject token', async () => {
      const delegated = await portalToken();
      expect(await revoke(server, 'portal', delegated)).toBe(200);
      const { status, body } = await exchange(server, 'report-agent', { subject_token: delegated });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_grant');
    });
  });

  describe('subject tokens that must not be trusted', () => {
    const cases: Array<[string, () => Promise<string>]> = [
      ['signed by a key the issuer does not publish', async () => userToken((await idpKeys()).privateKey)],
      ['expired', () => userToken(acme.privateKey, { expiresIn: -120 })],
      ['for another audience', () => userToken(acme.privateKey, { audience: 'someone-else' })],
      [
        'with alg none',
        async () => {
          const [, payload] = (await userToken(acme.privateKey)).split('.');
          const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
          return `${header}.${payload}.`;
        },
      ],
      [
        'signed HS256 with the issuer’s public key as the HMAC secret',
        async () => {
          const secret = new TextEncoder().encode(JSON.stringify(acme.publicJwk));
          const [, payload] = (await userToken(acme.privateKey)).split('.');
          const claims = JSON.parse(Buffer.from(String(payload), 'base64url').toString('utf8'));
          return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: 'idp-1' }).sign(secret);
        },
      ],
      [
        'with an attacker jwk header',
        async () => {
          const attacker = await idpKeys();
          return userToken(attacker.privateKey, { header: { jwk: attacker.publicJwk } });
        },
      ],
      [
        'with a jku header',
        () => userToken(acme.privateKey, { header: { jku: 'https://evil.example/jwks' } }),
      ],
      [
        'with an unknown crit header',
        () => userTokenWithHeader(acme.privateKey, { crit: ['x-reins-unknown'], 'x-reins-unknown': 1 }),
      ],
    ];
    it.each(cases)('refuses a user token %s with invalid_grant', async (_name, make) => {
      const { status, body } = await exchange(server, 'billing-agent', { subject_token: await make() });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_grant');
      expect(JSON.stringify(body)).not.toContain('eyJ');
    });
  });

  describe('chains', () => {
    it('extends a delegated token to an agent its holder may act through, newest actor outermost', async () => {
      const parent = await portalToken();
      const { status, body } = await exchange(server, 'report-agent', { subject_token: parent });
      expect(status, JSON.stringify(body)).toBe(200);
      const claims = claimsOf(body.access_token);
      expect(claims).toMatchObject({
        sub: 'bob@acme.test',
        client_id: 'report-agent',
        tenant: 'acme',
        act: { sub: 'report-agent', act: { sub: 'billing-agent' } },
        // parent: POST,GET stripe; report-agent: GET stripe + crm → GET stripe only.
        authorization_details: [
          { type: 'egress', locations: ['https://api.stripe.com/v1'], actions: ['GET'] },
        ],
      });
      expect(Number(claims.exp)).toBeLessThanOrEqual(Number(claimsOf(parent).exp));
    });

    it('refuses extending a chain to an agent the holder’s may_act does not list', async () => {
      const parent = await portalToken();
      const { status, body } = await exchange(server, 'research-agent', { subject_token: parent });
      expect(status).toBe(400);
      expect(body.error).toBe('invalid_grant');
      expect(String(body.error_description)).toContain('may_act');
    });

    it('caps the chain at the tenant’s delegation depth', async () => {
      const one = await portalToken();
      const two = await exchange(server, 'report-agent', { subject_token: one });
      const three = await exchange(server, 'audit-agent', { subject_token: String(two.body.access_token) });
      expect(three.status, JSON.stringify(three.body)).toBe(200);
      expect(claimsOf(three.body.access_token).act).toEqual({
        sub: 'audit-agent',
        act: { sub: 'report-agent', act: { sub: 'billing-agent' } },
      });
      const four = await exchange(server, 'billing-agent', {
        subject_token: String(three.body.access_token),
      });
      expect(four.status).toBe(400);
      expect(four.body.error).toBe('invalid_grant');
      expect(String(four.body.error_description)).toContain('allows 3');
    });

    it('delegates an agent’s own token onwards: sub stays the agent, act names the new actor', async () => {
      const own = await agentToken(server, 'billing-agent');
      const { status, body } = await exchange(server, 'report-agent', { subject_token: own });
      expect(status, JSON.stringify(body)).toBe(200);
      expect(claimsOf(body.access_token)).toMatchObject({
        sub: 'billing-agent',
        client_id: 'report-agent',
        act: { sub: 'report-agent' },
        authorization_details: [
          { type: 'egress', locations: ['https://api.stripe.com/v1'], actions: ['GET'] },
        ],
      });
    });

    it('shows the act chain at introspection', async () => {
      const parent = await portalToken();
      const child = await exchange(server, 'report-agent', { subject_token: parent });
      const answer = await introspect(server, 'portal', String(child.body.access_token));
      expect(answer).toMatchObject({
        active: true,
        sub: 'bob@acme.test',
        client_id: 'report-agent',
        act: { sub: 'report-agent', act: { sub: 'billing-agent' } },
      });
    });

    it('revoking a parent makes its children and grandchildren inactive', async () => {
      const parent = await portalToken();
      const child = String(
        (await exchange(server, 'report-agent', { subject_token: parent })).body.access_token,
      );
      const grandchild = String(
        (await exchange(server, 'audit-agent', { subject_token: child })).body.access_token,
      );
      expect((await introspect(server, 'portal', grandchild)).active).toBe(true);

      expect(await revoke(server, 'portal', parent)).toBe(200);
      for (const token of [parent, child, grandchild]) {
        expect(await introspect(server, 'portal', token)).toEqual({ active: false });
      }
      // Each was appended to the revocation feed gateways follow.
      const { rows } = await server.db.query<{ jti: string }>(
        "select jti from revocations where kind = 'token'",
      );
      expect(rows.map((r) => r.jti).sort()).toEqual(
        [parent, child, grandchild].map((t) => String(claimsOf(t).jti)).sort(),
      );
    });

    it('a child exchanged from a token whose ancestor is revoked is refused', async () => {
      const parent = await portalToken();
      const child = String(
        (await exchange(server, 'report-agent', { subject_token: parent })).body.access_token,
      );
      // Mark only the parent, as a revocation racing the child's issuance would leave it.
      await server.db.query('update issued_tokens set revoked_at = now() where jti = $1', [
        claimsOf(parent).jti,
      ]);
      expect(await introspect(server, 'portal', child)).toEqual({ active: false });
      const { status } = await exchange(server, 'audit-agent', { subject_token: child });
      expect(status).toBe(400);
    });
  });
});
