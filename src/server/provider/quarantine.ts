// Quarantine (SPEC.md, "Monitoring and containment"): an agent whose every live token is refused
// at every gateway, that the token endpoint issues nothing to, until an operator releases it.
//
// The state is the revocation feed itself (migrations/001_foundation.sql): quarantining appends
// an 'agent_quarantined' row, releasing an 'agent_released' one, and an agent is quarantined
// while its latest such row is a quarantine. Gateways already follow that feed (LISTEN and
// polling, src/gateway/live-state.ts), which is how a quarantine reaches all of them within a
// second, and the feed keeps who did it, when and why.
import type { Db, Queryable } from '../../store/db.ts';

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

/** The first of `agents` (of one tenant) that is quarantined, or null: one indexed read. */
export async function quarantinedAmong(
  db: Queryable,
  tenant: string,
  agents: readonly string[],
): Promise<string | null> {
  if (agents.length === 1)
    return (await isQuarantined(db, tenant, agents[0] as string)) ? (agents[0] as string) : null;
  const { rows } = await db.query<{ agent: string; kind: string }>(
    `select distinct on (agent) agent, kind from revocations
      where tenant = $1 and agent = any($2::text[]) and kind in ('agent_quarantined', 'agent_released')
      order by agent, seq desc`,
    [tenant, agents],
  );
  return rows.find((row) => row.kind === 'agent_quarantined')?.agent ?? null;
}

/**
 * Quarantines the agent unless it already is; returns whether this call did. The state is read
 * and the row appended under one lock per agent, in one transaction: a release racing a
 * quarantine (an operator's and monitoring's) ends in the state of whichever came last, never in
 * a quarantine that reported "already" while the release undid it.
 */
export function quarantineAgent(db: Db, tenant: string, agent: string, reason: string): Promise<boolean> {
  return change(db, tenant, agent, 'agent_quarantined', reason);
}

/** Releases the agent if it is quarantined; returns whether this call did. */
export function releaseAgent(db: Db, tenant: string, agent: string, reason: string): Promise<boolean> {
  return change(db, tenant, agent, 'agent_released', reason);
}

async function change(
  db: Db,
  tenant: string,
  agent: string,
  kind: 'agent_quarantined' | 'agent_released',
  reason: string,
): Promise<boolean> {
  return db.transaction(async (tx) => {
    await tx.query(`select pg_advisory_xact_lock(hashtext('reins:quarantine:' || $1 || ':' || $2))`, [
      tenant,
      agent,
    ]);
    if ((await isQuarantined(tx, tenant, agent)) === (kind === 'agent_quarantined')) return false;
    await tx.query(`insert into revocations (kind, tenant, agent, reason) values ($1, $2, $3, $4)`, [
      kind,
      tenant,
      agent,
      reason,
    ]);
    return true;
  });
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
  db: Db,
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
