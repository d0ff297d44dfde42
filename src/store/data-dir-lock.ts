// One process at a time on an embedded database directory. PGlite has no locking of its own
// across processes, and two PostgreSQL instances writing one data directory corrupt it silently
// (a `reins migrate` run while `reins serve` is up, two servers started by mistake). So the
// directory carries a lock file naming the owning process; a lock whose process is gone is stale
// and taken over.
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreError } from './db.ts';

const LOCK_FILE = 'reins.lock';
// Directories this process holds: a second open in the same process is refused too.
const held = new Set<string>();

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function ownerOf(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function inUse(dir: string, detail: string): StoreError {
  return new StoreError(
    'database_unavailable',
    `the embedded database at ${dir} is in use ${detail}: stop that first, or use PostgreSQL ` +
      '(DATABASE_URL) to run several reins processes on one database',
  );
}

/** Takes the lock on `dir` (an existing directory); resolves to the function that releases it. */
export async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  if (held.has(dir)) throw inUse(dir, 'by this process');
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
    }
    // An empty file may be a lock being written this very moment: look again before calling it stale.
    const owner =
      (await ownerOf(file)) ??
      (await new Promise((resolve) => setTimeout(resolve, 100)).then(() => ownerOf(file)));
    // A lock naming this very process is left over from an earlier run that had the same pid
    // (a container restarted): `held` says this process does not hold it now.
    if (owner !== undefined && owner !== process.pid && isRunning(owner)) {
      throw inUse(dir, `by process ${owner}`);
    }
    await unlink(file).catch(() => undefined);
  }
  held.add(dir);
  return async () => {
    held.delete(dir);
    await unlink(file).catch(() => undefined);
  };
}
