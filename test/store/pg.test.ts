// PostgreSQL-only behaviour: how an unreachable server is reported, and how the pool and the
// listener survive connections cut under them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.ts';
import { openPg } from '../../src/store/pg.ts';
import { nextValue, openFailure, testDatabaseUrl, uniqueName } from '../support/db.ts';

describe('opening PostgreSQL', () => {
  it('reports an unreachable server as database_unavailable, naming it but not the password', async () => {
    const err = await openFailure(() => openPg('postgres://reins:s3cret-pw@127.0.0.1:1/reins'));
    expect(err.code).toBe('database_unavailable');
    expect(err.message).toContain('postgres://reins:***@127.0.0.1:1/reins');
    expect(err.message).toContain('is the server running');
    expect(err.message).not.toContain('s3cret-pw');
  });

  it('reports a missing unix socket the same way', async () => {
    const err = await openFailure(() =>
      openPg('postgres://reins@/reins?host=/nonexistent-socket-dir&password=s3cret-pw'),
    );
    expect(err.code).toBe('database_unavailable');
    expect(err.message).not.toContain('s3cret-pw');
  });

  it('refuses a URL that is not a PostgreSQL URL, showing what one looks like', async () => {
    const err = await openFailure(() => openPg('mysql://root@localhost/reins'));
    expect(err.code).toBe('database_unavailable');
    expect(err.message).toContain('postgres://USER:PASSWORD@HOST:PORT/DATABASE');
  });

  it.runIf(testDatabaseUrl())('reports a database that does not exist, saying to create it', async () => {
    const url = (testDatabaseUrl() ?? '').replace(
      /^(postgres(?:ql)?:\/\/[^/]*\/)[^?]*/i,
      '$1no_such_database',
    );
    const err = await openFailure(() => openPg(url));
    expect(err.code).toBe('database_unavailable');
    expect(err.message).toMatch(/no_such_database.*createdb/);
  });
});

describe.runIf(testDatabaseUrl())('PostgreSQL connections cut under reins', () => {
  const url = testDatabaseUrl() ?? '';
  const schema = uniqueName();
  const backgroundErrors: unknown[] = [];
  let db: Db;
  let admin: Db;
  beforeAll(async () => {
    db = await openPg(url, { schema, max: 1, onBackgroundError: (err) => backgroundErrors.push(err) });
    admin = await openPg(url);
  });
  afterAll(async () => {
    await admin.query(`drop schema if exists "${schema}" cascade`);
    await Promise.all([db.close(), admin.close()]);
  });

  it('survives an idle pooled connection being cut: the error is reported and the next query works', async () => {
    const { rows } = await db.query<{ pid: number }>('select pg_backend_pid() as pid');
    const reported = backgroundErrors.length;
    await admin.query('select pg_terminate_backend($1)', [rows[0]?.pid]);
    await expect.poll(() => backgroundErrors.length).toBeGreaterThan(reported);
    expect(backgroundErrors.at(-1)).toMatchObject({ code: 'database_unavailable' });
    expect((await db.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('tells a listener whose connection was cut with an empty payload, then delivers again', async () => {
    const channel = uniqueName('ch');
    const payloads: string[] = [];
    let onPayload: (payload: string) => void = () => undefined;
    const unlisten = await db.listen(channel, (payload) => {
      payloads.push(payload);
      onPayload(payload);
    });
    const { rows } = await admin.query<{ pid: number }>(
      `select pid from pg_stat_activity where application_name = 'reins-listener' and query = $1`,
      [`LISTEN "${channel}"`],
    );
    expect(rows).toHaveLength(1);
    const reconnected = nextValue<string>((resolve) => {
      onPayload = resolve;
    });
    await admin.query('select pg_terminate_backend($1)', [rows[0]?.pid]);
    expect(await reconnected).toBe('');
    const delivered = nextValue<string>((resolve) => {
      onPayload = resolve;
    });
    await db.notify(channel, 'after reconnect');
    expect(await delivered).toBe('after reconnect');
    expect(payloads).toEqual(['', 'after reconnect']);
    await unlisten();
  });
});
