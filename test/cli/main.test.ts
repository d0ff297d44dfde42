// The guard rails of the `reins` command line, as a user meets them: the Node.js version check
// in bin/reins.js (run with an old Node when this machine has one), usage errors at every level
// of the command tree (exit 2, one `reins: …` line, commander's did-you-mean kept), --version.
//
// The bin/reins.js tests that get past the version check run dist/: `npm run build` first.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isSupported, MINIMUM, nodeVersionProblem } from '../../bin/node-version.js';
import { type ReinsRun, runReins } from '../support/run-reins.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'reins.js');
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  engines: { node: string };
};

/** Runs `node script ...args` with the given Node binary. */
function runNode(node: string, script: string, args: readonly string[]): Promise<ReinsRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(node, [script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A Node.js older than reins needs, installed on this machine (the distribution's), if any. */
function olderNode(): { path: string; version: string } | undefined {
  for (const path of ['/usr/bin/node', '/bin/node', '/usr/local/bin/node']) {
    try {
      const version = execFileSync(path, ['--version'], { encoding: 'utf8' }).trim().replace(/^v/, '');
      if (!isSupported(version)) return { path, version };
    } catch {
      // not installed there
    }
  }
  return undefined;
}

describe('the Node.js version check', () => {
  it('needs the version package.json declares in engines', () => {
    expect(PACKAGE.engines.node).toBe(`>=${MINIMUM.replace(/\.0$/, '')}`);
  });

  it.each([
    ['20.20.2', false],
    ['v18.19.0', false],
    ['22.11.0', false],
    ['22.12.0', true],
    ['22.20.1', true],
    ['23.0.0', true],
    ['24.21.0', true],
    ['v100.0.0', true],
    ['not a version', false],
  ])('accepts Node.js %s: %s', (version, accepted) => {
    expect(isSupported(version)).toBe(accepted);
    expect(nodeVersionProblem(version) === null).toBe(accepted);
  });

  it('says in one line which Node.js is needed, which one runs and how to get it', () => {
    const problem = nodeVersionProblem('20.20.2');
    expect(problem).toBe(
      'needs Node.js 22.12.0 or newer, but this is Node.js 20.20.2; install Node.js 22 (22.12 or later) ' +
        'or 24 LTS from https://nodejs.org/ or with your version manager (e.g. nvm install 24)',
    );
  });

  it('stops bin/reins.js --help on an older Node with that line and exit 3, before loading anything', async () => {
    const old = olderNode();
    // This machine has no older Node: the line bin/reins.js prints is the function's, shown above.
    if (old === undefined) {
      expect(nodeVersionProblem('20.20.2')).toContain('but this is Node.js 20.20.2');
      return;
    }
    const run = await runNode(old.path, BIN, ['--help']);
    expect(run.stderr).toBe(
      `reins: needs Node.js ${MINIMUM} or newer, but this is Node.js ${old.version}; install Node.js 22 ` +
        '(22.12 or later) or 24 LTS from https://nodejs.org/ or with your version manager (e.g. nvm install 24)\n',
    );
    expect(run.stdout).toBe('');
    expect(run.code).toBe(3);
    // The same for a command that would touch a database: nothing ran before the check.
    const dataDir = join(tmpdir(), `reins-never-created-${process.pid}`);
    const serve = await runNode(old.path, BIN, ['serve', '--data-dir', dataDir]);
    expect(serve.code).toBe(3);
    expect(existsSync(dataDir)).toBe(false);
    expect(serve.stderr.split('\n').filter((line) => line !== '')).toHaveLength(1);
  }, 60_000);

  it('lets this Node through: bin/reins.js --version prints the version from package.json', async () => {
    const run = await runNode(process.execPath, BIN, ['--version']);
    expect(run).toEqual({ code: 0, stdout: `${PACKAGE.version}\n`, stderr: '' });
  });

  it('says to build when dist/ is missing, instead of a stack trace', async () => {
    const copy = await mkdtemp(join(tmpdir(), 'reins-bin-'));
    try {
      await mkdir(join(copy, 'bin'));
      await writeFile(join(copy, 'package.json'), '{ "type": "module" }\n');
      for (const file of ['reins.js', 'node-version.js']) {
        await copyFile(join(ROOT, 'bin', file), join(copy, 'bin', file));
      }
      const run = await runNode(process.execPath, join(copy, 'bin', 'reins.js'), ['--help']);
      expect(run.code).toBe(3);
      expect(run.stderr).toMatch(
        /^reins: cannot load the compiled command line \(dist\/cli\/main\.js\): .+; run npm run build\n$/,
      );
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  });
});

describe('usage errors', () => {
  const cases: [string, string[], string][] = [
    [
      'an unknown subcommand two levels down',
      ['policy', 'valdate', 'policies/'],
      "reins: unknown command 'valdate' (Did you mean validate?); see 'reins policy --help'\n",
    ],
    [
      'an unknown option of serve',
      ['serve', '--prot', '1'],
      "reins: unknown option '--prot' (Did you mean --port?); see 'reins serve --help'\n",
    ],
    [
      'an unknown option of audit tail',
      ['audit', 'tail', '--bogus'],
      "reins: unknown option '--bogus'; see 'reins audit tail --help'\n",
    ],
    ['an unknown top-level option', ['--bogus'], "reins: unknown option '--bogus'; see 'reins --help'\n"],
    [
      'an unknown top-level command',
      ['polcy', 'validate'],
      "reins: unknown command 'polcy' (Did you mean policy?); see 'reins --help'\n",
    ],
    [
      'a missing argument',
      ['policy', 'validate'],
      "reins: missing required argument 'DIR'; see 'reins policy validate --help'\n",
    ],
  ];
  it.each(cases)('%s: exit 2 and one reins: line on stderr', async (_name, args, line) => {
    const run = await runReins(args);
    expect(run).toEqual({ code: 2, stdout: '', stderr: line });
  });

  it('a command group without its subcommand prints its help on stderr and exits 2', async () => {
    const run = await runReins(['policy']);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('Usage: reins policy');
  });

  it('help asked for is not an error: exit 0 on stdout', async () => {
    for (const args of [['--help'], ['policy', '--help'], ['help', 'audit']]) {
      const run = await runReins(args);
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('Usage: reins');
      expect(run.stderr).toBe('');
    }
  }, 60_000); // three CLI processes
});

describe('reins --version', () => {
  it.each([['--version'], ['-V']])('%s prints the version from package.json and exits 0', async (flag) => {
    expect(await runReins([flag])).toEqual({ code: 0, stdout: `${PACKAGE.version}\n`, stderr: '' });
  });
});
