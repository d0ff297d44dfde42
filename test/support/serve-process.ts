// `reins serve` and `reins gateway` as child processes, from the sources (no build needed), as an
// operator starts them: what they print is collected, and their URLs are read from the line that
// says they run.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";

export interface ServeProcess {
  readonly process: ChildProcess;
  /** Everything it printed so far, standard output and error together. */
  output(): string;
  /** The token endpoint, the gateway and the admin listener, as printed. */
  readonly tokenUrl: string;
  readonly gatewayUrl: string;
  readonly adminUrl: string;
  /** SIGTERM, and waits for it to exit. */
  stop(): Promise<void>;
}

/** `reins gateway`: only the gateway's URL is printed. */
export interface GatewayProcess {
  readonly process: ChildProcess;
  output(): string;
  readonly gatewayUrl: string;
  stop(): Promise<void>;
}

/** Starts `reins serve` with `env` added to this process's environment; resolves once it runs. */
export async function startServe(env: Record<string, string>): Promise<ServeProcess> {
  const { child, output, match } = await spawnUntil(
    'serve',
    env,
    /reins is running: authorization server (\S+) .*gateway (\S+), admin (\S+)\n/,
  );
  return {
    process: child,
    output,
    tokenUrl: `${match[1]}/token`,
    gatewayUrl: match[2] as string,
    adminUrl: match[3] as string,
    stop: () => stopChild(child),
  };
}

/** Starts `reins gateway` (on the database `env` names) and resolves once it runs. */
export async function startGatewayProcess(env: Record<string, string>): Promise<GatewayProcess> {
  const { child, output, match } = await spawnUntil('gateway', env, /reins gateway is running at (\S+) /);
  return { process: child, output, gatewayUrl: match[1] as string, stop: () => stopChild(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (child.exitCode === null && child.signalCode === null) await once(child, 'close');
}

async function spawnUntil(
  command: string,
  env: Record<string, string>,
  running: RegExp,
): Promise<{ child: ChildProcess; output: () => string; match: RegExpExecArray }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', command],
    {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString('utf8');
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  while (!running.test(output)) {
    const closed = once(child, 'close').then(() => {
      throw new Error(`${command} exited before it was ready:\n${output}`);
    });
    await Promise.race([once(child.stdout as NodeJS.ReadableStream, 'data'), closed]);
  }
  return { child, output: () => output, match: running.exec(output) as RegExpExecArray };
}
