// Which process watches the audit trail, and how far it has read (monitor_lease,
// migrations/009_monitoring.sql). One process in a deployment learns and detects, so that every
// gateway's decisions meet in one baseline per agent and a burst split across two gateways is
// still one burst. It holds a lease it renews at each checkpoint; when it stops renewing (it
// died, or lost the database), another takes over after the lease lapses and continues from the
// cursor and baselines of the last checkpoint: nothing is learnt twice or skipped.
import type { Queryable } from '../store/db.ts';

const LEASE = 'monitor';

export interface Cursor {
  /** Every audit row with an id up to this one has been learnt, except `pending`. */
  readonly afterId: number;
  /** Ids skipped over while they were committing, with when they were first missed (ms). */
  readonly pending: readonly (readonly [id: number, sinceMs: number])[];
}

/**
 * Takes the lease for `holder` if it is free, lapsed or already `holder`'s; returns the cursor
 * to continue from, or null while another process holds it. The first holder ever starts at the
 * audit trail's end: monitoring learns from when it was first switched on, not from history.
 */
export async function acquireLease(db: Queryable, holder: string, leaseMs: number): Promise<Cursor | null> {
  const { rows } = await db.query<{ after_id: number; pending: unknown }>(
    `insert into monitor_lease (name, holder, expires_at, after_id)
       values ($1, $2, now() + $3 * interval '1 millisecond',
               (select coalesce(max(id), 0) from audit_events))
     on conflict (name) do update
       set holder = excluded.holder, expires_at = excluded.expires_at
       where monitor_lease.holder = excluded.holder or monitor_lease.expires_at < now()
     returning after_id::float8 as after_id, pending`,
    [LEASE, holder, leaseMs],
  );
  const row = rows[0];
  if (row === undefined) return null;
  return { afterId: row.after_id, pending: pendingOf(row.pending) };
}

/**
 * Renews `holder`'s lease and records the cursor, in the caller's transaction (with the
 * baselines it wrote); false when the lease is no longer `holder`'s — the caller must then drop
 * what it learnt since its last checkpoint (the new holder learns it again) and roll back.
 */
export async function checkpointLease(
  tx: Queryable,
  holder: string,
  leaseMs: number,
  cursor: Cursor,
): Promise<boolean> {
  const { rows } = await tx.query(
    `update monitor_lease
        set expires_at = now() + $3 * interval '1 millisecond', after_id = $4, pending = $5
      where name = $1 and holder = $2
      returning name`,
    [LEASE, holder, leaseMs, cursor.afterId, JSON.stringify(cursor.pending)],
  );
  return rows.length === 1;
}

/** Whether `holder` holds the lease now (unexpired): asked before acting on a finding. */
export async function holdsLease(db: Queryable, holder: string): Promise<boolean> {
  const { rows } = await db.query(
    `select 1 from monitor_lease where name = $1 and holder = $2 and expires_at > now()`,
    [LEASE, holder],
  );
  return rows.length === 1;
}

/** Lets the lease go at once (an orderly stop), so another process need not wait for it to lapse. */
export async function releaseLease(db: Queryable, holder: string): Promise<void> {
  await db.query(
    `update monitor_lease set expires_at = now() - interval '1 second' where name = $1 and holder = $2`,
    [LEASE, holder],
  );
}

function pendingOf(value: unknown): [number, number][] {
  const list = typeof value === 'string' ? JSON.parse(value) : value;
  if (!Array.isArray(list)) return [];
  return list.filter(
    (item): item is [number, number] =>
      Array.isArray(item) && typeof item[0] === 'number' && typeof item[1] === 'number',
  );
}
