// Replay over the audit trail (replay.ts): the rows recorded since a time, read page by page by
// id so that a day of traffic never sits in memory at once, judged under the applied policy and
// a planned one. Read only.
import type { PolicyModel } from '../policy/model.ts';
import { readAppliedPolicy } from '../policy/store-read.ts';
import type { Db } from '../store/db.ts';
import { selectAudit } from './audit-read.ts';
import { type ReplayedRow, type ReplayReport, replayDecisions } from './replay.ts';

const PAGE = 10_000;

/** Judges every audit row since `since` under the applied policy and `planned`. */
export async function replaySince(db: Db, planned: PolicyModel, since: Date): Promise<ReplayReport> {
  const applied = await readAppliedPolicy(db);
  return replayDecisions(rowsSince(db, since), applied.model, planned);
}

/** The rows as the judging loop asks for them; pages are read ahead of it, one at a time. */
function rowsSince(db: Db, since: Date): AsyncIterable<ReplayedRow> {
  return {
    async *[Symbol.asyncIterator]() {
      let after = 0;
      for (;;) {
        const page = await selectAudit(db, { after, since, order: 'oldest', limit: PAGE });
        yield* page;
        if (page.length < PAGE) return;
        after = (page[page.length - 1] as { id: number }).id;
      }
    },
  };
}
