// Group commit for the token ledger: rows recorded while the event loop is busy with other
// requests are written together in one multi-row INSERT, so that fifty concurrent token
// requests cost a handful of commits instead of fifty.
//
// The guarantee is unchanged from one INSERT per token: record() resolves only once the
// statement holding its row has committed, and rejects if that row could not be written, so a
// token is never answered before the ledger knows it (a token the ledger does not know could
// never be revoked).
//
// A batch flushes on the next turn of the event loop (setImmediate, so that every request
// already parsed gets to add its row), or at once when `maxRows` are waiting. At most
// `maxInFlight` batches are being written at a time; rows arriving meanwhile wait and form
// the next batch, which is what makes the batches grow with load.
//
// One bad row must not fail its neighbours: a multi-row INSERT is all or nothing, so when a
// batch of more than one row fails, each of its rows is retried alone; only the callers
// whose own row fails are rejected, with that row's error. If the database is down, every
// retry fails too and every caller is rejected.
import type { Queryable } from '../../store/db.ts';
import { type IssuedToken, insertIssued, PARAMS_PER_ROW } from './ledger.ts';

export interface LedgerBatchOptions {
  /** Rows per INSERT at most. Default 256; capped by PostgreSQL's 65,535 parameters. */
  readonly maxRows?: number;
  /** Batches written at the same time at most. Default 4 (keep it under the pool size). */
  readonly maxInFlight?: number;
}

interface Pending {
  readonly token: IssuedToken;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

const MAX_ROWS_LIMIT = Math.floor(65_535 / PARAMS_PER_ROW);

export class LedgerBatcher {
  readonly #db: Queryable;
  readonly #maxRows: number;
  readonly #maxInFlight: number;
  #waiting: Pending[] = [];
  #scheduled = false;
  #inFlight = 0;

  constructor(db: Queryable, options: LedgerBatchOptions = {}) {
    this.#db = db;
    this.#maxRows = Math.max(1, Math.min(options.maxRows ?? 256, MAX_ROWS_LIMIT));
    this.#maxInFlight = Math.max(1, options.maxInFlight ?? 4);
  }

  /** Resolves once `token`'s row is committed; rejects with the error that kept it out. */
  record(token: IssuedToken): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ token, resolve, reject });
      if (this.#waiting.length >= this.#maxRows) this.#flush();
      else this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#waiting.length > 0 && this.#inFlight < this.#maxInFlight) {
      const batch = this.#waiting.splice(0, this.#maxRows);
      this.#inFlight++;
      void this.#write(batch).finally(() => {
        this.#inFlight--;
        // Rows that queued up behind the full pipeline go out as the next batch.
        if (this.#waiting.length > 0) this.#schedule();
      });
    }
  }

  async #write(batch: Pending[]): Promise<void> {
    try {
      await insertIssued(
        this.#db,
        batch.map((p) => p.token),
      );
      for (const p of batch) p.resolve();
    } catch (err) {
      if (batch.length === 1) {
        batch[0]?.reject(err);
        return;
      }
      // Find the bad rows: each alone, so that the good ones still commit. One after another, in
      // the order they were recorded: of two rows with one jti, the first is the one admitted
      // (in parallel, a pool could commit either).
      for (const p of batch) {
        await insertIssued(this.#db, [p.token]).then(p.resolve, p.reject);
      }
    }
  }
}
