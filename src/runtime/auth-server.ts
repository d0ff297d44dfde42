// The authorization server's listener: signing keys, the live client registry, oidc-provider,
// the interception CA bundle at /ca.pem (ca-route.ts), and the expiry sweep of its storage,
// started and stopped together: if the listener cannot start, what started before it stops.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/settings.ts';
import { startSweeper } from '../server/adapter/index.ts';
import { ClientRegistry } from '../server/clients/index.ts';
import { ensureSigningKey, loadKeys } from '../server/keys/index.ts';
import { createProvider } from '../server/provider/index.ts';
import type { Db } from '../store/db.ts';
import { interceptionCaRoute } from './ca-route.ts';
import type { Logger } from './logger.ts';

export interface AuthServer {
  /** Where it listens, e.g. http://127.0.0.1:3000 (the issuer may differ behind a proxy). */
  readonly url: string;
  close(): Promise<void>;
}

export interface AuthServerOptions {
  /** How long /ca.pem reuses the bundle it read (ca-route.ts, CA_BUNDLE_CACHE_MS by default). */
  readonly caBundleCacheMs?: number;
}

export async function startAuthServer(
  config: Config,
  db: Db,
  log: Logger,
  options: AuthServerOptions = {},
): Promise<AuthServer> {
  const { kid, created } = await ensureSigningKey(db, {
    secretKey: config.secretKey,
    now: new Date(),
    warn: (message: string) => log.warn(message),
  });
  if (created) log.info({ kid }, 'created a signing key');
  const keys = await loadKeys(db, config.secretKey);
  const clients = await ClientRegistry.open(db, {
    onError: (err: unknown) => log.warn({ err }, 'could not reload the OAuth clients'),
  });
  // From here on the client registry follows the database: a failure to listen (the port is
  // taken) closes it again, so that a failed start leaves nothing running (runtime/start.ts).
  let server: Server;
  try {
    const caBundle = interceptionCaRoute({
      db,
      issuer: config.issuer,
      cacheMs: options.caBundleCacheMs,
      onError: (err: unknown) => log.warn({ err }, 'could not read the interception CA for /ca.pem'),
    });
    const provider = createProvider({
      issuer: config.issuer,
      db,
      clients,
      gatewayResource: config.gatewayResource,
      signingKeys: keys.signing.map((k) => k.privateJwk),
      extraMetadata: caBundle.metadata,
    });
    provider.use(caBundle.middleware);
    provider.on('server_error', (_ctx: unknown, err: unknown) =>
      log.error({ err }, 'authorization server error'),
    );
    server = createServer(provider.callback());
    server.listen(config.port, config.host);
    await once(server, 'listening');
  } catch (err) {
    await clients.close();
    throw err;
  }
  // Started once listening: nothing can fail after it, so nothing has to stop it but close().
  const stopSweeper = startSweeper(db, {
    onError: (err: unknown) => log.warn({ err }, 'expiry sweep failed'),
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await stopSweeper();
      await clients.close();
    },
  };
}
