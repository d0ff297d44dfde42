// PGlite in a thread of its own (src/store/pglite-worker.ts): what the contract suite cannot see.
// Values and errors cross the thread boundary unchanged, the data directory is locked as
// in-process, a thread that stops fails every request instead of leaving it waiting, and the
// engine's work does not hold up the calling thread.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { threadId } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { type Db, StoreError } from '../../src/store/db.ts';
import { openPglite } from '../../src/store/pglite.ts';
import { engineThreadOf, openPgliteWorker } from '../../src/store/pglite-worker.ts';
import { nextValue, openFailure } from '../support/db.ts';

const opened: Db[] = [];
const dirs: string[] = [];

async function open(dataDir: string | 'memory' = 'memory', onBackgroundError?: (err: unknown) => void) {
  const db = await openPgliteWorker(dataDir, onBackgroundError ? { onBackgroundError } : {});
  opened.push(db);
  return db;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'reins-pglite-worker-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((db) => db.close()));
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** Settles `promise` into what it rejected with (or fails when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('values across the thread boundary', () => {
  const sql = `select $1::bytea as bytes, $2::timestamptz as at, $3::jsonb as doc,
      5::int8 as small, 9007199254740993::int8 as big, 1.5::numeric as exact, 2.5::float8 as approx,
      true as yes, null as nothing, array[1, 2]::int[] as list, 'é'::text as word`;
  const params = [
    new Uint8Array([0, 1, 255]),
    new Date('2030-01-02T03:04:05.678Z'),
    JSON.stringify({ a: [1, 'x', null], b: { c: true } }),
  ];

  it('gives each column the same value, of the same type, as in-process PGlite', async () => {
    const inProcess = await openPglite('memory');
    const expected = (await inProcess.query(sql, params)).rows[0] as Record<string, unknown>;
    await inProcess.close();
    const db = await open();
    const row = (await db.query(sql, params)).rows[0] as Record<string, unknown>;
    expect(row).toEqual(expected);
    for (const [column, value] of Object.entries(expected)) {
      expect([column, row[column]?.constructor]).toEqual([column, value?.constructor]);
    }
    expect(row.bytes).toBeInstanceOf(Uint8Array);
    expect([...(row.bytes as Uint8Array)]).toEqual([0, 1, 255]);
    expect(row.at).toBeInstanceOf(Date);
    expect((row.at as Date).toISOString()).toBe('2030-01-02T03:04:05.678Z');
    expect(row.big).toBe(9007199254740993n);
  });

  it('stores a bytea sent as a Buffer and reads the same bytes back', async () => {
    const db = await open();
    await db.query('create table blobs (b bytea)');
    await db.query('insert into blobs values ($1)', [Buffer.from('reins', 'utf8')]);
    const { rows } = await db.query<{ b: Uint8Array }>('select b from blobs');
    expect(Buffer.from(rows[0]?.b ?? []).toString('utf8')).toBe('reins');
  });

  it('rejects a parameter that cannot be cloned, and keeps serving', async () => {
    const db = await open();
    await expect(db.query('select $1::text as t', [() => 'no'])).rejects.toThrow(/could not be cloned/);
    expect((await db.query('select 1 as n')).rows).toEqual([{ n: 1 }]);
  });
});

describe('errors across the thread boundary', () => {
  it('keeps a unique violation’s PostgreSQL fields, as in-process PGlite reports them', async () => {
    const failOn = async (db: Db) => {
      await db.query('create table names (name text primary key)');
      await db.query('insert into names values ($1)', ['a']);
      return (await rejection(db.query('insert into names values ($1)', ['a']))) as Record<string, unknown>;
    };
    const inProcess = await openPglite('memory');
    const expected = await failOn(inProcess);
    await inProcess.close();
    const err = await failOn(await open());
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({
      code: '23505',
      constraint: 'names_pkey',
      severity: 'ERROR',
      detail: 'Key (name)=(a) already exists.',
      message: expected.message,
      name: expected.name,
    });
  });

  it('keeps the code of an error raised inside a transaction', async () => {
    const db = await open();
    const err = await rejection(db.transaction((tx) => tx.query('select 1 / 0')));
    expect(err).toMatchObject({ code: '22012', message: 'division by zero' });
  });
});

describe('transactions across the thread boundary', () => {
  it('commits the writes when the work resolves', async () => {
    const db = await open();
    await db.query('create table notes (note text)');
    expect(
      await db.transaction((tx) => tx.query('insert into notes values ($1)', ['kept']).then(() => 7)),
    ).toBe(7);
    expect((await db.query('select note from notes')).rows).toEqual([{ note: 'kept' }]);
  });

  it('rolls back when the work throws, and rethrows that very error', async () => {
    const db = await open();
    await db.query('create table notes (note text)');
    const failure = new Error('changed my mind');
    const run = db.transaction(async (tx) => {
      await tx.query('insert into notes values ($1)', ['gone']);
      throw failure;
    });
    await expect(run).rejects.toBe(failure);
    expect((await db.query('select note from notes')).rows).toEqual([]);
  });

  it('makes a query from outside wait for an open transaction, then shows it committed', async () => {
    const db = await open();
    await db.query('create table notes (note text)');
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let inserted!: () => void;
    const didInsert = new Promise<void>((resolve) => {
      inserted = resolve;
    });
    const committing = db.transaction(async (tx) => {
      await tx.query('insert into notes values ($1)', ['late']);
      inserted();
      await held;
    });
    await didInsert;
    let seen: unknown;
    const outside = db.query('select count(*) as n from notes').then(({ rows }) => {
      seen = rows[0];
    });
    await sleep(100);
    expect(seen).toBeUndefined();
    release();
    await committing;
    await outside;
    expect(seen).toEqual({ n: 1 });
  });
});

describe('listen and notify across the thread boundary', () => {
  it('delivers a notification to a listener on the calling thread', async () => {
    const db = await open();
    let onPayload!: (payload: string) => void;
    const received = nextValue<string>((resolve) => {
      onPayload = resolve;
    });
    const unlisten = await db.listen('revocations', (payload) => onPayload(payload));
    await db.notify('revocations', 'jti-1');
    expect(await received).toBe('jti-1');
    await unlisten();
  });

  it('delivers a notification sent in a transaction only once it committed', async () => {
    const db = await open();
    const payloads: string[] = [];
    let onPayload!: () => void;
    const received = nextValue<void>((resolve) => {
      onPayload = resolve;
    });
    const unlisten = await db.listen('revocations', (payload) => {
      payloads.push(payload);
      onPayload();
    });
    let seenBeforeCommit: string[] | undefined;
    await db.transaction(async (tx) => {
      await tx.query('select pg_notify($1, $2)', ['revocations', 'jti-2']);
      await sleep(100);
      seenBeforeCommit = [...payloads];
    });
    await received;
    expect(seenBeforeCommit).toEqual([]);
    expect(payloads).toEqual(['jti-2']);
    await unlisten();
  });

  it('tells onBackgroundError of a listener that threw, and keeps delivering', async () => {
    const failures: unknown[] = [];
    const db = await open('memory', (err) => failures.push(err));
    let onPayload!: (payload: string) => void;
    const received = nextValue<string>((resolve) => {
      onPayload = resolve;
    });
    await db.listen('revocations', () => {
      throw new Error('listener bug');
    });
    await db.listen('revocations', (payload) => onPayload(payload));
    await db.notify('revocations', 'jti-3');
    expect(await received).toBe('jti-3');
    await sleep(10);
    expect(failures).toEqual([new Error('listener bug')]);
  });
});

describe('an embedded database directory opened in a thread', () => {
  it('keeps what was written across close and reopen, and releases the lock on close', async () => {
    const dataDir = join(await tempDir(), 'data');
    const first = await openPgliteWorker(dataDir);
    await first.query('create table kept (note text)');
    await first.query('insert into kept values ($1)', ['still here']);
    await first.close();
    await expect(readFile(join(dataDir, 'reins.lock'))).rejects.toMatchObject({ code: 'ENOENT' });
    const second = await open(dataDir);
    expect((await second.query('select note from kept')).rows).toEqual([{ note: 'still here' }]);
  });

  it('refuses a second opener in the same process, whichever opened first, threaded or not', async () => {
    const openers = [openPgliteWorker, openPglite];
    for (const first of openers) {
      const dataDir = await tempDir();
      const held = await first(dataDir);
      try {
        for (const second of openers) {
          const err = await openFailure(() => second(dataDir));
          expect([err.code, err.message.includes('in use by this process')]).toEqual([
            'database_unavailable',
            true,
          ]);
        }
      } finally {
        await held.close();
      }
    }
  });

  it('reports a directory it cannot create as database_unavailable, as in-process PGlite does', async () => {
    const file = join(await tempDir(), 'a-file');
    await writeFile(file, '');
    const err = await openFailure(() => openPgliteWorker(join(file, 'data')));
    const expected = await openFailure(() => openPglite(join(file, 'data')));
    expect(err.code).toBe('database_unavailable');
    expect(err.message).toBe(expected.message);
    expect(err.message).toContain('REINS_DATA_DIR');
  });

  it('reports a directory that holds no database as the thread found it, and releases the lock', async () => {
    const dataDir = await tempDir();
    await writeFile(join(dataDir, 'pglite'), 'not a database');
    const err = await openFailure(() => openPgliteWorker(dataDir));
    expect(err).toBeInstanceOf(StoreError);
    expect(err.message).toContain('cannot open the embedded database in');
    await expect(readFile(join(dataDir, 'reins.lock'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('a thread that stops', () => {
  it('fails the queries it held and every later one with database_unavailable, and says so', async () => {
    const failures: unknown[] = [];
    const dataDir = await tempDir();
    const db = await open(dataDir, (err) => failures.push(err));
    const held = db.query('select pg_sleep(5)');
    await sleep(50);
    await engineThreadOf(db)?.terminate();
    const err = await rejection(held);
    expect(err).toBeInstanceOf(StoreError);
    expect(err).toMatchObject({ code: 'database_unavailable' });
    expect((err as Error).message).toMatch(/embedded database thread stopped \(it exited with code 1\)/);
    await expect(db.query('select 1')).rejects.toMatchObject({ code: 'database_unavailable' });
    await expect(db.transaction(async () => 1)).rejects.toMatchObject({ code: 'database_unavailable' });
    expect(failures).toEqual([err]);
    // The engine went with the thread: the directory can be opened again.
    await db.close();
    const reopened = await open(dataDir);
    expect((await reopened.query('select 1 as n')).rows).toEqual([{ n: 1 }]);
  });

  it('lets a transaction open when close() is called finish, as in-process PGlite does, then closes', async () => {
    for (const opener of [openPglite, openPgliteWorker]) {
      const db = await opener('memory');
      await db.query('create table finished (x int)');
      let midway!: () => void;
      const reached = new Promise<void>((resolve) => {
        midway = resolve;
      });
      const work = db.transaction(async (tx) => {
        await tx.query('insert into finished values (1)');
        midway();
        await sleep(100);
        await tx.query('insert into finished values (2)');
        return (await tx.query<{ n: number }>('select count(*)::int as n from finished')).rows[0]?.n;
      });
      await reached;
      // Both settle: the transaction commits (its result arrives), and close() resolves after it.
      expect(await Promise.all([work, db.close()])).toEqual([2, undefined]);
    }
  });

  it('is closed once and for all: close() twice is fine, and queries after it are refused', async () => {
    const db = await openPgliteWorker('memory');
    await Promise.all([db.close(), db.close()]);
    await db.close();
    await expect(db.query('select 1')).rejects.toThrow('the embedded database is closed');
  });
});

describe('the engine’s thread', () => {
  it('is not the calling thread: timers keep firing during a slow query', async () => {
    const db = await open();
    expect(engineThreadOf(db)?.threadId).not.toBe(threadId);
    let ticks = 0;
    const timer = setInterval(() => {
      ticks++;
    }, 10);
    try {
      await db.query('select pg_sleep(0.5)');
    } finally {
      clearInterval(timer);
    }
    // Forty-odd ticks fit in half a second; in-process PGlite lets none through. A low bar, for
    // a loaded machine.
    expect(ticks).toBeGreaterThanOrEqual(10);
  });

  // A child process of its own: whether a process exits cannot be seen from inside it.
  it('does not keep a process alive once its work is done, even left open', () => {
    const module = fileURLToPath(new URL('../../src/store/pglite-worker.ts', import.meta.url));
    const script = `
      const { openPgliteWorker } = await import(${JSON.stringify(module)});
      const left = await openPgliteWorker('memory');
      console.log(JSON.stringify((await left.query('select 1 as n')).rows));
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 50_000,
    });
    expect(child.stderr).toBe('');
    expect(child.signal).toBeNull();
    expect([child.status, child.stdout.trim()]).toEqual([0, '[{"n":1}]']);
  }, 60_000);
});
