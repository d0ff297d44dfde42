// `reins serve` as a child process, from the sources (no build needed), as an operator starts it:
// what it prints is collected, and its URLs are read from the line that says it runs.
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

/** Starts `reins serve` with `env` added to this process's environment; resolves once it runs. */
export async function startServe(env: Record<string, string>): Promise<ServeProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', 'serve'],
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
  const running = /reins is running: authorization server (\S+) .*gateway (\S+), admin (\S+)\n/;
  while (!running.test(output)) {
    const closed = once(child, 'close').then(() => {
      throw new Error(`serve exited before it was ready:\n${output}`);
    });
    await Promise.race([once(child.stdout as NodeJS.ReadableStream, 'data'), closed]);
  }
  const match = running.exec(output) as RegExpExecArray;
  return {
    process: child,
    output: () => output,
    tokenUrl: `${match[1]}/token`,
    gatewayUrl: match[2] as string,
    adminUrl: match[3] as string,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null && child.signalCode === null) await once(child, 'close');
    },
  };
}
