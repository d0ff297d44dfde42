// The agent's command: its exit status becomes reins run's, a command that cannot start is
// reported as a shell would, and the signals reins receives reach it (the terminal's own
// signals only when no terminal already sent them).

import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChild } from '../../src/agent-run/child.ts';

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

describe('runChild', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'reins-child-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('exits with the command’s exit code', async () => {
    expect(await runChild('sh', ['-c', 'exit 0'], { env })).toEqual({ kind: 'exited', code: 0 });
    expect(await runChild('sh', ['-c', 'exit 42'], { env })).toEqual({ kind: 'exited', code: 42 });
  });

  it('exits 128+N when the command dies of signal N', async () => {
    expect(await runChild('sh', ['-c', 'kill -TERM $$'], { env })).toEqual({ kind: 'exited', code: 143 });
    expect(await runChild('sh', ['-c', 'kill -KILL $$'], { env })).toEqual({ kind: 'exited', code: 137 });
  });

  it('says 127 for a command that does not exist and 126 for one that cannot be run', async () => {
    expect(await runChild('reins-no-such-command', [], { env })).toEqual({
      kind: 'not_started',
      code: 127,
      reason: 'ENOENT',
    });
    const file = join(dir, 'not-executable');
    await writeFile(file, '#!/bin/sh\nexit 0\n');
    await chmod(file, 0o644);
    expect(await runChild(file, [], { env })).toEqual({ kind: 'not_started', code: 126, reason: 'EACCES' });
  });

  it('passes the environment it is given, and only that', async () => {
    const out = join(dir, 'env');
    await runChild('sh', ['-c', `env > ${out}`], { env: { ...env, ONLY: 'this' } });
    const lines = (await readFile(out, 'utf8')).trim().split('\n');
    expect(lines).toContain('ONLY=this');
    expect(lines.some((l) => l.startsWith('HOME='))).toBe(false);
  });

  /** Runs a command that records the signals it gets; `send` is called once it is ready. */
  async function signalled(interactive: boolean, send: () => void) {
    const ready = join(dir, `ready-${interactive}-${Date.now()}`);
    const log = join(dir, `log-${interactive}-${Date.now()}`);
    const script = [
      `trap 'echo INT >> ${log}' INT`,
      `trap 'echo HUP >> ${log}' HUP`,
      `trap 'echo TERM >> ${log}; exit 9' TERM`,
      `touch ${ready}`,
      'while :; do sleep 0.02; done',
    ].join('; ');
    const outcome = runChild('sh', ['-c', script], { env, interactive });
    while (!existsSync(ready)) await new Promise((resolve) => setTimeout(resolve, 10));
    send();
    const result = await outcome;
    return { result, log: (await readFile(log, 'utf8')).trim().split('\n') };
  }

  it('passes SIGINT, SIGHUP and SIGTERM on when reins has no terminal', async () => {
    // process.emit calls the listeners runChild installed, as a delivered signal would.
    const { result, log } = await signalled(false, () => {
      process.emit('SIGINT', 'SIGINT');
      process.emit('SIGHUP', 'SIGHUP');
      setTimeout(() => process.emit('SIGTERM', 'SIGTERM'), 100);
    });
    expect(result).toEqual({ kind: 'exited', code: 9 });
    // Signals sent together arrive in the kernel's order, not the sending order.
    expect(log.sort()).toEqual(['HUP', 'INT', 'TERM']);
  });

  it('does not send SIGINT a second time in a terminal (the terminal sent it to the command)', async () => {
    const { result, log } = await signalled(true, () => {
      process.emit('SIGINT', 'SIGINT');
      setTimeout(() => process.emit('SIGTERM', 'SIGTERM'), 100);
    });
    expect(result).toEqual({ kind: 'exited', code: 9 });
    expect(log).toEqual(['TERM']);
  });

  it('removes its signal listeners when the command has ended', async () => {
    const before = process.listenerCount('SIGTERM');
    await runChild('true', [], { env });
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });
});
