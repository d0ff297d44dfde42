// Starts a reins process: database, migrations, policies, listeners. Returns a handle that
// stops everything in order. The CLI's `serve` and `gateway` are thin shells around this, and
// tests start it in-process.
//
// One start-up for both: `serve` (`start`) and the gateway alone (`startGatewayOnly`) run the
// same steps in `startProcess`, the second without the authorization server's parts. Each part
// is pushed on one last-in-first-out stack (`Started`) the moment it runs, so a failure at any
// step stops exactly what already runs, in reverse order — the listeners free their ports, the
// database releases the embedded data directory's lock — and `stop()` walks the same stack.
// A port already in use is reported with the setting that moves it.
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
import { systemResolver } from '../gateway/resolve.ts';
import type { PolicyModel } from '../policy/index.ts';
import type { Db } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import { openDb } from '../store/open.ts';
import { type AuthServer, startAuthServer } from './auth-server.ts';
import { type GatewayRuntime, openingsOf, startGatewayRuntime, upstreamCaOf } from './gateway.ts';
import type { Logger } from './logger.ts';
import { MonitoringWatcher } from './monitoring.ts';
import { type PolicyFollower, startPolicyFollower } from './policy-follower.ts';
import { StartError } from './start-error.ts';
import { WebhookOutbox } from './webhooks.ts';

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
  /** Watches the audit trail when this process holds the monitoring lease (monitoring.ts). */
  readonly monitoring: MonitoringWatcher;
  /** The applied policy's model, for what `serve` prints. */
  readonly model: () => PolicyModel;
  readonly adminCredentials: AdminCredentials;
  stop(): Promise<void>;
}

export interface RunningGateway {
  readonly db: Db;
  readonly admin: AdminServer;
  readonly gateway: GatewayRuntime;
  stop(): Promise<void>;
}

/** `reins serve`: the authorization server, the gateway and the admin listener with its API. */
export async function start(config: Config, log: Logger, options: StartOptions = {}): Promise<Running> {
  const watch = options.watch ?? false;
  const running = await startProcess(config, log, (db, started) =>
    startServerParts(config, db, log, started, watch),
  );
  const { policies, auth, monitoring, credentials } = running.server;
  return {
    db: running.db,
    admin: running.admin,
    auth,
    gateway: running.gateway,
    policies,
    monitoring,
    model: () => policies.model(),
    adminCredentials: credentials,
    stop: running.stop,
  };
}

/**
 * The gateway alone (`reins gateway`), for scaling gateways apart from the server: it shares the
 * server's database (policies, keys, revocations, audit) and applies nothing itself — the
 * server, or `reins policy apply`, does.
 */
export async function startGatewayOnly(config: Config, log: Logger): Promise<RunningGateway> {
  const running = await startProcess(config, log, async () => null);
  return { db: running.db, admin: running.admin, gateway: running.gateway, stop: running.stop };
}

/** Things started so far, stopped last first. */
class Started {
  readonly #stops: (() => Promise<void>)[] = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Awaits a start and pushes its stop at once: nothing runs that the stack does not know of. */
  async push<T>(starting: Promise<T>, stop: (it: T) => Promise<void>): Promise<T> {
    const it = await starting;
    this.#stops.push(() => stop(it));
    return it;
  }

  add(stop: () => Promise<void>): void {
    this.#stops.push(stop);
  }

