// A tenant built for delegation tests (an identity provider whose key the test holds, an app,
// agents that delegate onwards), and the clients those tests use: a user token signed by the
// IdP, a token-exchange request, introspection and revocation.
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { yaml } from '../../policy/support.ts';
import { type AuthServer, basic, requestToken, type TokenResponse } from '../provider/support.ts';

export const IDP = 'https://idp.acme.test';
export const GLOBEX_IDP = 'https://idp.globex.test';
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';

/** Secrets of every client of the test policy, set in the environment by `useSecrets`. */
export const SECRETS: Record<string, string> = {
  portal: 'portal-secret-for-tests',
  'billing-agent': 'billing-secret-for-tests',
  'report-agent': 'report-secret-for-tests',
  'audit-agent': 'audit-secret-for-tests',
  'research-agent': 'research-secret-for-tests',
  'shipping-agent': 'shipping-secret-for-tests',
};

export function envName(clientId: string): string {
  return `XCHG_${clientId.replaceAll('-', '_').toUpperCase()}_SECRET`;
}

export function auth(clientId: string): Record<string, string> {
  return basic(clientId, SECRETS[clientId] as string);
}

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

export interface IdpKeys {
  readonly privateKey: PrivateKey;
  readonly publicJwk: JWK;
}

export async function idpKeys(): Promise<IdpKeys> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: 'idp-1', alg: 'ES256' } };
}

/**
 * acme: finance users may pay, alice may use the CRM, support may read Wikipedia. The portal
 * delegates to billing-agent only; billing-agent → report-agent → audit-agent → billing-agent
 * by may_act; chains are capped at 3. globex: one agent, its own IdP.
 */
export function delegationPolicy(acmeIdp: JWK, globexIdp: JWK): Record<string, string> {
  const secret = (id: string) => `{ method: client_secret_basic, secret_env: ${envName(id)} }`;
  return {
    'acme.yaml': yaml(
      'tenant: acme',
      'settings: { max_token_ttl: 600, delegation_depth: 3 }',
      'integrations:',
      '  payments: ["POST,GET https://api.stripe.com/v1/"]',
      '  research: ["GET https://**.wikipedia.org/"]',
      '  crm: ["https://**.salesforce.com/services/data/"]',
      'agents:',
      '  billing-agent:',
      `    auth: ${secret('billing-agent')}`,
      '    egress: [payments, "GET https://invoices.acme.test/api/"]',
      '    token_ttl: 120',
      '    may_act: [report-agent]',
      '  report-agent:',
      `    auth: ${secret('report-agent')}`,
      '    egress: ["GET https://api.stripe.com/v1/", crm]',
      '    may_act: [audit-agent]',
      '  audit-agent:',
      `    auth: ${secret('audit-agent')}`,
      '    egress: ["GET https://api.stripe.com/v1/charges/"]',
      '    may_act: [billing-agent]',
      '  research-agent:',
      `    auth: ${secret('research-agent')}`,
      '    egress: [research]',
      'apps:',
      '  portal:',
      `    auth: ${secret('portal')}`,
      '    may_delegate_to: [billing-agent]',
      'trusted_issuers:',
      `  - issuer: ${IDP}`,
      '    audience: portal',
      `    jwks: { keys: [${JSON.stringify(acmeIdp)}] }`,
      'users:',
      '  - name: finance',
      '    match: { groups: [finance] }',
      '    egress: [payments]',
      '  - name: alice',
      '    match: { sub: alice@acme.test }',
      '    egress: [crm]',
      '  - name: support',
      '    match: { groups: [support] }',
      '    egress: [research]',
    ),
    'globex.yaml': yaml(
      'tenant: globex',
      'agents:',
      '  shipping-agent:',
      `    auth: ${secret('shipping-agent')}`,
      '    egress: ["POST,GET https://api.stripe.com/v1/"]',
      'trusted_issuers:',
      `  - issuer: ${GLOBEX_IDP}`,
      `    jwks: { keys: [${JSON.stringify(globexIdp)}] }`,
      'users:',
      '  - match: { groups: [finance] }',
      '    egress: ["POST,GET https://api.stripe.com/v1/"]',
    ),
  };
}

export interface UserTokenOptions {
  readonly sub?: string;
  readonly groups?: readonly string[];
  readonly issuer?: string;
  readonly audience?: string;
  /** Seconds from now. */
  readonly expiresIn?: number;
  readonly header?: Record<string, unknown>;
}

/** A user's access token from the test IdP. */
export function userToken(key: PrivateKey, options: UserTokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ groups: [...(options.groups ?? ['finance'])] })
    .setProtectedHeader({ alg: 'ES256', kid: 'idp-1', ...options.header })
    .setIssuer(options.issuer ?? IDP)
    .setSubject(options.sub ?? 'bob@acme.test')
    .setAudience(options.audience ?? 'portal')
    .setIssuedAt(now)
    .setExpirationTime(now + (options.expiresIn ?? 600))
    .sign(key);
}

/**
 * A user token whose header jose refuses to write (e.g. an unknown `crit`), signed by hand with
 * WebCrypto: a valid signature, so only the header can be why it is refused.
 */
export async function userTokenWithHeader(key: PrivateKey, header: Record<string, unknown>): Promise<string> {
  const [, payload] = (await userToken(key)).split('.');
  const encodedHeader = Buffer.from(JSON.stringify({ alg: 'ES256', kid: 'idp-1', ...header })).toString(
    'base64url',
  );
  const input = `${encodedHeader}.${payload}`;
  const signature = await crypto.subtle.sign(
    { name: 'ECDSA', hash: 'SHA-256' },
    key as CryptoKeyLike,
    Buffer.from(input),
  );
  return `${input}.${Buffer.from(signature).toString('base64url')}`;
}

type CryptoKeyLike = Parameters<typeof crypto.subtle.sign>[1];

/** A token-exchange request by `clientId`. */
export function exchange(
  server: AuthServer,
  clientId: string,
  form: Record<string, string>,
): Promise<TokenResponse> {
  return requestToken(
    server,
    { grant_type: TOKEN_EXCHANGE, subject_token_type: ACCESS_TOKEN, ...form },
    auth(clientId),
  );
}

/** An agent's own client-credentials token. */
export async function agentToken(server: AuthServer, agent: string): Promise<string> {
  const { status, body } = await requestToken(server, { grant_type: 'client_credentials' }, auth(agent));
  if (status !== 200) throw new Error(`no token for ${agent}: ${JSON.stringify(body)}`);
  return String(body.access_token);
}

export async function introspect(
  server: AuthServer,
  clientId: string,
  token: string,
): Promise<Record<string, unknown>> {
  const response = await fetch(`${server.url}/introspect`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth(clientId) },
    body: new URLSearchParams({ token }).toString(),
  });
  return (await response.json()) as Record<string, unknown>;
}

export async function revoke(server: AuthServer, clientId: string, token: string): Promise<number> {
  const response = await fetch(`${server.url}/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth(clientId) },
    body: new URLSearchParams({ token }).toString(),
  });
  await response.arrayBuffer();
  return response.status;
}

export function claimsOf(token: unknown): Record<string, unknown> {
  return JSON.parse(Buffer.from(String(token).split('.')[1] ?? '', 'base64url').toString('utf8'));
}
