// A real `reins serve` process for the benchmarks that measure the process itself (bench/memory,
// bench/sigkill): started from the sources through tsx (as test/cli/operate.test.ts runs it) or,
// with BENCH_SERVE_CLI=built, as a deployment runs it (bin/reins.js on dist/: npm run build
// first), on PGlite in a data directory or on a fresh PostgreSQL database created for it.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPg } from '../src/store/pg.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
// The same entry as bin/reins.js, on src/ through tsx (as test/cli/operate.test.ts runs serve).
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";
/**
 * How serve is run: from the sources through tsx (every thread loads tsx and compiles the modules
 * it imports, which costs memory a deployment does not pay), or as a deployment runs it.
 * BENCH_MEMORY_CLI is the name bench/memory first had for the switch.
 */
export const cli =
  (process.env.BENCH_SERVE_CLI ?? process.env.BENCH_MEMORY_CLI) === 'built'
    ? { what: 'bin/reins.js on the built dist/', args: ['bin/reins.js', 'serve'] }
    : {
        what: 'from the sources through tsx',
        args: ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', 'serve'],
      };

export interface Serve {
  readonly pid: number;
  readonly tokenUrl: string;
  readonly gateway: { readonly host: string; readonly port: number };
  /** SIGTERM, then SIGKILL after 20 s; resolves once the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL: nothing of the process runs after it; resolves once it is gone. */
  kill(): Promise<void>;
}

const RUNNING = /reins is running: authorization server (\S+) .*gateway (\S+), admin (\S+)\n/;

/** Starts `reins serve` with `env` and waits for the line that says where it listens. */
export async function startServe(env: Record<string, string>): Promise<Serve> {
  const child: ChildProcess = spawn(process.execPath, cli.args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const closed = once(child, 'close');
  // Every exchange is logged: keep reading the pipes (kept: the last 64 KiB, for a failure's
  // message), or serve would block on a full one.
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const stop = async () => {
    if (gone()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await closed;
    clearTimeout(timer);
  };
  const kill = async () => {
    if (gone()) return;
    child.kill('SIGKILL');
    await closed;
  };
  const deadline = Date.now() + 120_000;
  while (!RUNNING.test(output)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`reins serve did not start:\n${output}`);
    }
    await Promise.race([once(child.stdout as NodeJS.ReadableStream, 'data'), closed, sleep(1_000)]);
  }
  const match = RUNNING.exec(output) as RegExpExecArray;
  const gateway = new URL(match[2] as string);
  if (child.pid === undefined) throw new Error('reins serve has no pid');
  return {
    pid: child.pid,
    tokenUrl: `${match[1]}/token`,
    gateway: { host: gateway.hostname, port: Number(gateway.port) },
    stop,
    kill,
  };
}

/** A client_credentials token for `agent` (client_secret_basic with `secret`). */
export async function tokenFor(serve: Serve, agent: string, secret: string): Promise<string> {
  const response = await fetch(serve.tokenUrl, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${agent}:${secret}`).toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'client_credentials' }),
  });
  const body = (await response.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token for ${agent}: ${JSON.stringify(body)}`);
  return body.access_token;
}

/** Where one serve keeps its data: the environment that says so, and what to do once it stopped. */
export interface Prepared {
  readonly env: Record<string, string>;
  cleanup(): Promise<void>;
}

export interface Backend {
  readonly label: string;
  prepare(work: string): Promise<Prepared>;
}

/** The embedded database in `<work>/data`. */
export const pglite: Backend = {
  label: 'PGlite',
  async prepare(work) {
    return { env: { DATABASE_URL: '', REINS_DATA_DIR: join(work, 'data') }, cleanup: async () => undefined };
  },
};

/** A fresh database on the server of `url`, created for one serve and dropped after it. */
export function postgres(url: string): Backend {
  // The database is the URL's path (postgres://user@host/db?…; the host may be empty, so the
  // WHATWG URL parser cannot be used): swapped for the fresh one.
  const swap = /^(postgres(?:ql)?:\/\/[^/?]*\/)([^?]*)/i;
  if (!swap.test(url)) throw new Error('BENCH_DATABASE_URL names no database (postgres://…/DATABASE)');
  return {
    label: 'PostgreSQL',
    async prepare(work) {
      const name = `reins_bench_${randomBytes(6).toString('hex')}`;
      const admin = await openPg(url);
      try {
        await admin.query(`create database ${name}`);
      } finally {
        await admin.close();
      }
      return {
        env: { DATABASE_URL: url.replace(swap, `$1${name}`), REINS_DATA_DIR: join(work, 'data') },
        async cleanup() {
          const again = await openPg(url);
          try {
            await again.query(`drop database if exists ${name} with (force)`);
          } finally {
            await again.close();
          }
        },
      };
    },
  };
}

/** One agent of a bench policy: client_secret_basic, its secret in `secretEnv`, its egress. */
export interface BenchAgent {
  readonly name: string;
  readonly egress: string;
}

/**
 * Writes `<work>/policies/<tenant>.yaml` with `agents`, and returns the environment of a serve
 * that loads it on `prepared`'s data: every port ephemeral on 127.0.0.1, the gateway allowed to
 * reach 127.0.0.1 (the bench's upstreams), no admin token or server to follow, `workers` gateway
 * threads ('' for the default, one per CPU).
 */
export async function serveEnv(
  work: string,
  prepared: Prepared,
  policy: { tenant: string; agents: readonly BenchAgent[]; secretEnv: string; secret: string },
  workers: string,
): Promise<Record<string, string>> {
  const policies = join(work, 'policies');
  await mkdir(policies);
  const agents = policy.agents.flatMap(({ name, egress }) => [
    `  ${name}:`,
    `    auth: { method: client_secret_basic, secret_env: ${policy.secretEnv} }`,
    `    egress: ["${egress}"]`,
  ]);
  await writeFile(
    join(policies, `${policy.tenant}.yaml`),
    [`tenant: ${policy.tenant}`, 'agents:', ...agents, ''].join('\n'),
  );
  return {
    ...prepared.env,
    REINS_POLICIES: policies,
    REINS_HOST: '127.0.0.1',
    REINS_PORT: '0',
    REINS_GATEWAY_PORT: '0',
    REINS_ADMIN_PORT: '0',
    REINS_GATEWAY_ALLOW_PRIVATE: '127.0.0.1/32',
    REINS_GATEWAY_WORKERS: workers,
    REINS_LOG_LEVEL: 'info',
    REINS_ADMIN_TOKEN: '',
    REINS_SERVER: '',
    [policy.secretEnv]: policy.secret,
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