  /** Stops everything, last started first; one stop failing does not keep the others running. */
  async stopAll(): Promise<void> {
    for (const stop of this.#stops.splice(0).reverse()) {
      await stop().catch((err: unknown) => this.#log.warn({ err }, 'could not stop cleanly'));
    }
  }
}

/** What `serve` runs besides the gateway; the gateway alone runs none of it. */
interface ServerParts {
  readonly policies: PolicyFollower;
  readonly auth: AuthServer;
  readonly monitoring: MonitoringWatcher;
  readonly credentials: AdminCredentials;
}

interface Process<S extends ServerParts | null> {
  readonly db: Db;
  readonly gateway: GatewayRuntime;
  readonly admin: AdminServer;
  readonly server: S;
  stop(): Promise<void>;
}

/**
 * The one start-up: database, migrations, the server's parts (`serve` only), the gateway, the
 * admin listener, the local handle. The gateway is started after the authorization server and
 * so stops before it and before the database: its last decisions are audited while the
 * database is open.
 */
async function startProcess<S extends ServerParts | null>(
  config: Config,
  log: Logger,
  startServer: (db: Db, started: Started) => Promise<S>,
): Promise<Process<S>> {
  const started = new Started(log);
  try {
    const db = await started.push(
      openDb({
        databaseUrl: config.databaseUrl,
        dataDir: config.dataDir,
        onBackgroundError: (err) => log.warn({ err }, 'database connection problem'),
      }),
      (db) => db.close(),
    );
    const { applied } = await migrate(db);
    if (applied.length > 0) log.info({ applied }, 'applied migrations');

    const server = await startServer(db, started);

    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const gateway = await started.push(
      listening('gatewayPort', config.gatewayPort, () => startGatewayRuntime(config, db, log, registry)),
      (gateway) => gateway.close(),
    );
    const admin = await started.push(
      listening('adminPort', config.adminPort, () =>
        startAdmin(adminOptions(config, log, { db, registry, gateway, server })),
      ),
      (admin) => admin.close(),
    );
    if (server !== null && !config.databaseUrl && config.dataDir !== 'memory') {
      // How `reins audit`, `policy apply` … in another terminal reach this server while it holds
      // the embedded database (src/cli/admin-client.ts).
      started.add(
        await writeLocalHandle(config.dataDir, {
          url: localUrl(admin.url),
          token: server.credentials.local,
          pid: process.pid,
        }),
      );
    }

    const where = { admin: admin.url, gateway: gateway.url, backend: db.backend };
    if (server === null) log.info(where, 'gateway is ready');
    else log.info({ ...where, policyVersion: server.policies.version() }, 'reins is ready');
    return {
      db,
      gateway,
      admin,
      server,
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

/** The policy follower (applies REINS_POLICIES) and the authorization server's listener. */
async function startServerParts(
  config: Config,
  db: Db,
  log: Logger,
  started: Started,
  watch: boolean,
): Promise<ServerParts> {
  const policies = await started.push(startPolicyFollower(db, config.policies, log, { watch }), (p) =>
    p.close(),
  );
  const auth = await started.push(
    listening('port', config.port, () => startAuthServer(config, db, log)),
    (auth) => auth.close(),
  );
  // Monitoring stops before the database closes (the stack), with a last checkpoint.
  const webhooks = new WebhookOutbox({
    db,
    log,
    openings: openingsOf(config.gatewayAllowPrivate),
    resolve: systemResolver,
    ca: upstreamCaOf(config.gatewayUpstreamCa),
  });
  const monitoring = new MonitoringWatcher({ db, log, webhooks });
  monitoring.start();
  started.add(() => monitoring.stop());
  return { policies, auth, monitoring, credentials: adminCredentials(config.adminToken) };
}

/**
 * The admin listener's checks and API. `serve` also reports its policy follower and offers the
 * admin API; the gateway alone has neither, and is ready only once a policy has been applied
 * (by the server or `reins policy apply`): before that it would refuse every request.
 */
function adminOptions(
  config: Config,
  log: Logger,
  parts: { db: Db; registry: Registry; gateway: GatewayRuntime; server: ServerParts | null },
): AdminOptions {
  const { db, registry, gateway, server } = parts;
  const database = async () => {
    await db.query('select 1');
    return { ok: true };
  };
  if (server === null) {
    return {
      host: config.host,
      port: config.adminPort,
      registry,
      checks: {
        database,
        gateway: async () =>
          gateway.threads === 0
            ? { ok: false, detail: 'no gateway thread is serving (one is being started again)' }
            : gateway.live.healthy && gateway.live.policy.version !== null
              ? { ok: true, detail: `policy version ${gateway.live.policy.version}` }
              : { ok: false, detail: 'no applied policy, or the state could not be refreshed' },
      },
    };
  }
  return {
    host: config.host,
    port: config.adminPort,
    registry,
    checks: {
      database,
      policies: async () => ({ ok: true, detail: `version ${server.policies.version()}` }),
      gateway: async () =>
        gateway.threads === 0
          ? { ok: false, detail: 'no gateway thread is serving (one is being started again)' }
          : gateway.live.healthy
            ? { ok: true, detail: `policy version ${gateway.live.policy.version}` }
            : { ok: false, detail: 'the gateway could not refresh its state from the database' },
    },
    api: {
      db,
      tokens: acceptedTokens(server.credentials),
      intercept: config.gatewayIntercept,
      onApply: (outcome) => log.info(outcome, 'policy apply through the admin API'),
    },
  };
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
