// Quarantine (SPEC.md, "Monitoring and containment"): an agent whose every live token is refused
// at every gateway, that the token endpoint issues nothing to, until an operator releases it.
//
// The state is the revocation feed itself (migrations/001_foundation.sql): quarantining appends
// an 'agent_quarantined' row, releasing an 'agent_released' one, and an agent is quarantined
// while its latest such row is a quarantine. Gateways already follow that feed (LISTEN and
// polling, src/gateway/live-state.ts), which is how a quarantine reaches all of them within a
// second, and the feed keeps who did it, when and why.
import type { Queryable } from '../../store/db.ts';

export interface QuarantineRecord {
  readonly tenant: string;
  readonly agent: string;
  readonly since: Date;
  readonly reason: string | null;
}

/** Whether the agent's latest quarantine row is a quarantine: one indexed read (revocations_agent). */
export async function isQuarantined(db: Queryable, tenant: string, agent: string): Promise<boolean> {
  const { rows } = await db.query<{ kind: string }>(
    `select kind from revocations
      where tenant = $1 and agent = $2 and kind in ('agent_quarantined', 'agent_released')
      order by seq desc limit 1`,
    [tenant, agent],
  );
  return rows[0]?.kind === 'agent_quarantined';
}

/**
 * Quarantines the agent unless it already is; returns whether this call did. Two concurrent
 * calls may both append a row: the state is the same either way.
 */
export async function quarantineAgent(
  db: Queryable,
  tenant: string,
  agent: string,
  reason: string,
): Promise<boolean> {
  if (await isQuarantined(db, tenant, agent)) return false;
  await db.query(
    `insert into revocations (kind, tenant, agent, reason) values ('agent_quarantined', $1, $2, $3)`,
    [tenant, agent, reason],
  );
  return true;
}

/** Releases the agent if it is quarantined; returns whether this call did. */
export async function releaseAgent(
  db: Queryable,
  tenant: string,
  agent: string,
  reason: string,
): Promise<boolean> {
  if (!(await isQuarantined(db, tenant, agent))) return false;
  await db.query(
    `insert into revocations (kind, tenant, agent, reason) values ('agent_released', $1, $2, $3)`,
    [tenant, agent, reason],
  );
  return true;
}

/** Every agent quarantined now (of one tenant, or all), oldest quarantine first. */
export async function listQuarantined(db: Queryable, tenant?: string): Promise<QuarantineRecord[]> {
  const { rows } = await db.query<{
    tenant: string;
    agent: string;
    occurred_at: Date;
    reason: string | null;
    kind: string;
  }>(
    `select distinct on (tenant, agent) tenant, agent, occurred_at, reason, kind
       from revocations
      where kind in ('agent_quarantined', 'agent_released') and ($1::text is null or tenant = $1)
      order by tenant, agent, seq desc`,
    [tenant ?? null],
  );
  return rows
    .filter((row) => row.kind === 'agent_quarantined')
    .map((row) => ({
      tenant: row.tenant,
      agent: row.agent,
      since: new Date(row.occurred_at),
      reason: row.reason,
    }))
    .sort((a, b) => a.since.getTime() - b.since.getTime());
}

/** What an operator's quarantine or release did. */
export type QuarantineChange =
  | 'quarantined'
  | 'already_quarantined'
  | 'released'
  | 'not_quarantined'
  | 'unknown_agent';

/**
 * The operator's `reins agent quarantine|release`. Quarantining names an agent of the applied
 * policy (a misspelt name must not read as done); releasing does not need one, so that an agent
 * removed from the policy while quarantined can still be released.
 */
export async function setQuarantine(
  db: Queryable,
  tenant: string,
  agent: string,
  quarantined: boolean,
  reason: string,
): Promise<QuarantineChange> {
  if (!quarantined) return (await releaseAgent(db, tenant, agent, reason)) ? 'released' : 'not_quarantined';
  const { rows } = await db.query(
    `select 1 from clients where tenant = $1 and client_id = $2 and kind = 'agent'`,
    [tenant, agent],
  );
  if (rows.length === 0) return 'unknown_agent';
  return (await quarantineAgent(db, tenant, agent, reason)) ? 'quarantined' : 'already_quarantined';
}
