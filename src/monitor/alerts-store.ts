// Alerts as they are kept (alerts and alert_deliveries, migrations/009_monitoring.sql): every
// finding that opened an incident, what its response did, and — when the tenant has a webhook —
// its place in the outbox, written in the same transaction as the alert so none is lost.
import type { Db, Queryable } from '../store/db.ts';
import type { Evidence, Finding } from './detections.ts';
import type { DetectionName, Response } from './policy.ts';

/** What a response did. */
export interface AlertOutcome {
  /** revoke: the jtis revoked now (a token already revoked is not listed again). */
  readonly revoked?: readonly string[];
  /** quarantine: true when this alert quarantined the agent, false when it already was. */
  readonly quarantined?: boolean;
  /** Why the response could not be carried out (the alert stands; an operator must act). */
  readonly error?: string;
}

export interface AlertRecord {
  readonly id: number;
  /** When the condition was met (ISO 8601). */
  readonly time: string;
  readonly tenant: string;
  readonly agent: string;
  /** The user the agent acted for, for a finding of the agent-for-a-user baseline. */
  readonly user: string | null;
  readonly detection: DetectionName;
  readonly response: Response;
  readonly summary: string;
  readonly evidence: Evidence;
  readonly outcome: AlertOutcome;
}

/** Stores the finding (and its webhook delivery when `deliver`); returns the alert's id. */
export async function recordAlert(db: Db, finding: Finding, deliver: boolean): Promise<number> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{ id: number }>(
      `insert into alerts (time, tenant, agent, user_sub, detection, response, summary, evidence)
       values ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) returning id::float8 as id`,
      [
        new Date(finding.time),
        finding.subject.tenant,
        finding.subject.agent,
        finding.subject.user,
        finding.detection,
        finding.response,
        finding.summary,
        JSON.stringify(finding.evidence),
      ],
    );
    const id = (rows[0] as { id: number }).id;
    if (deliver) {
      await tx.query(`insert into alert_deliveries (alert_id, tenant) values ($1, $2)`, [
        id,
        finding.subject.tenant,
      ]);
    }
    return id;
  });
}

export async function recordOutcome(db: Queryable, id: number, outcome: AlertOutcome): Promise<void> {
  await db.query(`update alerts set outcome = $2::jsonb where id = $1`, [id, JSON.stringify(outcome)]);
}

export interface AlertFilter {
  readonly tenant?: string | undefined;
  readonly agent?: string | undefined;
  readonly since?: Date | undefined;
  readonly ids?: readonly number[] | undefined;
  readonly limit: number;
}

/** Alerts, newest first. Every filter is a bound parameter. */
export async function selectAlerts(db: Queryable, filter: AlertFilter): Promise<AlertRecord[]> {
  const { rows } = await db.query<{
    id: number;
    time: Date;
    tenant: string;
    agent: string;
    user_sub: string | null;
    detection: DetectionName;
    response: Response;
    summary: string;
    evidence: Evidence | string;
    outcome: AlertOutcome | string;
  }>(
    `select id::float8 as id, time, tenant, agent, user_sub, detection, response, summary, evidence, outcome
       from alerts
      where ($1::text is null or tenant = $1) and ($2::text is null or agent = $2)
        and ($3::timestamptz is null or time >= $3) and ($4::bigint[] is null or id = any($4::bigint[]))
      order by id desc limit $5`,
    [filter.tenant ?? null, filter.agent ?? null, filter.since ?? null, filter.ids ?? null, filter.limit],
  );
  return rows.map((row) => ({
    id: row.id,
    time: new Date(row.time).toISOString(),
    tenant: row.tenant,
    agent: row.agent,
    user: row.user_sub,
    detection: row.detection,
    response: row.response,
    summary: row.summary,
    evidence: json(row.evidence),
    outcome: json(row.outcome),
  }));
}

// pg parses jsonb; PGlite does too, but a text cast somewhere along would not: accept both.
function json<T>(value: T | string): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}
