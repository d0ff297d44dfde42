// Reading the audit trail back (audit_events, written by audit.ts): the queries behind
// `reins audit tail|query`, run by the CLI on a database it opens, or by the server's admin API
// for a CLI that talks to a running server. I/O; every filter is a bound parameter.
import type { Queryable } from '../store/db.ts';

/** One audit_events row as the commands print it. */
export interface AuditRecord {
  readonly id: number;
  readonly time: string;
  readonly request_id: string;
  readonly tenant: string | null;
  readonly agent: string | null;
  readonly subject: string | null;
  readonly delegation_chain: unknown;
  readonly jti: string | null;
  readonly method: string | null;
  readonly scheme: string | null;
  readonly host: string | null;
  readonly port: number | null;
  readonly path: string | null;
  readonly decision: 'allowed' | 'denied';
  readonly reason: string | null;
  readonly matched_rule: string | null;
  readonly resolved_address: string | null;
  readonly inspected: boolean;
  readonly status: number | null;
  readonly bytes_in: number;
  readonly bytes_out: number;
  readonly duration_ms: number | null;
  /** A 407's credential problem, a 400's fault (migrations/006_audit_detail.sql). */
  readonly detail: string | null;
}

/** Which rows, in which order. Every member is optional; `limit` is required. */
export interface AuditFilter {
  /** Rows with a greater id, or one of `ids` (following: ids skipped over while committing). */
  readonly after?: number | undefined;
  readonly ids?: readonly number[] | undefined;
  readonly tenant?: string | undefined;
  readonly agent?: string | undefined;
  readonly since?: Date | undefined;
  readonly decision?: 'allowed' | 'denied' | undefined;
  /** newest: by id, newest first (tail); oldest: by id (following); recent: by time, newest first (query). */
  readonly order: 'newest' | 'oldest' | 'recent';
  readonly limit: number;
}

// bigint columns as numbers (both backends would otherwise differ: pg returns them as strings).
const SELECT = `select id::float8 as id, time, request_id, tenant, agent, subject, delegation_chain, jti,
  method, scheme, host, port, path, decision, reason, matched_rule, resolved_address, inspected, status,
  bytes_in::float8 as bytes_in, bytes_out::float8 as bytes_out, duration_ms, detail
  from audit_events`;

const ORDER: Record<AuditFilter['order'], string> = {
  newest: 'order by id desc',
  oldest: 'order by id',
  recent: 'order by time desc, id desc',
};

type Fetched = Omit<AuditRecord, 'time'> & { time: Date };

export async function selectAudit(db: Queryable, filter: AuditFilter): Promise<AuditRecord[]> {
  const conditions: string[] = [];
  const params: unknown[] = [];
  const bind = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (filter.after !== undefined) {
    conditions.push(`(id > ${bind(filter.after)} or id = any(${bind(filter.ids ?? [])}::bigint[]))`);
  }
  if (filter.tenant !== undefined) conditions.push(`tenant = ${bind(filter.tenant)}`);
  if (filter.agent !== undefined) conditions.push(`agent = ${bind(filter.agent)}`);
  if (filter.since !== undefined) conditions.push(`time >= ${bind(filter.since)}`);
  if (filter.decision !== undefined) conditions.push(`decision = ${bind(filter.decision)}`);
  const where = conditions.length === 0 ? '' : `where ${conditions.join(' and ')}`;
  const { rows } = await db.query<Fetched>(
    `${SELECT} ${where} ${ORDER[filter.order]} limit ${bind(filter.limit)}`,
    params,
  );
  return rows.map((row) => ({ ...row, time: new Date(row.time).toISOString() }));
}

/** The newest row's id, 0 when there is none (where `tail -n 0 --follow` starts). */
export async function lastAuditId(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ last: number }>(
    'select coalesce(max(id), 0)::float8 as last from audit_events',
  );
  return rows[0]?.last ?? 0;
}
