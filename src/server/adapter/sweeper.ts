// Removes oidc-provider rows whose expires_at has passed. Reads already ignore expired rows (the
// adapter checks expiry in SQL), so the sweep is about space and index size, not correctness:
// without it every client assertion and every issued token would leave a row behind forever.
//
// Deletes go in bounded batches (by primary key; each batch its own statement), so one sweep
// never holds locks on, or writes WAL for, an unbounded number of rows at once, and concurrent
// token requests keep flowing between batches. Several reins processes may sweep the same
// database: two sweeps picking the same rows simply delete them once.
import type { Queryable } from '../../store/db.ts';

export interface SweepOptions {
  /** Rows per delete statement. Default 1000. */
  batchSize?: number;
  /** Most batches in one sweep; the rest waits for the next tick. Default 100. */
  maxBatches?: number;
}

export interface SweeperOptions extends SweepOptions {
  /** Time between sweeps. Default 60 s. */
  intervalMs?: number;
  /** Told of a failed sweep (the database down, …); the sweeper keeps its schedule. */
  onError?: (err: unknown) => void;
}

/** Deletes expired rows, batch by batch, until none is left or maxBatches ran. Returns the count. */
export async function sweepExpired(db: Queryable, options: SweepOptions = {}): Promise<number> {
  const batchSize = options.batchSize ?? 1000;
  const maxBatches = options.maxBatches ?? 100;
  let deleted = 0;
  for (let batch = 0; batch < maxBatches; batch++) {
    // The outer expiry check is re-evaluated on the row as it is when deleted: a row refreshed by
    // an upsert between the select and the delete (a new expiry) survives.
    const result = await db.query(
      `delete from oidc_models
        where (model, id) in (
          select model, id from oidc_models where expires_at <= now() limit $1
        )
          and expires_at <= now()`,
      [batchSize],
    );
    deleted += result.rowCount;
    if (result.rowCount < batchSize) break;
  }
  return deleted;
}

/**
 * Sweeps now and then every intervalMs. Returns stop(), which cancels the schedule and resolves
 * once a sweep in progress has finished (await it before closing the database). The timer is
 * unref'd: it never keeps the process alive on its own.
 */
export function startSweeper(db: Queryable, options: SweeperOptions = {}): () => Promise<void> {
  const intervalMs = options.intervalMs ?? 60_000;
  const onError = options.onError ?? (() => undefined);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  const tick = () => {
    running = sweepExpired(db, options).then(
      () => undefined,
      (err: unknown) => onError(err),
    );
    // Schedule the next sweep after this one ends, so slow sweeps never pile up.
    void running.then(() => {
      if (stopped) return;
      timer = setTimeout(tick, intervalMs);
      timer.unref();
    });
  };
  tick();

  return async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    await running;
  };
}
