// Quarantining an agent and releasing it: one row each on the revocation feed
// (migrations/001_foundation.sql), which every gateway follows (live-state.ts). The feed trigger
// numbers the row and NOTIFYs `reins_revocations` at commit, so a quarantine reaches every
// gateway within a second (SPEC.md, "The gateway"). The state of an agent is its latest row:
// rows are never updated or deleted, so the feed is also the audit trail of who was cut off when.
//
// Backs `reins agent quarantine` / `release` and the monitor's automatic responses. I/O.
import type { Db, Queryable } from '../store/db.ts';

export type QuarantineKind = 'agent_quarantined' | 'agent_released';

export interface QuarantineEvent {
  /** The feed sequence number the row was given. */
  readonly seq: number;
  readonly kind: QuarantineKind;
  readonly tenant: string;
  readonly agent: string;
  readonly reason: string;
  readonly occurredAt: Date;
}

/**
 * Cuts `agent` of `tenant` off at every gateway: each refuses its requests (`agent_quarantined`)
 * and closes its open tunnels, whatever tokens it holds, until it is released.
 */
export function quarantineAgent(
  db: Db,
  tenant: string,
  agent: string,
  reason: string,
): Promise<QuarantineEvent> {
  return db.transaction((tx) => appendAgentEvent(tx, 'agent_quarantined', tenant, agent, reason));
}

/** Lets `agent` of `tenant` through again (its tokens are still checked as always). */
export function releaseAgent(
  db: Db,
  tenant: string,
  agent: string,
  reason: string,
): Promise<QuarantineEvent> {
  return db.transaction((tx) => appendAgentEvent(tx, 'agent_released', tenant, agent, reason));
}

/**
 * Appends the event inside the caller's transaction, for callers that write more in the same
 * transaction (e.g. the monitor recording its detection). Visible to gateways at commit.
 */
export async function appendAgentEvent(
  tx: Queryable,
  kind: QuarantineKind,
  tenant: string,
  agent: string,
  reason: string,
): Promise<QuarantineEvent> {
  const { rows } = await tx.query<{ seq: string | number; occurred_at: Date }>(
    `insert into revocations (kind, tenant, agent, reason) values ($1, $2, $3, $4)
     returning seq, occurred_at`,
    [kind, tenant, agent, reason],
  );
  const row = rows[0];
  if (!row) throw new Error('the revocation feed row just written cannot be read back');
  return { seq: Number(row.seq), kind, tenant, agent, reason, occurredAt: new Date(row.occurred_at) };
}
