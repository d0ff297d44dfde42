// Starts a reins process: database, migrations, policies, listeners. Returns a handle that
// stops everything in order. The CLI's `serve` is a thin shell around this, and tests start
// it in-process.
import { collectDefaultMetrics, Registry } from 'prom-client';
import { type AdminServer, startAdmin } from '../admin/server.ts';
import type { Config } from '../config/settings.ts';
import {
  type ApplyOutcome,
  applyPolicy,
  contentHash,
  type Diagnostic,
  formatDiagnostic,
  hasErrors,
  loadPolicyDir,
  validatePolicies,
} from '../policy/index.ts';
import type { Db } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import { openDb } from '../store/open.ts';
import { type AuthServer, startAuthServer } from './auth-server.ts';
import { type GatewayRuntime, startGatewayRuntime } from './gateway.ts';
import type { Logger } from './logger.ts';

export class StartError extends Error {
  constructor(
    readonly code: 'policy_invalid',
    message: string,
    readonly diagnostics: readonly Diagnostic[] = [],
  ) {
    super(message);
    this.name = 'StartError';
  }
}

export interface Running {
  readonly db: Db;
  readonly admin: AdminServer;
  readonly auth: AuthServer;
  readonly gateway: GatewayRuntime;
  readonly policy: ApplyOutcome;
  stop(): Promise<void>;
}

export async function start(config: Config, log: Logger): Promise<Running> {
  const db = await openDb({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    onBackgroundError: (err) => log.warn({ err }, 'database connection problem'),
  });
  try {
    const { applied } = await migrate(db);
    if (applied.length > 0) log.info({ applied }, 'applied migrations');

    const policy = await applyPolicies(db, config.policies, log);

    const auth = await startAuthServer(config, db, log);

    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const gateway = await startGatewayRuntime(config, db, log, registry).catch(async (err) => {
      await auth.close();
      throw err;
    });
    const admin = await startAdmin({
      host: config.host,
      port: config.adminPort,
      registry,
      checks: {
        database: async () => {
          await db.query('select 1');
          return { ok: true };
        },
        policies: async () => ({ ok: true, detail: `version ${policy.version.version}` }),
        gateway: async () =>
          gateway.live.healthy
            ? { ok: true, detail: `policy version ${gateway.live.policy.version}` }
            : { ok: false, detail: 'the gateway could not refresh its state from the database' },
      },
    });
    log.info(
      { admin: admin.url, gateway: gateway.url, backend: db.backend, policyVersion: policy.version.version },
      'reins is ready',
    );

    return {
      db,
      admin,
      auth,
      gateway,
      policy,
      stop: async () => {
        // The gateway first: its last decisions are audited while the database is still open.
        await gateway.close();
        await auth.close();
        await admin.close();
        await db.close();
        log.info('stopped');
      },
    };
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

/** Validates the policy directory and applies it; a policy with errors stops the start. */
async function applyPolicies(db: Db, dir: string, log: Logger): Promise<ApplyOutcome> {
  const sources = await loadPolicyDir(dir);
  const { diagnostics, model } = validatePolicies(sources);
  for (const d of diagnostics)
    if (d.severity === 'warning') log.warn({ diagnostic: formatDiagnostic(d) }, 'policy warning');
  if (hasErrors(diagnostics) || model === null) {
    throw new StartError('policy_invalid', `the policies in ${dir} have errors`, diagnostics);
  }
  const outcome = await applyPolicy(db, {
    model,
    contentHash: contentHash(sources),
    files: sources.map((s) => s.name),
  });
  log.info({ status: outcome.status, version: outcome.version.version }, 'policies loaded');
  return outcome;
}

export interface RunningGateway {
  readonly db: Db;
  readonly admin: AdminServer;
  readonly gateway: GatewayRuntime;
  stop(): Promise<void>;
}

/**
 * The gateway alone (`reins gateway`), for scaling gateways apart from the server: it shares the
 * server's database (policies, keys, revocations, audit) and applies nothing itself — the
 * server, or `reins policy apply`, does.
 */
export async function startGatewayOnly(config: Config, log: Logger): Promise<RunningGateway> {
  const db = await openDb({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    onBackgroundError: (err) => log.warn({ err }, 'database connection problem'),
  });
  try {
    await migrate(db);
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const gateway = await startGatewayRuntime(config, db, log, registry);
    const admin = await startAdmin({
      host: config.host,
      port: config.adminPort,
      registry,
      checks: {
        database: async () => {
          await db.query('select 1');
          return { ok: true };
        },
        gateway: async () =>
          gateway.live.healthy && gateway.live.policy.version !== null
            ? { ok: true, detail: `policy version ${gateway.live.policy.version}` }
            : { ok: false, detail: 'no applied policy, or the state could not be refreshed' },
      },
    }).catch(async (err) => {
      await gateway.close();
      throw err;
    });
    log.info({ gateway: gateway.url, admin: admin.url, backend: db.backend }, 'gateway is ready');
    return {
      db,
      admin,
      gateway,
      stop: async () => {
        await gateway.close();
        await admin.close();
        await db.close();
        log.info('stopped');
      },
    };
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}
