// The admin listener: liveness, readiness, health and Prometheus metrics, on a port of its own
// so that it can be exposed to the orchestrator and the metrics scraper but not to agents.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import type { Registry } from 'prom-client';
import { ADMIN_API_PREFIX, type AdminApiOptions, adminApi } from './api.ts';

/** One readiness check: resolves to a short status, rejects (or returns ok: false) when not ready. */
export type ReadinessCheck = () => Promise<{ ok: boolean; detail?: string }>;

export interface AdminOptions {
  readonly host: string;
  readonly port: number;
  readonly checks: Readonly<Record<string, ReadinessCheck>>;
  readonly registry: Registry;
  /** The admin API (`reins serve` only; a lone gateway has none). */
  readonly api?: AdminApiOptions | undefined;
}

export interface AdminServer {
  readonly url: string;
  close(): Promise<void>;
}

// A check that hangs (a database that stopped answering) must not hang the probe with it.
const CHECK_TIMEOUT_MS = 2_000;

async function runChecks(checks: AdminOptions['checks']) {
  const results = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<{ ok: boolean; detail: string }>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, detail: 'timed out' }), CHECK_TIMEOUT_MS);
      });
      try {
        const result = await Promise.race([check(), timeout]);
        return [name, result] as const;
      } catch (err) {
        return [name, { ok: false, detail: err instanceof Error ? err.message : String(err) }] as const;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return { ok: results.every(([, r]) => r.ok), checks: Object.fromEntries(results) };
}

// The probes mean one thing each (docs/configuration.md, "Health"): /livez, the process is
// alive and answering (restart it when this fails); /readyz, it can serve now (send it traffic
// only when this passes: 503 while the database is down); /healthz, the same checks as a report
// for people, always 200 while the process answers, so that a probe wired to it by habit never
// restarts a healthy process for a database outage a restart cannot fix.
export function adminApp(options: Pick<AdminOptions, 'checks' | 'registry' | 'api'>): Koa {
  const app = new Koa();
  app.use(async (ctx) => {
    if (options.api && ctx.path.startsWith(ADMIN_API_PREFIX)) {
      await adminApi(ctx, options.api);
      return;
    }
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      return;
    }
    switch (ctx.path) {
      case '/livez':
        ctx.body = { status: 'ok' };
        return;
      case '/readyz':
      case '/healthz': {
        const report = await runChecks(options.checks);
        ctx.status = report.ok || ctx.path === '/healthz' ? 200 : 503;
        ctx.body =
          ctx.path === '/readyz'
            ? { status: report.ok ? 'ready' : 'not_ready', ...report }
            : { status: report.ok ? 'ok' : 'degraded', ...report };
        return;
      }
      case '/metrics':
        ctx.type = options.registry.contentType;
        ctx.body = await options.registry.metrics();
        return;
      default:
        ctx.status = 404;
        ctx.body = { error: 'not_found' };
    }
  });
  return app;
}

export async function startAdmin(options: AdminOptions): Promise<AdminServer> {
  const server: Server = createServer(adminApp(options).callback());
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
