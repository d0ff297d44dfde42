// Baselines as they last (monitor_baselines, migrations/009_monitoring.sql): each subject's
// snapshot (baseline.ts), written at checkpoints together with the cursor, never per request.
import type { Queryable } from '../store/db.ts';
import type { BaselineSnapshot, SubjectKey } from './baseline.ts';

export interface StoredBaseline {
  readonly key: SubjectKey;
  readonly snapshot: BaselineSnapshot;
  readonly updatedAt: Date;
}

interface Row {
  tenant: string;
  agent: string;
  user_sub: string;
  snapshot: BaselineSnapshot | string;
  updated_at: Date;
}

/** What is kept of every subject (of one tenant and agent when given), agent first, then users. */
export async function loadBaselines(
  db: Queryable,
  filter: { readonly tenant?: string; readonly agent?: string } = {},
): Promise<StoredBaseline[]> {
  const { rows } = await db.query<Row>(
    `select tenant, agent, user_sub, snapshot, updated_at from monitor_baselines
      where ($1::text is null or tenant = $1) and ($2::text is null or agent = $2)`,
    [filter.tenant ?? null, filter.agent ?? null],
  );
  return rows
    .map((row) => ({
      key: { tenant: row.tenant, agent: row.agent, user: row.user_sub === '' ? null : row.user_sub },
      snapshot: (typeof row.snapshot === 'string'
        ? JSON.parse(row.snapshot)
        : row.snapshot) as BaselineSnapshot,
      updatedAt: new Date(row.updated_at),
    }))
    .sort(
      (a, b) =>
        compare(a.key.tenant, b.key.tenant) ||
        compare(a.key.agent, b.key.agent) ||
        compare(a.key.user ?? '', b.key.user ?? ''),
    );
}

/** Writes these subjects' snapshots (one statement per hundred). */
export async function saveBaselines(
  tx: Queryable,
  baselines: readonly { readonly key: SubjectKey; readonly snapshot: BaselineSnapshot }[],
): Promise<void> {
  for (let start = 0; start < baselines.length; start += 100) {
    const chunk = baselines.slice(start, start + 100);
    const params: unknown[] = [];
    const values = chunk.map(({ key, snapshot }) => {
      params.push(key.tenant, key.agent, key.user ?? '', JSON.stringify(snapshot));
      const n = params.length;
      return `($${n - 3}, $${n - 2}, $${n - 1}, $${n}::jsonb, now())`;
    });
    await tx.query(
      `insert into monitor_baselines (tenant, agent, user_sub, snapshot, updated_at) values ${values.join(', ')}
       on conflict (tenant, agent, user_sub) do update set snapshot = excluded.snapshot, updated_at = now()`,
      params,
    );
  }
}

// Code-point order, the same on every database (collations differ between servers).
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
