// The first hour, as a new user lives it: `npm start` on a fresh checkout, then every command it
// prints and every command of README.md's tour, pasted as is into another terminal (one bash
// session, so TOKEN carries over), each giving what the text says it gives. So neither the
// README nor what `serve` prints can rot.
//
// The only liberties taken, all of them about running beside other tests: the server's ports
// and data directory are this test's own (the commands are rewritten to them, as `serve`
// would print them), /tmp/ is a private directory, and `npx reins` runs the sources through
// tsx instead of the built dist/.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";

/** A chunk of commands and the fragments its output must contain (`…` separates them). */
interface Step {
  readonly script: string;
  readonly expect: readonly string[];
}

/** The README's tour: its sh blocks, each cut into chunks of commands and `# expected` lines. */
function tourSteps(readme: string): Step[] {
  const start = readme.indexOf('## A five-minute tour');
  const end = readme.indexOf('\n## ', start + 1);
  const tour = readme.slice(start, end);
  const steps: Step[] = [];
  for (const block of tour.matchAll(/```sh\n([\s\S]*?)```/g)) {
    let script: string[] = [];
    let expected: string[] = [];
    const flush = () => {
      if (script.length > 0) steps.push({ script: script.join('\n'), expect: expected });
      script = [];
      expected = [];
    };
    for (const line of (block[1] ?? '').split('\n')) {
      if (line.startsWith('# ')) {
        expected.push(
          ...line
            .slice(2)
            .split('…')
            .map((s) => s.trim())
            .filter((s) => s !== ''),
        );
      } else if (line.trim() !== '') {
        if (expected.length > 0) flush();
        script.push(line);
      }
    }
    flush();
  }
  // The server is started by the test itself (below), exactly as `npm start` does.
  return steps.filter((step) => step.script !== 'npm ci && npm start');
}

/** What `serve` printed: its commands (continuations joined) and the answer each promises. */
function printedSteps(printed: string): Step[] {
  const steps: Step[] = [];
  const lines = printed.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (!/^ {4}\S/.test(line) || line.trimStart().startsWith('(')) continue;
    let script = line.trim();
    while (script.endsWith('\\')) {
      i++;
      script = `${script}\n${(lines[i] ?? '').trim()}`;
    }
    const promise = /^\s+\(403 egress_denied, reason (\w+)\)/.exec(lines[i + 1] ?? '')?.[1];
    steps.push({ script, expect: promise ? [`"reason":"${promise}"`] : [] });
  }
  return steps;
}

// A command that has not ended by then will not: fail with what it printed, not a test timeout.
const STEP_TIMEOUT_MS = 60_000;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** One interactive bash: chunks run in order, sharing variables, output of each returned. */
class Terminal {
  readonly #bash: ChildProcess;
  #output = '';
  #count = 0;
  constructor(env: Record<string, string>) {
    this.#bash = spawn('bash', ['--norc', '--noprofile'], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#bash.stdout?.on('data', (chunk: Buffer) => {
      this.#output += chunk.toString('utf8');
    });
    this.#bash.stderr?.on('data', (chunk: Buffer) => {
      this.#output += chunk.toString('utf8');
    });
    this.#bash.stdin?.write(
      'exec 2>&1\nreins() { node --import tsx --input-type=module --eval "$REINS_ENTRY" -- "$@"; }\n',
    );
  }

  async run(script: string): Promise<string> {
    const marker = `__tour_step_${++this.#count}__`;
    const from = this.#output.length;
    this.#bash.stdin?.write(`${script}\necho; echo ${marker}\n`);
    const deadline = performance.now() + STEP_TIMEOUT_MS;
    while (!this.#output.includes(`${marker}\n`, from)) {
      const left = deadline - performance.now();
      if (left <= 0)
        throw new Error(`no end after ${STEP_TIMEOUT_MS} ms:\n${script}\n---\n${this.#output.slice(from)}`);
      await Promise.race([
        once(this.#bash.stdout as NodeJS.ReadableStream, 'data'),
        new Promise((resolve) => setTimeout(resolve, left).unref()),
      ]);
    }
    return this.#output.slice(from, this.#output.indexOf(`${marker}\n`, from));
  }

  close(): void {
    this.#bash.kill('SIGKILL');
  }
}

