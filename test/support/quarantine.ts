// Quarantining an agent and releasing it, as tests need it before `reins agent quarantine`
// exists (issue 14 builds it): one row each on the revocation feed (migrations/001_foundation.sql),
// which every gateway follows (src/gateway/live-state.ts). The feed trigger numbers the row and
// NOTIFYs `reins_revocations` at commit; an agent's state is its latest row.
import type { Db } from '../../src/store/db.ts';

export interface QuarantineEvent {
  /** The feed sequence number the row was given. */
  readonly seq: number;
  readonly kind: 'agent_quarantined' | 'agent_released';
  readonly tenant: string;
  readonly agent: string;
  readonly reason: string;
  readonly occurredAt: Date;
}

/** Cuts `agent` of `tenant` off at every gateway until it is released. */
export function quarantineAgent(
  db: Db,
  tenant: string,
  agent: string,
  reason: string,
): Promise<QuarantineEvent> {
  return appendAgentEvent(db, 'agent_quarantined', tenant, agent, reason);
}

/** Lets `agent` of `tenant` through again. */
export function releaseAgent(
  db: Db,
  tenant: string,
  agent: string,
  reason: string,
): Promise<QuarantineEvent> {
  return appendAgentEvent(db, 'agent_released', tenant, agent, reason);
}

async function appendAgentEvent(
  db: Db,
  kind: QuarantineEvent['kind'],
  tenant: string,
  agent: string,
  reason: string,
): Promise<QuarantineEvent> {
  const { rows } = await db.transaction((tx) =>
    tx.query<{ seq: string | number; occurred_at: Date }>(
      `insert into revocations (kind, tenant, agent, reason) values ($1, $2, $3, $4)
     returning seq, occurred_at`,
      [kind, tenant, agent, reason],
    ),
  );
  const row = rows[0];
  if (!row) throw new Error('the revocation feed row just written cannot be read back');
  return { seq: Number(row.seq), kind, tenant, agent, reason, occurredAt: new Date(row.occurred_at) };
}
