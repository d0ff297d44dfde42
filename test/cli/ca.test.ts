// `reins ca export`, `reins ca rotate` and `reins ca list` as an operator runs them: a real process
// on an embedded database directory, its output and its exit code; and `ca export` reading a
// running `reins serve` (GET /ca.pem) while that server holds the embedded database.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { splitBundle } from '../gateway/ca/support.ts';
import { within } from '../gateway/support.ts';
import { runReins } from '../support/run-reins.ts';

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'reins-ca-'));
  dirs.push(dir);
  return dir;
}

// Neither the environment of the machine running the tests nor a developer's PostgreSQL.
const ENV = { DATABASE_URL: undefined, REINS_SECRET_KEY: undefined, REINS_DATA_DIR: undefined };
const ID = '[0-9a-f]{16}';
const TIME = '\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z';

describe('reins ca', () => {
  it('rotates, exports the bundle newest first, and lists the CAs without private material', async () => {
    const dir = await tempDir();
    const data = join(dir, 'data');
    const first = await runReins(['ca', 'rotate', '--data-dir', data], ENV);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(
      new RegExp(`^active: ${ID} \\(signs new leaf certificates; expires ${TIME}\\)\\nreplaced: none `),
    );
    expect(first.stderr).toBe(
      'reins: warning: REINS_SECRET_KEY is not set: the new CA private key is stored unencrypted\n',
    );
    const firstId = /^active: (\S+)/.exec(first.stdout)?.[1];

    const second = await runReins(['ca', 'rotate', '--data-dir', data, '--overlap-days', '7'], {
      ...ENV,
      REINS_SECRET_KEY: 's3cret',
    });
    expect(second.code).toBe(0);
    expect(second.stderr).toBe('');
    expect(second.stdout).toMatch(
      new RegExp(
        `^active: ${ID} .*\\nreplaced: ${firstId} \\(private key erased; in the bundle until ${TIME}\\)\\n`,
      ),
    );
    expect(second.stdout).toContain('reins ca export');
    const secondId = /^active: (\S+)/.exec(second.stdout)?.[1];

    const exported = await runReins(['ca', 'export', '--data-dir', data], ENV);
    expect(exported).toMatchObject({ code: 0, stderr: '' });
    const certs = splitBundle(exported.stdout);
    expect(certs.map((c) => c.subject)).toEqual([
      `O=reins\nCN=reins interception CA ${secondId}`,
      `O=reins\nCN=reins interception CA ${firstId}`,
    ]);
    expect(certs.every((c) => c.ca)).toBe(true);
    expect(exported.stdout).not.toContain('PRIVATE KEY');

    const out = join(dir, 'reins-ca.pem');
    const written = await runReins(['ca', 'export', '--data-dir', data, '--out', out], ENV);
    expect(written.code).toBe(0);
    expect(written.stdout).toBe(
      `wrote 2 CA certificates to ${out}: ${secondId} (active), ${firstId} (trusted)\n`,
    );
    expect(await readFile(out, 'utf8')).toBe(exported.stdout);
    expect((await stat(out)).mode & 0o777).toBe(0o644);

    const list = await runReins(['ca', 'list', '--data-dir', data], ENV);
    expect(list.code).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(
      /^ID\s+STATE\s+CREATED\s+NOT_AFTER\s+TRUSTED_UNTIL\s+ENCRYPTION\s+SHA256_FINGERPRINT$/,
    );
    const rows = lines.slice(1).map((l) => l.split(/\s+/));
    expect(rows.map((r) => [r[0], r[1], r[5]])).toEqual([
      [secondId, 'active', 'aes-256-gcm+scrypt:v1'],
      [firstId, 'trusted', 'erased'],
    ]);
    expect(rows.map((r) => r[6])).toEqual(certs.map((c) => c.fingerprint256));
    expect(list.stdout).not.toContain('PRIVATE KEY');
    expect(list.stdout).not.toContain('BEGIN');
  }, 180_000);

  it('refuses in one line, exit 1, to rotate an encrypted CA without the right secret', async () => {
    const data = join(await tempDir(), 'data');
    expect((await runReins(['ca', 'rotate', '--data-dir', data, '--secret-key', 's3cret'], ENV)).code).toBe(
      0,
    );
    const missing = await runReins(['ca', 'rotate', '--data-dir', data], ENV);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(
      new RegExp(`^reins: interception CA ${ID} is encrypted .* REINS_SECRET_KEY is not set: [^\\n]*\\n$`),
    );
    const wrong = await runReins(['ca', 'rotate', '--data-dir', data], { ...ENV, REINS_SECRET_KEY: 'other' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(
      new RegExp(`^reins: REINS_SECRET_KEY is not the secret interception CA ${ID}`),
    );
    expect(wrong.stderr).not.toContain('other');
    expect(wrong.stderr.split('\n')).toHaveLength(2);
  }, 180_000);

  it('says in one line, exit 3, that there is no CA to export yet', async () => {
    const data = join(await tempDir(), 'data');
    const run = await runReins(['ca', 'export', '--data-dir', data], ENV);
    expect(run).toMatchObject({ code: 3, stdout: '' });
    expect(run.stderr).toBe(
      'reins: no interception CA yet: the gateway creates one at first start, or run `reins ca rotate`\n',
    );
    const list = await runReins(['ca', 'list', '--data-dir', data], ENV);
    expect(list).toMatchObject({ code: 0, stderr: '' });
    expect(list.stdout).toContain('no interception CA yet');
  }, 180_000);

  it('refuses an overlap that is not a whole number of days, exit 2', async () => {
    const run = await runReins(['ca', 'rotate', '--overlap-days', '1.5'], ENV);
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toBe('reins: --overlap-days "1.5": give a whole number of days, 0 or more\n');
  }, 60_000);

  it('explains how agents trust the CA, rotation and the secret in --help', async () => {
    const run = await runReins(['ca', 'rotate', '--help']);
    expect(run.code).toBe(0);
    for (const text of [
      'NODE_EXTRA_CA_CERTS',
      'SSL_CERT_FILE',
      'REQUESTS_CA_BUNDLE',
      '--cacert',
      'REINS_SECRET_KEY',
      '--overlap-days',
      '--data-dir',
      'DATABASE_URL',
    ]) {
      expect(run.stdout).toContain(text);
    }
    const ca = await runReins(['ca', '--help']);
    for (const command of ['export', 'rotate', 'list']) expect(ca.stdout).toContain(command);
    expect((await runReins(['--help'])).stdout).toMatch(/\bca\b.*interception CA/);
  }, 60_000);

  it('reads the bundle from a running server: with --issuer, and on its own while `reins serve` holds the embedded database', async () => {
    const dir = await tempDir();
    const data = join(dir, 'data');
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const server = serve(data, port);
    const served = await within(150_000, async () => {
      const response = await fetch(`${issuer}/ca.pem`).catch(() => undefined);
      return response?.status === 200 ? response.text() : undefined;
    });
    expect(splitBundle(served)).toHaveLength(1);
    const id = /CN=reins interception CA (\S+)/.exec(splitBundle(served)[0]?.subject ?? '')?.[1];

    const [viaIssuer, onItsOwn, written] = await Promise.all([
      runReins(['ca', 'export', '--issuer', issuer], ENV),
      // No --issuer: the database is held, so it asks REINS_ISSUER's server and says so.
      runReins(['ca', 'export', '--data-dir', data], { ...ENV, REINS_ISSUER: issuer }),
      runReins(['ca', 'export', '--issuer', issuer, '--out', join(dir, 'ca.pem')], ENV),
    ]);
    expect(viaIssuer).toMatchObject({ code: 0, stdout: served, stderr: '' });
    expect(onItsOwn).toMatchObject({ code: 0, stdout: served });
    expect(onItsOwn.stderr).toMatch(
      new RegExp(
        `^reins: the embedded database at \\S+ is in use by process ${server.pid}: read the CA from ${issuer}/ca\\.pem instead\\n$`,
      ),
    );
    expect(written).toMatchObject({
      code: 0,
      stdout: `wrote 1 CA certificate to ${join(dir, 'ca.pem')} (from ${issuer}/ca.pem): ${id}\n`,
    });
    expect(await readFile(join(dir, 'ca.pem'), 'utf8')).toBe(served);

    // Once the server has stopped, the database itself gives the same bundle.
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('close', resolve));
    const direct = await runReins(['ca', 'export', '--data-dir', data], ENV);
    expect(direct).toMatchObject({ code: 0, stdout: served, stderr: '' });
  }, 300_000);

  it('says in one line, exit 3, when the server cannot be reached', async () => {
    const port = await freePort();
    const run = await runReins(['ca', 'export', '--issuer', `http://127.0.0.1:${port}`], ENV);
    expect(run).toMatchObject({
      code: 3,
      stdout: '',
      stderr: `reins: cannot fetch the interception CA: cannot reach http://127.0.0.1:${port}: ECONNREFUSED\n`,
    });
  }, 60_000);

  it('gives both reasons in one line, exit 3, when the database is held and no server answers', async () => {
    const data = join(await tempDir(), 'data');
    await mkdir(data, { recursive: true });
    // Held by a live process (this test runner), as `reins serve` holds it.
    await writeFile(join(data, 'reins.lock'), `${process.pid}\n`);
    const port = await freePort();
    const run = await runReins(['ca', 'export', '--data-dir', data], {
      ...ENV,
      REINS_ISSUER: `http://127.0.0.1:${port}`,
    });
    expect(run).toMatchObject({ code: 3, stdout: '' });
    expect(run.stderr).toMatch(
      new RegExp(
        `^reins: the embedded database at \\S+ is in use by process ${process.pid}: .*; asking the server at ` +
          `http://127\\.0\\.0\\.1:${port} instead failed: cannot fetch the interception CA: cannot reach ` +
          `http://127\\.0\\.0\\.1:${port}: ECONNREFUSED \\(pass --issuer URL\\)\\n$`,
      ),
    );
  }, 60_000);
});

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";

/** `reins serve` on the embedded database in `data`, its issuer on `port`, other ports ephemeral. */
function serve(data: string, port: number): ChildProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', 'serve'],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        ...ENV,
        REINS_DATA_DIR: data,
        REINS_PORT: String(port),
        REINS_ISSUER: `http://127.0.0.1:${port}`,
        REINS_GATEWAY_PORT: '0',
        REINS_ADMIN_PORT: '0',
        REINS_LOG_LEVEL: 'warn',
        ACME_BILLING_AGENT_SECRET: 'ca-test-secret',
      },
      stdio: 'ignore',
    },
  );
  children.push(child);
  return child;
}

/** A loopback port free a moment ago (the issuer must be known before the server starts). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
