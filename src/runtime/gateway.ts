// The gateway: its threads (gateway-workers.ts, REINS_GATEWAY_WORKERS of them, each a listener on
// the gateway port) and what they follow, kept on the main thread: the live state (revocations,
// quarantines, policy) from the database, the signing keys the server publishes, and what watches
// the one event stream every thread's exchanges are republished on (audit writer, log line,
// metrics, budgets). Started and stopped together; on stop every thread publishes every exchange it began,
// then the audit queue is drained, so no row is lost.
import { readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import type { Config } from '../config/settings.ts';
import { type Opening, parseOpening } from '../egress/index.ts';
import { AuditWriter, observeAudit, observeLog } from '../gateway/audit.ts';
import { AuditSpool } from '../gateway/audit-spool.ts';
import { BudgetMeter, observeBudgets } from '../gateway/budget.ts';
import { ensureInterceptionCa, loadSigningCa, portableSigningCa } from '../gateway/ca/index.ts';
import { ExchangeStream } from '../gateway/events.ts';
import { LiveState } from '../gateway/live-state.ts';
import { type GatewayMetrics, gatewayMetrics, observeMetrics } from '../gateway/metrics.ts';
import { loadPublicJwks } from '../server/keys/index.ts';
import type { Db } from '../store/db.ts';
import { startGatewayWorkers } from './gateway-workers.ts';
import { auditLineLogger, type Logger } from './logger.ts';

export interface GatewayRuntime {
  readonly url: string;
  readonly live: LiveState;
  /** Gateway threads listening now. */
  readonly threads: number;
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
  const ca = portableSigningCa(await loadSigningCa(db, { secretKey: config.secretKey, now: new Date() }));
  const live = await LiveState.open(db, {
    onError: (err: unknown) => log.warn({ err }, 'could not refresh the gateway state'),
  });
  let spool: AuditSpool | undefined;
  try {
    spool = await openSpool(config, log);
  } catch (err) {
    await live.close();
    throw err;
  }
  const audit = new AuditWriter(db, log, {
    onError: (err: unknown) => log.warn({ err }, 'could not write audit rows (they are kept and retried)'),
    ...(spool === undefined ? {} : { spool }),
  });
  const { events, metrics } = observedExchanges(audit, log, registry);
  // Budgets count from the same stream, on this thread; their stops reach the threads as live state.
  const budgets = new BudgetMeter(db, live, {
    onError: (err: unknown) => log.warn({ err }, 'could not reconcile budget usage through the database'),
  });
  observeBudgets(events, budgets);
  budgets.start();
  let workers: Awaited<ReturnType<typeof startGatewayWorkers>>;
  try {
    workers = await startGatewayWorkers({
      count: config.gatewayWorkers,
      settings: {
        host: config.host,
        port: config.gatewayPort,
        issuer: config.issuer,
        audience: config.gatewayResource,
        openings,
        upstreamCa,
        intercept: config.gatewayIntercept,
        limits: { shutdownGraceMs: config.gatewayShutdownGraceMs },
        ca,
      },
      live,
      loadKeys: () =>
        loadPublicJwks(db).catch((err: unknown) => {
          // A failed read leaves tokens naming a new key unverifiable until the next one: say why.
          log.warn({ err }, 'could not read the signing keys');
          throw err;
        }),
      events,
      onLookup: (result, count) => metrics.tokenCache.inc({ result }, count),
      registry,
      log,
    });
  } catch (err) {
    await budgets.close();
    await live.close();
    await audit.drain();
    await spool?.close();
    throw err;
  }
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return {
    url: `http://${host}:${workers.port}`,
    live,
    get threads() {
      return workers.serving;
    },
    async close() {
      await workers.close();
      await budgets.close();
      await audit.drain();
      await spool?.close();
      await live.close();
    },
  };
}

/**
 * Where audit rows wait through a PostgreSQL outage (audit-spool.ts): REINS_DATA_DIR, which holds
 * nothing else when DATABASE_URL is set. None on the embedded database (it has no outage of its
 * own: it is this process's, on this disk), nor with `memory` (nothing is kept on disk). A data
 * directory that cannot hold it (a read-only file system) leaves the gateway without one, said
 * in the log: an outage then holds requests back once the queue is full, as before.
 */
async function openSpool(config: Config, log: Logger): Promise<AuditSpool | undefined> {
  if (!config.databaseUrl || config.dataDir === 'memory') return undefined;
  let spool: AuditSpool;
  try {
    spool = await AuditSpool.open(config.dataDir);
  } catch (err) {
    log.warn(
      { err, dataDir: config.dataDir },
      'no audit spool: REINS_DATA_DIR cannot hold one; during a database outage the gateway will hold requests once 10,000 rows wait (set REINS_DATA_DIR to a writable directory)',
    );
    return undefined;
  }
  if (spool.rows > 0)
    log.warn({ rows: spool.rows, spool: spool.dir }, 'writing audit rows a previous process spooled');
  return spool;
}

/**
 * The one stream every gateway thread's exchanges are republished on, with what follows it: the
 * row (back-pressure included), the log line, the metrics (benchmarks wire theirs with it too).
 */
export function observedExchanges(
  audit: AuditWriter,
  log: Logger,
  registry: Registry,
): { events: ExchangeStream; metrics: GatewayMetrics } {
  const metrics = gatewayMetrics(
    registry,
    () => audit.depth,
    () => audit.spooled,
  );
  const events = new ExchangeStream();
  observeAudit(events, audit);
  observeLog(events, auditLineLogger(log));
  observeMetrics(events, metrics);
  return { events, metrics };
}

export class GatewayConfigError extends Error {
  readonly code = 'gateway_config';
}

/** REINS_GATEWAY_ALLOW_PRIVATE, each entry parsed; a wrong one stops the start with what to write. */
export function openingsOf(texts: readonly string[]): Opening[] {
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
export function upstreamCaOf(value: string | undefined): string | undefined {
  if (value === undefined || value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch {
    throw new GatewayConfigError(`REINS_GATEWAY_UPSTREAM_CA: cannot read the PEM file ${value}`);
  }
}
