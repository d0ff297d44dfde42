// The gateway's listener and what it follows: the live state (revocations, quarantines, policy)
// from the database, token verification with the keys the server publishes, and what watches its
// event stream (audit writer, log line, metrics). Started and stopped together; on stop the
// gateway publishes every exchange it began, then the audit queue is drained, so no row is lost.
import { readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import type { Config } from '../config/settings.ts';
import { type Opening, parseOpening } from '../egress/index.ts';
import { AuditWriter, observeAudit, observeLog } from '../gateway/audit.ts';
import { ensureInterceptionCa, LeafCache, loadSigningCa } from '../gateway/ca/index.ts';
import { ExchangeStream } from '../gateway/events.ts';
import { LiveState } from '../gateway/live-state.ts';
import { gatewayMetrics, observeMetrics } from '../gateway/metrics.ts';
import { startGateway } from '../gateway/proxy.ts';
import { cachedResolver, systemResolver } from '../gateway/resolve.ts';
import { localKeys, TokenVerifier } from '../gateway/token.ts';
import { loadPublicJwks } from '../server/keys/index.ts';
import type { Db } from '../store/db.ts';
import type { Logger } from './logger.ts';

export interface GatewayRuntime {
  readonly url: string;
  readonly live: LiveState;
  close(): Promise<void>;
}

export async function startGatewayRuntime(
  config: Config,
  db: Db,
  log: Logger,
  registry: Registry,
): Promise<GatewayRuntime> {
  const openings = openingsOf(config.gatewayAllowPrivate);
  const upstreamCa = upstreamCaOf(config.gatewayUpstreamCa);
  // The interception CA: created by the first process to start, shared by all of them.
  const { created, id } = await ensureInterceptionCa(db, {
    secretKey: config.secretKey,
    now: new Date(),
    warn: (message: string) => log.warn(message),
  });
  if (created) log.info({ ca: id }, 'created the interception CA (reins ca export prints it)');
  const leaves = new LeafCache(await loadSigningCa(db, { secretKey: config.secretKey, now: new Date() }));
  const live = await LiveState.open(db, {
    onError: (err: unknown) => log.warn({ err }, 'could not refresh the gateway state'),
  });
  const audit = new AuditWriter(db, log, {
    onError: (err: unknown) => log.warn({ err }, 'could not write audit rows (they are kept and retried)'),
  });
  const metrics = gatewayMetrics(registry, () => audit.depth);
  // What watches the gateway follows its event stream: the row, the log line, the metrics.
  const events = new ExchangeStream();
  observeAudit(events, audit);
  observeLog(events, log);
  observeMetrics(events, metrics);
  const verifier = new TokenVerifier({
    issuer: config.issuer,
    audience: config.gatewayResource,
    keys: localKeys(() => loadPublicJwks(db), {
      // A failed read leaves every token unverifiable until the next one (5 s later): say why.
      onError: (err: unknown) => log.warn({ err }, 'could not read the signing keys'),
    }),
    onLookup: (result) => metrics.tokenCache.inc({ result }),
  });
  const pruner = setInterval(() => verifier.prune(), 30_000);
  pruner.unref();
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway({
      host: config.host,
      port: config.gatewayPort,
      verifier,
      live,
      openings,
      resolve: cachedResolver(systemResolver),
      events,
      upstreamCa,
      intercept: config.gatewayIntercept,
      limits: { shutdownGraceMs: config.gatewayShutdownGraceMs },
      interceptor: leaves,
    });
  } catch (err) {
    clearInterval(pruner);
    await live.close();
    await audit.drain();
    throw err;
  }
  return {
    url: gateway.url,
    live,
    async close() {
      clearInterval(pruner);
      await gateway.close();
      await audit.drain();
      await live.close();
    },
  };
}

export class GatewayConfigError extends Error {
  readonly code = 'gateway_config';
}

/** REINS_GATEWAY_ALLOW_PRIVATE, each entry parsed; a wrong one stops the start with what to write. */
function openingsOf(texts: readonly string[]): Opening[] {
  const openings: Opening[] = [];
  for (const text of texts) {
    const parsed = parseOpening(text);
    if (!parsed.ok) {
      throw new GatewayConfigError(`REINS_GATEWAY_ALLOW_PRIVATE entry '${text}': ${parsed.error.message}`);
    }
    openings.push(parsed.opening);
  }
  return openings;
}

/** REINS_GATEWAY_UPSTREAM_CA: a PEM bundle, given inline or as a file path. */
function upstreamCaOf(value: string | undefined): string | undefined {
  if (value === undefined || value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch {
    throw new GatewayConfigError(`REINS_GATEWAY_UPSTREAM_CA: cannot read the PEM file ${value}`);
  }
}
