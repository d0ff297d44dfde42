// One contract for the Db interface, held against every backend: PGlite always, PostgreSQL when
// DATABASE_URL is set. A behaviour that differs between them is stated here, per backend.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db, Queryable } from '../../src/store/db.ts';
import { openPgliteWorker } from '../../src/store/pglite-worker.ts';
import { nextValue, type TestBackend, testBackends } from '../support/db.ts';

const unique = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

// PGlite in its own thread (pglite-worker.ts) is held to the same contract as PGlite in-process.
const backends: { name: TestBackend['name'] | 'pglite-worker'; open(): Promise<Db> }[] = [
  ...testBackends(),
  { name: 'pglite-worker', open: () => openPgliteWorker('memory') },
];

describe.each(backends)('the $name backend', (backend) => {
  let db: Db;
  beforeAll(async () => {
    db = await backend.open();
  });
  afterAll(() => db.close());

  async function freshTable(): Promise<string> {
    const table = unique('notes');
    await db.query(`create table ${table} (id integer primary key, note text)`);
    return table;
  }

  async function count(table: string, on: Queryable = db): Promise<number> {
    const { rows } = await on.query<{ n: number }>(`select count(*) as n from ${table}`);
    return rows[0]?.n ?? Number.NaN;
  }

  describe('queries', () => {
    it('binds parameters and returns the rows', async () => {
      const { rows } = await db.query<{ n: number; s: string }>('select $1::int + 1 as n, $2::text as s', [
        41,
        'x',
      ]);
      expect(rows).toEqual([{ n: 42, s: 'x' }]);
    });

    it('reports how many rows a statement returned or changed', async () => {
      const table = await freshTable();
      expect((await db.query(`insert into ${table} values (1, 'a'), (2, 'b'), (3, 'c')`)).rowCount).toBe(3);
      expect((await db.query(`update ${table} set note = 'z' where id > $1`, [1])).rowCount).toBe(2);
      expect((await db.query(`select * from ${table}`)).rowCount).toBe(3);
      expect((await db.query(`delete from ${table} where id = $1`, [9])).rowCount).toBe(0);
      expect((await db.query(`create index on ${table} (note)`)).rowCount).toBe(0);
    });

    it('runs several statements in one query without parameters and answers with the last', async () => {
      const { rows } = await db.query<{ b: number }>('select 1 as a; select 2 as b');
      expect(rows).toEqual([{ b: 2 }]);
    });

    it('rejects a failed statement with its SQLSTATE in code', async () => {
      const table = await freshTable();
      await db.query(`insert into ${table} values (1, 'a')`);
      await expect(db.query(`insert into ${table} values ($1, 'b')`, [1])).rejects.toMatchObject({
        code: '23505',
      });
    });
  });

  describe('types', () => {
    it('returns bigint as a number while it is exact, and as a bigint beyond', async () => {
      const { rows } = await db.query(
        'select 5::bigint as small, count(*) as n, 9007199254740993::bigint as big',
      );
      expect(rows[0]).toEqual({ small: 5, n: 1, big: 9007199254740993n });
    });

    it('round-trips JSONB passed as JSON text', async () => {
      const value = { a: [1, 'x', null], b: { c: true }, é: 'ü' };
      await db.query(`create table ${unique('docs')} (doc jsonb)`);
      const { rows } = await db.query<{ doc: unknown }>('select $1::jsonb as doc', [JSON.stringify(value)]);
      expect(rows[0]?.doc).toEqual(value);
    });

    it('round-trips timestamptz as a Date at the same instant', async () => {
      const at = new Date('2030-01-02T03:04:05.678Z');
      const { rows } = await db.query<{ at: Date; now: Date }>('select $1::timestamptz as at, now() as now', [
        at,
      ]);
      expect(rows[0]?.at).toBeInstanceOf(Date);
      expect(rows[0]?.at.getTime()).toBe(at.getTime());
      expect(Math.abs((rows[0]?.now.getTime() ?? 0) - Date.now())).toBeLessThan(60_000);
    });

    it('round-trips bytea as bytes', async () => {
      const { rows } = await db.query<{ b: Uint8Array }>('select $1::bytea as b', [
        new Uint8Array([0, 1, 255]),
      ]);
      expect(rows[0]?.b).toBeInstanceOf(Uint8Array);
      expect([...(rows[0]?.b ?? [])]).toEqual([0, 1, 255]);
    });
  });

  describe('transactions', () => {
    it('commits when the work resolves and returns its value', async () => {
      const table = await freshTable();
      const value = await db.transaction(async (tx) => {
        await tx.query(`insert into ${table} values (1, 'a')`);
        return 'done';
      });
      expect(value).toBe('done');
      expect(await count(table)).toBe(1);
    });

    it('rolls back when the work throws, and rethrows that very error', async () => {
      const table = await freshTable();
      const failure = new Error('changed my mind');
      const run = db.transaction(async (tx) => {
        await tx.query(`insert into ${table} values (1, 'a')`);
        throw failure;
      });
      await expect(run).rejects.toBe(failure);
      expect(await count(table)).toBe(0);
    });

    it('rolls back everything when one statement fails', async () => {
      const table = await freshTable();
      const run = db.transaction(async (tx) => {
        await tx.query(`insert into ${table} values (1, 'a')`);
        await tx.query(`insert into ${table} values (1, 'again')`);
      });
      await expect(run).rejects.toMatchObject({ code: '23505' });
      expect(await count(table)).toBe(0);
    });

    it('lets the transaction handle be passed down to helpers, one after another or together', async () => {
      const table = await freshTable();
      const insert = (tx: Queryable, id: number) => tx.query(`insert into ${table} values ($1, 'n')`, [id]);
      await db.transaction(async (tx) => {
        await insert(tx, 1);
        await Promise.all([insert(tx, 2), insert(tx, 3)]);
        expect(await count(table, tx)).toBe(3);
      });
      expect(await count(table)).toBe(3);
    });

    it('refuses the database itself inside its own transaction, and rolls back', async () => {
      const table = await freshTable();
      const viaDb = db.transaction(async (tx) => {
        await tx.query(`insert into ${table} values (1, 'a')`);
        await db.query('select 1');
      });
      await expect(viaDb).rejects.toThrow(/transaction handle/);
      const nested = db.transaction(async () => db.transaction(async () => 'inner'));
      await expect(nested).rejects.toThrow(/transaction handle/);
      expect(await count(table)).toBe(0);
    });

    it('refuses a transaction handle used after its transaction ended', async () => {
      let kept: Queryable | undefined;
      await db.transaction(async (tx) => {
        kept = tx;
      });
      await expect(kept?.query('select 1')).rejects.toThrow(/closed/i);
    });

    it('never shows a query outside an open transaction its uncommitted writes', async () => {
      const table = await freshTable();
      let inserted!: () => void;
      let finish!: () => void;
      const insertedP = new Promise<void>((resolve) => {
        inserted = resolve;
      });
      const finishP = new Promise<void>((resolve) => {
        finish = resolve;
      });
      const committing = db.transaction(async (tx) => {
        await tx.query(`insert into ${table} values (1, 'a')`);
        inserted();
        await finishP;
      });
      await insertedP;
      let seenWhileOpen: number | undefined;
      const outside = count(table).then((n) => {
        seenWhileOpen = n;
        return n;
      });
      await sleep(100);
      const answeredWhileOpen = seenWhileOpen;
      finish();
      await committing;
      if (backend.name === 'pg') {
        // PostgreSQL: another connection answers at once, from the committed state before.
        expect(answeredWhileOpen).toBe(0);
        expect(await outside).toBe(0);
      } else {
        // PGlite, one connection: the query waits for the transaction, then sees it committed.
        expect(answeredWhileOpen).toBeUndefined();
        expect(await outside).toBe(1);
      }
    });

    it('never shows a query outside a transaction the writes it rolled back', async () => {
      const table = await freshTable();
      let inserted!: () => void;
      const insertedP = new Promise<void>((resolve) => {
        inserted = resolve;
      });
      const failing = db.transaction(async (tx) => {
        await tx.query(`insert into ${table} values (1, 'a')`);
        inserted();
        await sleep(50);
        throw new Error('abandon');
      });
      await insertedP;
      const outside = count(table);
      await expect(failing).rejects.toThrow('abandon');
      expect(await outside).toBe(0);
    });
  });

  describe('listen and notify', () => {
    it('delivers a notification and its payload to a listener', async () => {
      const channel = unique('ch');
      let onPayload!: (payload: string) => void;
      const received = nextValue<string>((resolve) => {
        onPayload = resolve;
      });
      const unlisten = await db.listen(channel, (payload) => onPayload(payload));
      await db.notify(channel, 'jti-123');
      expect(await received).toBe('jti-123');
      await unlisten();
    });

    it('delivers a notification sent in a transaction when it commits, and never when it rolls back', async () => {
      const channel = unique('ch');
      const payloads: string[] = [];
      let onMarker!: () => void;
      const marker = nextValue<void>((resolve) => {
        onMarker = resolve;
      });
      const unlisten = await db.listen(channel, (payload) => {
        payloads.push(payload);
        if (payload === 'marker') onMarker();
      });
      await expect(
        db.transaction(async (tx) => {
          await tx.query('select pg_notify($1, $2)', [channel, 'rolled-back']);
          throw new Error('abandon');
        }),
      ).rejects.toThrow('abandon');
      await db.transaction(async (tx) => {
        await tx.query('select pg_notify($1, $2)', [channel, 'committed']);
      });
      await db.notify(channel, 'marker');
      await marker;
      expect(payloads).toEqual(['committed', 'marker']);
      await unlisten();
    });

    it('stops delivering to a listener once it unsubscribed, and keeps delivering to the others', async () => {
      const channel = unique('ch');
      const gone: string[] = [];
      let onStaying!: (payload: string) => void;
      const staying = nextValue<string>((resolve) => {
        onStaying = resolve;
      });
      const unlistenGone = await db.listen(channel, (payload) => gone.push(payload));
      const unlistenStaying = await db.listen(channel, (payload) => onStaying(payload));
      await unlistenGone();
      await unlistenGone();
      await db.notify(channel, 'after');
      expect(await staying).toBe('after');
      await sleep(50);
      expect(gone).toEqual([]);
      await unlistenStaying();
    });

    it('keeps delivering to other listeners when one throws', async () => {
      const channel = unique('ch');
      let onPayload!: (payload: string) => void;
      const received = nextValue<string>((resolve) => {
        onPayload = resolve;
      });
      const unlistenThrowing = await db.listen(channel, () => {
        throw new Error('listener bug');
      });
      const unlisten = await db.listen(channel, (payload) => onPayload(payload));
      await db.notify(channel, 'still here');
      expect(await received).toBe('still here');
      await Promise.all([unlistenThrowing(), unlisten()]);
    });

    it('refuses a channel name that is not a lower-case identifier', async () => {
      await expect(db.listen('Revocations; drop table x', () => undefined)).rejects.toThrow(/channel name/);
      await expect(db.notify('Mixed', 'x')).rejects.toThrow(/channel name/);
    });
  });

  describe('close', () => {
    it('refuses queries once the database is closed', async () => {
      const other = await backend.open();
      await other.query('select 1');
      await other.close();
      await expect(other.query('select 1')).rejects.toThrow();
    });
  });
});
