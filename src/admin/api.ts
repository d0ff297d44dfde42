// The admin API (docs/admin-api.md): what the CLI's `audit`, `policy plan|apply` do, served by a
// running `reins serve` for a CLI that cannot open the database itself (the embedded database
// belongs to one process; a remote operator holds no database credentials).
//
// Threat: this API applies policies and reads every tenant's audit trail. Every route needs the
// admin bearer credential (credential.ts); a request without it learns nothing but 401. Inputs
// are bounded (body size, row limits) and every filter reaches SQL as a bound parameter.
import type Koa from 'koa';
import { type AuditFilter, lastAuditId, selectAudit } from '../gateway/audit-read.ts';
import { formatReplay } from '../gateway/replay.ts';
import { replaySince } from '../gateway/replay-read.ts';
import { formatDiagnostic } from '../policy/index.ts';
import type { InterceptMode } from '../policy/inspection.ts';
import { applyReport, checkSources, planReport } from '../policy/operations.ts';
import type { PolicySource } from '../policy/source.ts';
import type { Db } from '../store/db.ts';
import { BadRequest } from './bad-request.ts';
import { authorised } from './credential.ts';
import { monitoringRoute } from './monitoring-api.ts';

export const ADMIN_API_PREFIX = '/admin/v1/';

export interface AdminApiOptions {
  readonly db: Db;
  /** The credentials accepted (credential.ts: the operator's, and this start's local one). */
  readonly tokens: readonly string[];
  readonly intercept: InterceptMode;
  /** Told after an apply through the API, with its outcome (for the log). */
  readonly onApply?: (outcome: {
    status: string;
    version: number;
    contentHash: string;
    label: string;
    from: string;
  }) => void;
}

const MAX_BODY_BYTES = 8 * 1024 * 1024;
const MAX_ROWS = 10_000;

/** Answers a request under ADMIN_API_PREFIX. */
export async function adminApi(ctx: Koa.Context, options: AdminApiOptions): Promise<void> {
  ctx.set('cache-control', 'no-store');
  if (!authorised(ctx.get('authorization'), options.tokens)) {
    ctx.status = 401;
    ctx.set('www-authenticate', 'Bearer realm="reins-admin"');
    ctx.body = {
      error: 'unauthorized',
      error_description: 'the admin API needs the admin bearer credential',
    };
    return;
  }
  const route = `${ctx.method} ${ctx.path.slice(ADMIN_API_PREFIX.length - 1)}`;
  try {
    switch (route) {
      case 'GET /audit/events':
        ctx.body = { events: await selectAudit(options.db, auditFilter(ctx.query)) };
        return;
      case 'GET /audit/last':
        ctx.body = { id: await lastAuditId(options.db) };
        return;
      case 'POST /policy/plan':
      case 'POST /policy/apply':
        await policy(ctx, options, route === 'POST /policy/apply');
        return;
      default:
        if (await monitoringRoute(ctx, options.db, route, () => readJson(ctx))) return;
        ctx.status = 404;
        ctx.body = { error: 'not_found', error_description: `no admin route ${route}` };
    }
  } catch (err) {
    if (err instanceof BadRequest) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_request', error_description: err.message };
      return;
    }
    // An authenticated operator: the message helps (the database is down, the apply rolled back).
    ctx.status = 500;
    ctx.body = { error: 'server_error', error_description: err instanceof Error ? err.message : String(err) };
  }
}

