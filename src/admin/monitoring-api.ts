// The admin API's monitoring routes (docs/admin-api.md): quarantine and release an agent, list
// alerts, show a baseline — what `reins agent`, `reins alerts` and `reins baseline` do against a
// running server. Authentication and error answers are api.ts's; this file only maps routes.
import type Koa from 'koa';
import { selectAlerts } from '../monitor/alerts-store.ts';
import { loadBaselines } from '../monitor/baselines-store.ts';
import { setQuarantine } from '../server/provider/quarantine.ts';
import type { Db } from '../store/db.ts';
import { BadRequest } from './bad-request.ts';

const MAX_ALERTS = 10_000;

/** Answers `route` if it is a monitoring route; false when it is not one. */
export async function monitoringRoute(
  ctx: Koa.Context,
  db: Db,
  route: string,
  body: () => Promise<Record<string, unknown>>,
): Promise<boolean> {
  switch (route) {
    case 'POST /agents/quarantine':
    case 'POST /agents/release': {
      const { tenant, agent, reason } = await body();
      const quarantine = route === 'POST /agents/quarantine';
      if (typeof tenant !== 'string' || tenant === '' || typeof agent !== 'string' || agent === '') {
        throw new BadRequest('tenant and agent: give both as strings');
      }
      if (reason !== undefined && typeof reason !== 'string') throw new BadRequest('reason: a string');
      const why = reason ?? (quarantine ? 'quarantined by an operator' : 'released by an operator');
      ctx.body = { change: await setQuarantine(db, tenant, agent, quarantine, why) };
      return true;
    }
    case 'GET /alerts': {
      const since = one(ctx, 'since');
      const time = since === undefined ? undefined : new Date(since);
      if (time !== undefined && Number.isNaN(time.getTime())) throw new BadRequest('since: an ISO 8601 time');
      const limit = one(ctx, 'limit') ?? '100';
      if (!/^\d{1,6}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_ALERTS) {
        throw new BadRequest(`limit: a whole number from 1 to ${MAX_ALERTS}`);
      }
      ctx.body = {
        alerts: await selectAlerts(db, {
          tenant: one(ctx, 'tenant'),
          agent: one(ctx, 'agent'),
          since: time,
          limit: Number(limit),
        }),
      };
      return true;
    }
    case 'GET /baselines': {
      const tenant = one(ctx, 'tenant');
      const agent = one(ctx, 'agent');
      if (tenant === undefined || agent === undefined) throw new BadRequest('tenant and agent: give both');
      ctx.body = { baselines: await loadBaselines(db, { tenant, agent }) };
      return true;
    }
    default:
      return false;
  }
}

function one(ctx: Koa.Context, name: string): string | undefined {
  const value = ctx.query[name];
  if (Array.isArray(value)) throw new BadRequest(`${name}: give it once`);
  return value === undefined || value === '' ? undefined : value;
}
