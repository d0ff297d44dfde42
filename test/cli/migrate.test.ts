// `reins migrate` as a user runs it: a real process, its output and its exit code.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readMigrations } from '../../src/store/migrate.ts';
import { runReins } from '../support/run-reins.ts';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('reins migrate', () => {
  it('applies the migrations to the embedded database, then says the schema is up to date', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'reins-cli-'));
    dirs.push(dataDir);
    const env = { DATABASE_URL: undefined, REINS_DATA_DIR: join(dataDir, 'from-env') };
    const names = (await readMigrations()).map((file) => file.name);

    const first = await runReins(['migrate', '--data-dir', join(dataDir, 'from-flag')], env);
    expect(first).toEqual({ code: 0, stdout: names.map((name) => `applied ${name}\n`).join(''), stderr: '' });

    const second = await runReins(['migrate', '--data-dir', join(dataDir, 'from-flag')], env);
    expect(second).toEqual({ code: 0, stdout: 'schema is up to date\n', stderr: '' });

    const fromEnv = await runReins(['migrate'], env);
    expect(fromEnv.stdout).toContain(`applied ${names[0]}`);
  }, 60_000);

  it('reports an unreachable database in one line, without the password, and exits 3', async () => {
    const run = await runReins(['migrate'], { DATABASE_URL: 'postgres://reins:s3cret-pw@127.0.0.1:1/reins' });
    expect(run.code).toBe(3);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(
      /^reins: cannot use PostgreSQL at postgres:\/\/reins:\*\*\*@127\.0\.0\.1:1\/reins: .*\n$/,
    );
    expect(run.stderr).not.toContain('s3cret-pw');
  });

  it('explains its options and their environment variables in --help', async () => {
    const run = await runReins(['migrate', '--help']);
    expect(run.code).toBe(0);
    for (const text of ['--database-url', 'DATABASE_URL', '--data-dir', 'REINS_DATA_DIR', './.reins']) {
      expect(run.stdout).toContain(text);
    }
  });
});