let work = '';
let server: ChildProcess;
let printed = '';
let terminal: Terminal;
let rewrite: (script: string) => string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'reins-tour-'));
  const [port, gatewayPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const issuer = `http://127.0.0.1:${port}`;
  const data = join(work, 'data');
  const env = {
    DATABASE_URL: '',
    REINS_DATA_DIR: data,
    REINS_PORT: String(port),
    REINS_ISSUER: issuer,
    REINS_GATEWAY_PORT: String(gatewayPort),
    REINS_GATEWAY_URL: `http://127.0.0.1:${gatewayPort}`,
    REINS_ADMIN_PORT: String(adminPort),
    REINS_POLICIES: './policies',
    REINS_ADMIN_TOKEN: '',
    REINS_SERVER: '',
    REINS_LOG_LEVEL: 'warn',
    REINS_ENTRY: ENTRY,
    // The Node that runs this suite (>= 22.12) is the one the commands find first.
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
  };
  server = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', 'serve'],
    {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  server.stdout?.on('data', (chunk: Buffer) => {
    printed += chunk.toString('utf8');
  });
  server.stderr?.on('data', (chunk: Buffer) => {
    printed += chunk.toString('utf8');
  });
  const closed = once(server, 'close').then(() => {
    throw new Error(`serve exited before it was ready:\n${printed}`);
  });
  while (!printed.includes('stop with Ctrl-C.')) {
    await Promise.race([once(server.stdout as NodeJS.ReadableStream, 'data'), closed]);
  }
  terminal = new Terminal(env);
  rewrite = (script) =>
    script
      .replaceAll('127.0.0.1:3000', `127.0.0.1:${port}`)
      .replaceAll('127.0.0.1:3128', `127.0.0.1:${gatewayPort}`)
      .replaceAll('127.0.0.1:9464', `127.0.0.1:${adminPort}`)
      .replaceAll('/tmp/', `${work}/`)
      .replaceAll('npx reins', 'reins');
}, 120_000);

afterAll(async () => {
  terminal?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await once(server, 'close');
  }
  await rm(work, { recursive: true, force: true });
});

function expectFragments(output: string, step: Step): void {
  for (const fragment of step.expect) {
    expect(output, `${step.script}\n--- printed:\n${output}`).toContain(rewrite(fragment));
  }
}

describe('the first hour', () => {
  it('serve prints a token command, a refusal with its reason, an inspected refusal under reins run, and how to watch the audit', async () => {
    const steps = printedSteps(printed.slice(printed.indexOf('reins is running')));
    expect(steps.map((s) => s.script.split(' ')[0])).toEqual([
      'TOKEN=$(curl',
      'curl',
      "REINS_EXAMPLE_SECRET='reins-example-billing-secret'",
    ]);
    const [token, refusal, inspected] = steps as [Step, Step, Step];
    expect(await terminal.run(token.script)).toMatch(/^eyJ[\w-]+\.[\w-]+\.[\w-]+\n/);
    expectFragments(await terminal.run(refusal.script), refusal);
    expect(refusal.expect).toEqual(['"reason":"no_matching_rule"']);
    expectFragments(await terminal.run(inspected.script), inspected);
    expect(inspected.expect).toEqual(['"reason":"method_not_allowed"']);
    // The printed audit command follows until Ctrl-C: stopped here after a few seconds (SIGTERM
    // ends it as Ctrl-C does), its first lines show the refusals above.
    const watch = /watch the decisions: +(.+)\n/.exec(printed)?.[1] ?? '';
    expect(watch).toMatch(/^npx reins audit tail --follow/);
    const audit = await terminal.run(
      `timeout --foreground 8 ${watch.replace('npx reins', 'node --import tsx --input-type=module --eval "$REINS_ENTRY" --')}`,
    );
    expect(audit).toMatch(/denied .*method_not_allowed .*acme .*billing-agent/);
    for (const line of printed.split('\n').filter((l) => /^ {2}(health|metrics):/.test(l))) {
      expect(await terminal.run(line.replace(/^ {2}\w+: +/, ''))).not.toBe('');
    }
  }, 180_000);

  it("every command of README.md's tour gives what the README says", async () => {
    const steps = tourSteps(readFileSync(join(ROOT, 'README.md'), 'utf8'));
    expect(steps.length).toBeGreaterThan(15);
    for (const step of steps) expectFragments(await terminal.run(rewrite(step.script)), step);
  }, 240_000);
});
