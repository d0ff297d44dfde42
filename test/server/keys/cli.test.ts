// `reins keys rotate` and `reins keys list` as an operator runs them: a real process on an embedded
// database directory, its output and its exit code.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runReins } from '../../support/run-reins.ts';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'reins-keys-'));
  dirs.push(dir);
  return join(dir, 'data');
}

// Neither the environment of the machine running the tests nor a developer's PostgreSQL.
const ENV = { DATABASE_URL: undefined, REINS_SECRET_KEY: undefined, REINS_DATA_DIR: undefined };
const KID = '[A-Za-z0-9_-]{43}';

describe('reins keys', () => {
  it('rotates twice, naming the new key and the retiring one, and lists them without private material', async () => {
    const dir = await dataDir();
    const first = await runReins(['keys', 'rotate', '--data-dir', dir], ENV);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(
      new RegExp(`^active: ${KID}\\nretiring: none \\(no key was active before\\)\\n$`),
    );
    expect(first.stderr).toContain('REINS_SECRET_KEY is not set');
    const firstKid = /^active: (\S+)/.exec(first.stdout)?.[1];

    const second = await runReins(['keys', 'rotate', '--data-dir', dir], {
      ...ENV,
      REINS_SECRET_KEY: 's3cret',
    });
    expect(second.code).toBe(0);
    expect(second.stderr).toBe('');
    expect(second.stdout).toMatch(new RegExp(`^active: ${KID}\\nretiring: ${firstKid} \\(published until`));
    const secondKid = /^active: (\S+)/.exec(second.stdout)?.[1];

    const list = await runReins(['keys', 'list', '--data-dir', dir], ENV);
    expect(list.code).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^KID\s+ALG\s+STATE\s+CREATED\s+ENCRYPTION$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).filter((_, i) => i !== 3))).toEqual([
      [secondKid, 'ES256', 'active', 'aes-256-gcm+scrypt:v1'],
      [firstKid, 'ES256', 'retiring', 'none'],
    ]);
    expect(list.stdout).not.toContain('PRIVATE KEY');
    expect(list.stdout).not.toContain('"d"');
  }, 60_000);

  it('refuses in one line, exit 1, to rotate encrypted keys without the secret', async () => {
    const dir = await dataDir();
    expect((await runReins(['keys', 'rotate', '--data-dir', dir, '--secret-key', 's3cret'], ENV)).code).toBe(
      0,
    );
    const run = await runReins(['keys', 'rotate', '--data-dir', dir], ENV);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^reins: signing key \S+ is encrypted .* REINS_SECRET_KEY is not set: .*\n$/);

    const wrong = await runReins(['keys', 'rotate', '--data-dir', dir], {
      ...ENV,
      REINS_SECRET_KEY: 'other',
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(
      /^reins: REINS_SECRET_KEY is not the secret signing key \S+ was encrypted with/,
    );
    expect(wrong.stderr).not.toContain('other');
  }, 60_000);

  it('says so when there are no keys yet', async () => {
    const run = await runReins(['keys', 'list', '--data-dir', await dataDir()], ENV);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toContain('no signing keys yet');
  }, 60_000);

  it('explains rotation and its options in --help', async () => {
    const run = await runReins(['keys', 'rotate', '--help']);
    expect(run.code).toBe(0);
    for (const text of [
      'REINS_SECRET_KEY',
      '--secret-key',
      '--data-dir',
      'DATABASE_URL',
      'only after\nevery token it signed has expired',
    ]) {
      expect(run.stdout).toContain(text);
    }
    const keys = await runReins(['keys', '--help']);
    expect(keys.stdout).toContain('rotate');
    expect(keys.stdout).toContain('list');
  }, 60_000);
});
