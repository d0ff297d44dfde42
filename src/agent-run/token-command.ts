// --token-command: each token comes from a command the operator names (run by the shell), for
// tokens that something else obtains — a delegated token an app exchanges for a user (RFC 8693),
// a secret manager, a workload identity helper. Its standard output, trimmed, is the token; its
// standard error goes to ours. When the token expires comes from the token itself (`exp`).
import { spawn } from 'node:child_process';
import { AgentRunError } from './errors.ts';
import { jwtExpiry } from './jwt-expiry.ts';
import type { ObtainedToken, ObtainToken } from './token-source.ts';

export interface TokenCommandOptions {
  /** Default 30 s; the command is killed after it. */
  readonly timeoutMs?: number;
  readonly now?: () => number;
}

/** Far above any token; bounds what a runaway command can make us hold. */
const MAX_OUTPUT_BYTES = 64 * 1024;

export function tokenCommand(command: string, options: TokenCommandOptions = {}): ObtainToken {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const now = options.now ?? Date.now;
  return async (): Promise<ObtainedToken> => {
    const output = await runCommand(command, timeoutMs);
    const token = output.trim();
    const expiresAt = jwtExpiry(token);
    if (expiresAt === undefined) {
      throw new AgentRunError(
        'token_command_output',
        'the token command did not print a JWT access token with an exp claim',
      );
    }
    if (expiresAt <= now()) {
      throw new AgentRunError('token_command_output', 'the token command printed an expired token');
    }
    return { token, expiresAt };
  };
}

function runCommand(command: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, { shell: true, stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    let bytes = 0;
    let failure: AgentRunError | undefined;
    // Stops the shell and stops listening: a process the shell started may still hold the
    // pipe open, and waiting for it would wait for as long as it runs.
    const abandon = (why: AgentRunError) => {
      failure ??= why;
      child.kill('SIGKILL');
      child.stdout.destroy();
    };
    const timer = setTimeout(
      () =>
        abandon(
          new AgentRunError('token_command_failed', `the token command was stopped after ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    child.stdout.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_OUTPUT_BYTES) {
        abandon(new AgentRunError('token_command_output', 'the token command printed more than 64 KiB'));
        return;
      }
      chunks.push(chunk);
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new AgentRunError('token_command_failed', `cannot run the token command: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (failure !== undefined) reject(failure);
      else if (code === 0) resolve(Buffer.concat(chunks).toString('utf8'));
      else {
        const how = signal ? `was killed (${signal})` : `exited with ${code}`;
        reject(new AgentRunError('token_command_failed', `the token command ${how}`));
      }
    });
  });
}
