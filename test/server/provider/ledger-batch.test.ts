// Group commit of ledger rows (src/server/provider/ledger-batch.ts), on every database backend.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type IssuedToken, insertIssued } from '../../../src/server/provider/ledger.ts';
import { LedgerBatcher } from '../../../src/server/provider/ledger-batch.ts';
import type { Db, Queryable } from '../../../src/store/db.ts';
import { openMigratedDb, testBackends } from '../../support/db.ts';

function token(jti: string): IssuedToken {
  return {
    jti,
    tenant: 'acme',
    clientId: 'billing-agent',
    sub: 'billing-agent',
    agent: 'billing-agent',
    parentJti: null,
    kind: 'client_credentials',
    kid: 'k1',
    iat: 1_800_000_000,
    exp: 1_800_000_120,
  };
}

/** `db`, counting the statements sent through it; `failing` makes every statement fail. */
function counting(db: Queryable, failing = false): Queryable & { statements: number } {
  const wrapper = {
    statements: 0,
    query<R>(sql: string, params?: readonly unknown[]) {
      wrapper.statements++;
      if (failing) return Promise.reject(new Error('connection terminated'));
      return db.query<R>(sql, params);
    },
  };
  return wrapper;
}

async function present(db: Db, jtis: readonly string[]): Promise<string[]> {
  const { rows } = await db.query<{ jti: string }>(
    'select jti from issued_tokens where jti = any($1) order by jti',
    [jtis],
  );
  return rows.map((r) => r.jti);
}

let run = 0;
const jtisFor = (n: number) => {
  run++;
  return Array.from({ length: n }, (_, i) => `r${run}-${String(i).padStart(4, '0')}`);
};

describe.each(testBackends())('ledger group commit on $name', (backend) => {
  let db: Db;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
  });
  afterAll(() => db.close());

  it('writes fifty concurrent rows in a few statements and resolves every caller after its row is in', async () => {
    const via = counting(db);
    const batcher = new LedgerBatcher(via);
    const jtis = jtisFor(50);
    await Promise.all(jtis.map((jti) => batcher.record(token(jti))));
    expect(await present(db, jtis)).toEqual(jtis);
    expect(via.statements).toBeLessThanOrEqual(4);
  });

  it('splits a queue longer than maxRows into several statements', async () => {
    const via = counting(db);
    const batcher = new LedgerBatcher(via, { maxRows: 16, maxInFlight: 1 });
    const jtis = jtisFor(100);
    await Promise.all(jtis.map((jti) => batcher.record(token(jti))));
    expect(await present(db, jtis)).toEqual(jtis);
    expect(via.statements).toBe(7);
  });

  it('rejects only the caller whose row fails; its neighbours in the batch are still written', async () => {
    const [taken = ''] = jtisFor(1);
    await insertIssued(db, [token(taken)]);
    const batcher = new LedgerBatcher(db);
    const good = jtisFor(9);
    const outcomes = await Promise.allSettled(
      [...good.slice(0, 4), taken, ...good.slice(4)].map((jti) => batcher.record(token(jti))),
    );
    expect(outcomes.map((o) => o.status)).toEqual([
      ...Array(4).fill('fulfilled'),
      'rejected',
      ...Array(5).fill('fulfilled'),
    ]);
    expect(await present(db, good)).toEqual(good);
  });

  it('admits only the first of two rows with the same jti in one batch', async () => {
    const [jti = ''] = jtisFor(1);
    const batcher = new LedgerBatcher(db);
    const outcomes = await Promise.allSettled([batcher.record(token(jti)), batcher.record(token(jti))]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected']);
  });

  it('rejects every caller when the database cannot be written', async () => {
    const batcher = new LedgerBatcher(counting(db, true));
    const jtis = jtisFor(5);
    const outcomes = await Promise.allSettled(jtis.map((jti) => batcher.record(token(jti))));
    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
    expect(await present(db, jtis)).toEqual([]);
  });

  it('keeps working after a failed batch', async () => {
    const batcher = new LedgerBatcher(db);
    const [taken = ''] = jtisFor(1);
    await insertIssued(db, [token(taken)]);
    await expect(batcher.record(token(taken))).rejects.toThrow();
    const later = jtisFor(3);
    await Promise.all(later.map((jti) => batcher.record(token(jti))));
    expect(await present(db, later)).toEqual(later);
  });
});
