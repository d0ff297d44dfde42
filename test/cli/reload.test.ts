// `reins serve` and its policy directory over time: at start it applies REINS_POLICIES only when
// it differs from what the database holds, and says which in one line; with --watch, a saved
// edit is applied without a signal, and an invalid one is refused while the last good version
// stays.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";

let work = '';
let policies = '';
const children: ChildProcess[] = [];

function policy(path: string): string {
  return [
    'tenant: reload',
    'agents:',
    '  watcher:',
    '    auth: { method: client_secret_basic, secret_env: RELOAD_WATCHER_SECRET }',
    `    egress: ["GET https://api.reload.example/${path}/"]`,
    '',
  ].join('\n');
}

interface Served {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** Resolves once the output holds `text` (the server's log lines and what it printed). */
  readonly seen: (text: string) => Promise<void>;
}

async function serve(args: string[]): Promise<Served> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', 'serve', ...args],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_URL: '',
        REINS_DATA_DIR: join(work, 'data'),
        REINS_POLICIES: policies,
        REINS_PORT: '0',
        REINS_GATEWAY_PORT: '0',
        REINS_ADMIN_PORT: '0',
        REINS_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const closed = once(child, 'close').then(() => {
    throw new Error(`serve exited:\n${output}`);
  });
  const seen = async (text: string) => {
    while (!output.includes(text))
      await Promise.race([once(child.stdout as NodeJS.ReadableStream, 'data'), closed]);
  };
  await seen('stop with Ctrl-C.');
  return { child, output: () => output, seen };
}

async function stop(served: Served): Promise<void> {
  served.child.kill('SIGTERM');
  if (served.child.exitCode === null) await once(served.child, 'close');
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'reins-reload-'));
  policies = join(work, 'policies');
  await mkdir(policies);
  await writeFile(join(policies, 'reload.yaml'), policy('a'));
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
});

describe('serve and its policy directory', () => {
  it('applies the directory at a first start, and says at the next that it was already applied', async () => {
    const first = await serve([]);
    expect(first.output()).toContain(`policies: applied ${policies} as version 1\n`);
    await stop(first);
    const second = await serve([]);
    expect(second.output()).toContain(
      `policies: ${policies} is already applied (version 1); nothing changed\n`,
    );
    await stop(second);
  }, 120_000);

  it('with --watch, applies a saved edit without a signal, and refuses an invalid one, keeping the last good version', async () => {
    const watching = await serve(['--watch']);
    await writeFile(join(policies, 'reload.yaml'), policy('b'));
    await watching.seen('policy reloaded: applied version 2');
    expect(watching.output()).toContain('"cause":"files changed"');
    expect(watching.output()).toContain('+ GET https://api.reload.example/b');

    await writeFile(join(policies, 'reload.yaml'), `${policy('c')}bogus_key: 1\n`);
    await watching.seen('policy reload refused');
    expect(watching.output()).toMatch(/reload\.yaml:\d+:\d+: error: [^"]*bogus_key/);
    expect(watching.output()).toContain('version 2 stays applied');
    await stop(watching);
    // The refused edit changed nothing: a restart on the fixed file applies it as version 3.
    await writeFile(join(policies, 'reload.yaml'), policy('c'));
    const after = await serve([]);
    expect(after.output()).toContain(`differs from the applied version 2; applied it as version 3`);
    await stop(after);
  }, 120_000);
});
