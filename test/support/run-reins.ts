// Runs the real `reins` command line from the sources in a child process (no build needed):
// what a user or a deployment script would run, exit code and all.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

// The same entry as bin/reins.js, but on src/ through tsx instead of the built dist/.
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";

export interface ReinsRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `reins ...args` from the repository root with `env` added to this process's environment. */
export function runReins(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): Promise<ReinsRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', ...args],
      { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
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
