import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAdapterFactory, startSweeper, sweepExpired } from '../../../src/server/adapter/index.ts';
import type { Db } from '../../../src/store/db.ts';
import { openMigratedDb, testBackends } from '../../support/db.ts';

describe.each(testBackends())('the expiry sweep on $name', (backend) => {
  let db: Db;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
  });
  afterAll(() => db.close());
  beforeEach(async () => {
    await db.query('delete from oidc_models');
  });

  async function ids(): Promise<string[]> {
    const result = await db.query<{ id: string }>('select id from oidc_models order by id');
    return result.rows.map((row) => row.id);
  }

  it('deletes expired rows and keeps live rows and rows without expiry', async () => {
    const adapterFor = createAdapterFactory(db);
    await adapterFor('AccessToken').upsert('expired-1', { jti: 'expired-1' }, -10);
    await adapterFor('ReplayDetection').upsert('expired-2', { jti: 'expired-2' }, -1);
    await adapterFor('AccessToken').upsert('live', { jti: 'live' }, 600);
    await adapterFor('Client').upsert('forever', { client_id: 'forever' });

    expect(await sweepExpired(db)).toBe(2);
    expect(await ids()).toEqual(['forever', 'live']);
  });

  it('works through more expired rows than one batch holds', async () => {
    await db.query(
      `insert into oidc_models (model, id, payload, expires_at)
       select 'AccessToken', 'old-' || n, '{}'::jsonb, now() - interval '1 minute' from generate_series(1, 25) n`,
    );
    await createAdapterFactory(db)('AccessToken').upsert('live', { jti: 'live' }, 600);

    expect(await sweepExpired(db, { batchSize: 10 })).toBe(25);
    expect(await ids()).toEqual(['live']);
  });

  it('stops after maxBatches and leaves the rest for the next sweep', async () => {
    await db.query(
      `insert into oidc_models (model, id, payload, expires_at)
       select 'AccessToken', 'old-' || n, '{}'::jsonb, now() - interval '1 minute' from generate_series(1, 25) n`,
    );
    expect(await sweepExpired(db, { batchSize: 10, maxBatches: 2 })).toBe(20);
    expect(await ids()).toHaveLength(5);
  });

  it('sweeps on its schedule until stopped', async () => {
    await createAdapterFactory(db)('AccessToken').upsert('expired', { jti: 'expired' }, -1);
    const stop = startSweeper(db, { intervalMs: 20 });
    try {
      await expect.poll(ids, { timeout: 5_000 }).toEqual([]);
      // A row that expires after the first sweep is removed by a later one.
      await createAdapterFactory(db)('AccessToken').upsert('later', { jti: 'later' }, -1);
      await expect.poll(ids, { timeout: 5_000 }).toEqual([]);
    } finally {
      await stop();
    }
    await createAdapterFactory(db)('AccessToken').upsert('after-stop', { jti: 'after-stop' }, -1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await ids()).toEqual(['after-stop']);
  });
});

describe('the sweeper schedule', () => {
  it('reports a failed sweep to onError and keeps sweeping', async () => {
    const errors: unknown[] = [];
    const down = {
      query: async (): Promise<never> => {
        throw new Error('database is down');
      },
    };
    const stop = startSweeper(down, { intervalMs: 10, onError: (err) => errors.push(err) });
    try {
      await expect.poll(() => errors.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(2);
      expect(errors[0]).toMatchObject({ message: 'database is down' });
    } finally {
      await stop();
    }
  });
});