async function policy(ctx: Koa.Context, options: AdminApiOptions, apply: boolean): Promise<void> {
  const body = await readJson(ctx);
  const sources = policySources(body.sources);
  const label = typeof body.label === 'string' ? body.label : 'the posted files';
  const checked = checkSources(sources);
  const diagnostics = checked.diagnostics.map(formatDiagnostic);
  if (!checked.ok) {
    ctx.status = 422;
    ctx.body = { error: 'policy_invalid', error_description: `${label} has errors`, diagnostics };
    return;
  }
  if (!apply) {
    const intercept = body.intercept === undefined ? options.intercept : interceptMode(body.intercept);
    let text = await planReport(options.db, checked.checked, label, intercept);
    const replay = replayOf(body.replay);
    if (replay) {
      text += `\n${formatReplay(await replaySince(options.db, checked.checked.model, replay.since), replay.period)}`;
    }
    ctx.body = { diagnostics, text };
    return;
  }
  const report = await applyReport(options.db, checked.checked);
  options.onApply?.({
    status: report.status,
    version: report.version,
    contentHash: checked.checked.contentHash,
    label,
    from: ctx.ip,
  });
  ctx.body = { diagnostics, status: report.status, version: report.version, text: report.text };
}

function policySources(value: unknown): PolicySource[] {
  if (!Array.isArray(value) || value.length === 0) throw new BadRequest('sources: give the policy files');
  return value.map((item, i) => {
    const { file, name, text } = (item ?? {}) as Record<string, unknown>;
    if (typeof file !== 'string' || typeof name !== 'string' || typeof text !== 'string') {
      throw new BadRequest(`sources[${i}]: give file, name and text as strings`);
    }
    return { file, name, text };
  });
}

/** `replay`: `{ since: ISO 8601, period: the words for it }` (what `--replay 24h` sends). */
function replayOf(value: unknown): { since: Date; period: string } | undefined {
  if (value === undefined) return undefined;
  const { since, period } = (value ?? {}) as Record<string, unknown>;
  const time = typeof since === 'string' ? new Date(since) : undefined;
  if (
    time === undefined ||
    Number.isNaN(time.getTime()) ||
    typeof period !== 'string' ||
    !/^\d{1,9}[smhd]$/.test(period)
  ) {
    throw new BadRequest('replay: give { since: an ISO 8601 time, period: e.g. "24h" }');
  }
  return { since: time, period };
}

function interceptMode(value: unknown): InterceptMode {
  if (value === 'auto' || value === 'always' || value === 'never') return value;
  throw new BadRequest('intercept: auto, always or never');
}

function auditFilter(query: Koa.Context['query']): AuditFilter {
  const one = (name: string): string | undefined => {
    const value = query[name];
    if (Array.isArray(value)) throw new BadRequest(`${name}: give it once`);
    return value === undefined || value === '' ? undefined : value;
  };
  const whole = (name: string, text: string | undefined, max: number): number | undefined => {
    if (text === undefined) return undefined;
    if (!/^\d{1,15}$/.test(text) || Number(text) > max)
      throw new BadRequest(`${name}: a whole number up to ${max}`);
    return Number(text);
  };
  const order = one('order') ?? 'newest';
  if (order !== 'newest' && order !== 'oldest' && order !== 'recent') {
    throw new BadRequest('order: newest, oldest or recent');
  }
  const decision = one('decision');
  if (decision !== undefined && decision !== 'allowed' && decision !== 'denied') {
    throw new BadRequest('decision: allowed or denied');
  }
  const sinceText = one('since');
  const since = sinceText === undefined ? undefined : new Date(sinceText);
  if (since !== undefined && Number.isNaN(since.getTime())) throw new BadRequest('since: an ISO 8601 time');
  const idsText = one('ids');
  const ids =
    idsText === undefined ? undefined : idsText.split(',').map((id) => whole('ids', id, 2 ** 53) ?? 0);
  if (ids !== undefined && ids.length > MAX_ROWS) throw new BadRequest(`ids: at most ${MAX_ROWS}`);
  return {
    after: whole('after', one('after'), 2 ** 53),
    ids,
    tenant: one('tenant'),
    agent: one('agent'),
    since,
    decision,
    order,
    limit: whole('limit', one('limit'), MAX_ROWS) ?? 100,
  };
}

async function readJson(ctx: Koa.Context): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) throw new BadRequest('send application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new BadRequest(`the body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    const value = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch {
    throw new BadRequest('the body is not a JSON object');
  }
}
