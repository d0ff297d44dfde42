// The agent's command: started with the prepared environment and the terminal (stdio
// inherited), told of the signals reins receives, and its exit status turned into ours.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

export type ChildOutcome =
  | { readonly kind: 'exited'; readonly code: number }
  | { readonly kind: 'not_started'; readonly code: 126 | 127; readonly reason: string };

/** Always forwarded: nobody else sends them to the command. */
const FORWARDED: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGHUP'];
/**
 * Sent by the terminal to its whole foreground process group, the command included: forwarded
 * only when reins has no terminal, or the command would get each twice (and a coding agent
 * takes a second Ctrl-C as "quit").
 */
const TERMINAL: readonly NodeJS.Signals[] = ['SIGINT', 'SIGQUIT'];

export interface ChildOptions {
  readonly env: Record<string, string>;
  /** Whether reins runs in a terminal; default: stdin or stdout is a TTY. */
  readonly interactive?: boolean;
}

/** Runs `command args…` to its end; resolves with how it ended (never rejects). */
export function runChild(
  command: string,
  args: readonly string[],
  options: ChildOptions,
): Promise<ChildOutcome> {
  const interactive = options.interactive ?? Boolean(process.stdin.isTTY || process.stdout.isTTY);
  const signals = interactive ? FORWARDED : [...FORWARDED, ...TERMINAL];
  return new Promise((resolve) => {
    const child = spawn(command, [...args], { stdio: 'inherit', env: options.env });
    const handlers = new Map<NodeJS.Signals, () => void>();
    // Installed even for the terminal's signals: their default action would end reins and
    // leave the command running without its proxy.
    for (const signal of [...FORWARDED, ...TERMINAL]) {
      const handler = signals.includes(signal) ? () => child.kill(signal) : () => {};
      handlers.set(signal, handler);
      process.on(signal, handler);
    }
    const settle = (outcome: ChildOutcome) => {
      for (const [signal, handler] of handlers) process.off(signal, handler);
      resolve(outcome);
    };
    child.once('error', (err: NodeJS.ErrnoException) => {
      // As a shell says it: 127 not found, 126 found but not runnable.
      const code = err.code === 'ENOENT' ? 127 : 126;
      settle({ kind: 'not_started', code, reason: err.code ?? err.message });
    });
    child.once('exit', (code, signal) => {
      if (code !== null) settle({ kind: 'exited', code });
      else settle({ kind: 'exited', code: 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0)) });
    });
  });
}
