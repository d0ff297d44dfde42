// Following the audit trail as it grows (audit_events, written by audit.ts): `reins audit tail
// --follow` and monitoring (src/runtime/monitoring.ts) both read "every row after the last one
// seen", and both must not skip a row that commits late.
//
// Ids are drawn at insert but become visible at commit: with several gateways writing, id 41 can
// commit after id 42 was read. An id skipped over is watched for this long, then given up (a
// rolled-back insert leaves a gap for ever). Gaps wider than GAP_LIMIT are not watched.
const GAP_WATCH_MS = 30_000;
const GAP_LIMIT = 10_000;

/** Which ids a follower has yet to see. Pure: time comes in as `nowMs`. */
export class FollowCursor {
  #last: number;
  readonly #missing: Map<number, number>;

  /** `missing`: ids skipped over and when they were first missed (what `pending` gave). */
  constructor(last: number, missing: Iterable<readonly [id: number, sinceMs: number]> = []) {
    this.#last = last;
    this.#missing = new Map(missing);
  }

  get after(): number {
    return this.#last;
  }

  /** Ids skipped over and still watched for. */
  get missing(): number[] {
    return [...this.#missing.keys()];
  }

  /** The ids still watched for with when each was first missed, to carry the cursor over. */
  get pending(): [id: number, sinceMs: number][] {
    return [...this.#missing];
  }

  /** Records the ids of rows just read, at `nowMs`. */
  saw(ids: readonly number[], nowMs: number): void {
    for (const id of [...ids].sort((a, b) => a - b)) {
      this.#missing.delete(id);
      if (id <= this.#last) continue;
      if (id - this.#last - 1 <= GAP_LIMIT) {
        for (let gap = this.#last + 1; gap < id; gap++) this.#missing.set(gap, nowMs);
      }
      this.#last = id;
    }
    for (const [id, since] of this.#missing) {
      if (nowMs - since > GAP_WATCH_MS) this.#missing.delete(id);
    }
  }
}
