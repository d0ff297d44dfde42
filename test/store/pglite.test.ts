// PGlite-only behaviour: an embedded database directory keeps its data, and is used by one
// process at a time.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openPglite } from '../../src/store/pglite.ts';
import { openFailure } from '../support/db.ts';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'reins-pglite-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** The pid of a process that has exited. */
function deadPid(): number {
  const { pid } = spawnSync(process.execPath, ['-e', '']);
  return pid ?? 0;
}

describe('an embedded database directory', () => {
  it('keeps what was written across close and reopen, creating the directory first', async () => {
    const dataDir = join(await tempDir(), 'nested', 'data');
    const first = await openPglite(dataDir);
    await first.query('create table kept (note text)');
    await first.query('insert into kept values ($1)', ['still here']);
    await first.close();
    const second = await openPglite(dataDir);
    try {
      expect((await second.query('select note from kept')).rows).toEqual([{ note: 'still here' }]);
    } finally {
      await second.close();
    }
  });

  it('refuses a second open in the same process', async () => {
    const dataDir = await tempDir();
    const db = await openPglite(dataDir);
    try {
      const err = await openFailure(() => openPglite(dataDir));
      expect(err.code).toBe('database_unavailable');
      expect(err.message).toContain('in use by this process');
    } finally {
      await db.close();
    }
  });

  it('refuses a directory another running process holds, naming that process', async () => {
    const dataDir = await tempDir();
    await writeFile(join(dataDir, 'reins.lock'), `${process.ppid}\n`);
    const err = await openFailure(() => openPglite(dataDir));
    expect(err.code).toBe('database_unavailable');
    expect(err.message).toContain(`in use by process ${process.ppid}`);
    expect(err.message).toContain('DATABASE_URL');
  });

  it('takes over a lock left by a process that is gone, and releases it on close', async () => {
    const dataDir = await tempDir();
    const lock = join(dataDir, 'reins.lock');
    await writeFile(lock, `${deadPid()}\n`);
    const db = await openPglite(dataDir);
    expect((await readFile(lock, 'utf8')).trim()).toBe(String(process.pid));
    await db.close();
    await expect(readFile(lock)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reports a directory it cannot create as database_unavailable', async () => {
    const file = join(await tempDir(), 'a-file');
    await writeFile(file, '');
    const err = await openFailure(() => openPglite(join(file, 'data')));
    expect(err.code).toBe('database_unavailable');
    expect(err.message).toContain('REINS_DATA_DIR');
  });
});
