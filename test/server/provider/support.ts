// A reins authorization server on an ephemeral port over a migrated test database with the
// given policies applied, and the small clients the token tests use (Node fetch, jose).
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { importPKCS8, SignJWT } from 'jose';
import { applyPolicy, contentHash, validatePolicies } from '../../../src/policy/index.ts';
import type { PolicySource } from '../../../src/policy/source.ts';
import { interceptionCaRoute } from '../../../src/runtime/ca-route.ts';
import { ClientRegistry } from '../../../src/server/clients/index.ts';
import { ensureSigningKey, loadKeys } from '../../../src/server/keys/index.ts';
import { createProvider } from '../../../src/server/provider/index.ts';
import type { Db } from '../../../src/store/db.ts';
import { openMigratedDb, type TestBackend } from '../../support/db.ts';

export const GATEWAY = 'https://gateway.reins.test';

export interface AuthServer {
  readonly db: Db;
  readonly clients: ClientRegistry;
  /** http://127.0.0.1:<port> — also the issuer. */
  readonly url: string;
  close(): Promise<void>;
}

export async function applySources(db: Db, sources: readonly PolicySource[]): Promise<number> {
  const { model, diagnostics } = validatePolicies([...sources]);
  if (!model) throw new Error(JSON.stringify(diagnostics));
  const outcome = await applyPolicy(db, {
    model,
    contentHash: contentHash([...sources]),
    files: sources.map((s) => s.name),
  });
  return outcome.version.version;
}

export async function startAuthServer(
  backend: TestBackend,
  sources: readonly PolicySource[],
): Promise<AuthServer> {
  const db = await openMigratedDb(backend);
  await applySources(db, sources);
  await ensureSigningKey(db, { now: new Date() });
  const keys = await loadKeys(db, undefined);
  const clients = await ClientRegistry.open(db);

  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // GET /ca.pem as src/runtime/auth-server.ts mounts it (read on every request: tests rotate).
  const caBundle = interceptionCaRoute({ db, issuer: url, cacheMs: 0 });
  const provider = createProvider({
    issuer: url,
    db,
    clients,
    gatewayResource: GATEWAY,
    signingKeys: keys.signing.map((k) => k.privateJwk),
    extraMetadata: caBundle.metadata,
  });
  provider.use(caBundle.middleware);
  server.on('request', provider.callback());

  return {
    db,
    clients,
    url,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await clients.close();
      await db.close();
    },
  };
}

export interface TokenResponse {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** POSTs a form to the token endpoint. */
export async function requestToken(
  server: AuthServer,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<TokenResponse> {
  const response = await fetch(`${server.url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export function basic(clientId: string, secret: string): Record<string, string> {
  const encode = (s: string) => encodeURIComponent(s);
  return {
    authorization: `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')}`,
  };
}

const RESEARCH_PEM = fileURLToPath(new URL('../../../policies/keys/research-agent.pem', import.meta.url));

/** A private_key_jwt client assertion (RFC 7523) for `clientId`, signed with `pem`. */
export async function clientAssertion(
  server: AuthServer,
  clientId: string,
  options: {
    pem?: string;
    kid?: string;
    jti?: string;
    /** Seconds since the epoch; null leaves iat out. Default: now. */
    iat?: number | null;
    /** Seconds since the epoch. Default: a minute from now. */
    exp?: number;
  } = {},
): Promise<Record<string, string>> {
  const key = await importPKCS8(options.pem ?? readFileSync(RESEARCH_PEM, 'utf8'), 'ES256');
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? 'research-agent-1' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(`${server.url}/token`)
    .setJti(options.jti ?? crypto.randomUUID())
    .setExpirationTime(options.exp ?? '1m');
  if (options.iat !== null) jwt.setIssuedAt(options.iat);
  const assertion = await jwt.sign(key);
  return {
    client_id: clientId,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  };
}
