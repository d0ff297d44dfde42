// Starts a reins process: database, migrations, policies, listeners. Returns a handle that
// stops everything in order. The CLI's `serve` is a thin shell around this, and tests start
// it in-process.
//
// Both starts (`serve`, and the gateway alone) push what they have started on one stack, so a
// failure at any step stops exactly what already runs, in reverse order, and a port already in
// use is reported with the setting that moves it.
import { collectDefaultMetrics, Registry } from 'prom-client';
import {
  type AdminCredentials,
  acceptedTokens,
  adminCredentials,
  localUrl,
  writeLocalHandle,
} from '../admin/credential.ts';
import { type AdminOptions, type AdminServer, startAdmin } from '../admin/server.ts';
import type { Config } from '../config/settings.ts';
import type { PolicyModel } from '../policy/index.ts';
import type { Db } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import { openDb } from '../store/open.ts';
import { type AuthServer, startAuthServer } from './auth-server.ts';
import { type GatewayRuntime, startGatewayRuntime } from './gateway.ts';
import type { Logger } from './logger.ts';
import { type PolicyFollower, startPolicyFollower } from './policy-follower.ts';
import { StartError } from './start-error.ts';

export { StartError, type StartErrorCode } from './start-error.ts';

export interface StartOptions {
  /** Reload REINS_POLICIES when its files change (`serve --watch`), besides on SIGHUP. */
  readonly watch?: boolean;
}

export interface Running {
  readonly db: Db;
  readonly admin: AdminServer;
  readonly auth: AuthServer;
  readonly gateway: GatewayRuntime;
  readonly policies: PolicyFollower;
  /** The applied policy's model, for what `serve` prints. */
  readonly model: () => PolicyModel;
  readonly adminCredentials: AdminCredentials;
  stop(): Promise<void>;
}

/** Things started so far, stopped in reverse order. */
class Started {
  readonly #stops: (() => Promise<void>)[] = [];
  add(stop: () => Promise<void>): void {
    this.#stops.push(stop);
  }
  async stopAll(): Promise<void> {
    for (const stop of this.#stops.splice(0).reverse()) await stop().catch(() => {});
  }
}

export async function start(config: Config, log: Logger, options: StartOptions = {}): Promise<Running> {
  const started = new Started();
  try {
    const db = await openDatabase(config, log, started);
    const { applied } = await migrate(db);
    if (applied.length > 0) log.info({ applied }, 'applied migrations');

    const policies = await startPolicyFollower(db, config.policies, log, { watch: options.watch ?? false });
    started.add(() => policies.close());

    const auth = await listening('port', config.port, () => startAuthServer(config, db, log));
    started.add(() => auth.close());

    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const gateway = await listening('gatewayPort', config.gatewayPort, () =>
      startGatewayRuntime(config, db, log, registry),
    );
    // The gateway stops first of all: its last decisions are audited while the database is open.
    started.add(() => gateway.close());

    const credentials = adminCredentials(config.adminToken);
    const admin = await listening('adminPort', config.adminPort, () =>
      startAdmin({
        host: config.host,
        port: config.adminPort,
        registry,
        checks: {
          ...databaseCheck(db),
          policies: async () => ({ ok: true, detail: `version ${policies.version()}` }),
          ...gatewayCheck(gateway),
        },
        api: {
          db,
          tokens: acceptedTokens(credentials),
          intercept: config.gatewayIntercept,
          onApply: (outcome) => log.info(outcome, 'policy apply through the admin API'),
        },
      }),
    );
    started.add(() => admin.close());
    if (!config.databaseUrl && config.dataDir !== 'memory') {
      const remove = await writeLocalHandle(config.dataDir, {
        url: localUrl(admin.url),
        token: credentials.local,
        pid: process.pid,
      });
      started.add(remove);
    }
    log.info(
      { admin: admin.url, gateway: gateway.url, backend: db.backend, policyVersion: policies.version() },
      'reins is ready',
    );
    return {
      db,
      admin,
      auth,
      gateway,
      policies,
      model: () => policies.model(),
      adminCredentials: credentials,
      stop: async () => {
        await started.stopAll();
        log.info('stopped');
      },
    };
  } catch (err) {
    await started.stopAll();
    throw err;
  }
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
  const started = new Started();
  try {
    const db = await openDatabase(config, log, started);
    await migrate(db);
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const gateway = await listening('gatewayPort', config.gatewayPort, () =>
      startGatewayRuntime(config, db, log, registry),
    );
    started.add(() => gateway.close());
    const admin = await listening('adminPort', config.adminPort, () =>
      startAdmin({
        host: config.host,
        port: config.adminPort,
        registry,
        checks: {
          ...databaseCheck(db),
          gateway: async () =>
            gateway.live.healthy && gateway.live.policy.version !== null
              ? { ok: true, detail: `policy version ${gateway.live.policy.version}` }
              : { ok: false, detail: 'no applied policy, or the state could not be refreshed' },
        },
      }),
    );
    started.add(() => admin.close());
    log.info({ gateway: gateway.url, admin: admin.url, backend: db.backend }, 'gateway is ready');
    return {
      db,
      admin,
      gateway,
      stop: async () => {
        await started.stopAll();
        log.info('stopped');
      },
    };
  } catch (err) {
    await started.stopAll();
    throw err;
  }
}

async function openDatabase(config: Config, log: Logger, started: Started): Promise<Db> {
  const db = await openDb({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    onBackgroundError: (err) => log.warn({ err }, 'database connection problem'),
  });
  started.add(() => db.close());
  return db;
}

const PORT_SETTINGS = {
  port: 'REINS_PORT (--port)',
  gatewayPort: 'REINS_GATEWAY_PORT (--gateway-port)',
  adminPort: 'REINS_ADMIN_PORT (--admin-port)',
} as const;

/** Runs a listener's start; a port in use becomes a StartError naming the setting to change. */
async function listening<T>(
  setting: keyof typeof PORT_SETTINGS,
  port: number,
  begin: () => Promise<T>,
): Promise<T> {
  try {
    return await begin();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES') {
      const what = code === 'EADDRINUSE' ? 'is already in use' : 'may not be opened by this user';
      throw new StartError(
        'port_in_use',
        `port ${port} ${what}: stop what listens there, or set ${PORT_SETTINGS[setting]} to another port (0 picks a free one)`,
      );
    }
    throw err;
  }
}

function databaseCheck(db: Db): AdminOptions['checks'] {
  return {
    database: async () => {
      await db.query('select 1');
      return { ok: true };
    },
  };
}

function gatewayCheck(gateway: GatewayRuntime): AdminOptions['checks'] {
  return {
    gateway: async () =>
      gateway.live.healthy
        ? { ok: true, detail: `policy version ${gateway.live.policy.version}` }
        : { ok: false, detail: 'the gateway could not refresh its state from the database' },
  };
}
