// What migrations/001_foundation.sql promises beyond its tables: the revocation feed that
// gateways poll numbers events in the order they commit, and wakes listeners on commit.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.ts';
import { openMigratedDb, testBackends } from '../support/db.ts';

const REVOKE = `insert into revocations (kind, tenant, jti, expires_at)
  values ('token', 'acme', $1, now() + interval '5 minutes') returning seq`;

describe.each(testBackends())('the revocation feed on $name', (backend) => {
  let db: Db;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
  });
  afterAll(() => db.close());

  it('numbers events in the order their transactions commit, so polling "after seq N" skips none', async () => {
    let holding!: () => void;
    let finish!: () => void;
    const holdingP = new Promise<void>((resolve) => {
      holding = resolve;
    });
    const finishP = new Promise<void>((resolve) => {
      finish = resolve;
    });
    // The first revocation stays uncommitted while the second is attempted.
    const first = db.transaction(async (tx) => {
      const { rows } = await tx.query<{ seq: number }>(REVOKE, ['jti-first']);
      holding();
      await finishP;
      return rows[0]?.seq;
    });
    await holdingP;
    let secondDone = false;
    const second = db.query<{ seq: number }>(REVOKE, ['jti-second']).then(({ rows }) => {
      secondDone = true;
      return rows[0]?.seq;
    });
    await sleep(100);
    expect(secondDone).toBe(false);
    finish();
    const [firstSeq, secondSeq] = await Promise.all([first, second]);
    expect(secondSeq).toBeGreaterThan(firstSeq ?? Number.POSITIVE_INFINITY);
  });

  it('ignores a sequence number supplied by the inserter', async () => {
    const { rows } = await db.query<{ seq: number }>(
      `insert into revocations (seq, kind, tenant, agent) values (1000000, 'agent_quarantined', 'acme', 'billing-agent')
       returning seq`,
    );
    expect(rows[0]?.seq).toBeLessThan(1000000);
  });

  it('refuses a token event without a jti and an agent event without an agent', async () => {
    await expect(
      db.query(`insert into revocations (kind, tenant) values ('token', 'acme')`),
    ).rejects.toMatchObject({
      code: '23514',
    });
    await expect(
      db.query(`insert into revocations (kind, tenant) values ('agent_quarantined', 'acme')`),
    ).rejects.toMatchObject({ code: '23514' });
  });

  it('notifies reins_revocations with the sequence number when the event commits', async () => {
    const seen: string[] = [];
    const unlisten = await db.listen('reins_revocations', (payload) => seen.push(payload));
    const { rows } = await db.query<{ seq: number }>(REVOKE, ['jti-notified']);
    // On PostgreSQL the channel is database-wide: other test files' events may arrive too.
    await expect.poll(() => seen).toContain(String(rows[0]?.seq));
    await unlisten();
  });
});
