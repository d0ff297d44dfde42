// `reins gateway`: the gateway alone on a database the policies were applied to.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runReins } from '../support/run-reins.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";

describe('reins gateway', () => {
  let data: string;
  beforeAll(async () => {
    data = await mkdtemp(join(tmpdir(), 'reins-gateway-'));
    const applied = await runReins(['policy', 'apply', '--data-dir', data, 'policies/'], {
      DATABASE_URL: '',
    });
    expect(applied.code, applied.stderr).toBe(0);
  }, 60_000);
  afterAll(async () => {
    await rm(data, { recursive: true, force: true });
  });

  it('serves the gateway alone: refuses a request without a token with 407, is ready, stops on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', 'gateway', '--data-dir', data],
      {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: '', REINS_GATEWAY_PORT: '0', REINS_ADMIN_PORT: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const urls = await new Promise<{ gateway: string; admin: string }>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const match = /running at (http:\/\/\S+) \(health: (http:\/\/\S+)\/readyz\)/.exec(output);
        if (match) resolve({ gateway: match[1] as string, admin: match[2] as string });
      });
      exited.then(() => reject(new Error(output)));
    });
    const { port } = new URL(urls.gateway);
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(Number(port), '127.0.0.1', () =>
        socket.write('GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n'),
      );
      let text = '';
      socket.on('data', (d) => {
        text += d.toString();
      });
      socket.on('close', () => resolve(text));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 407/);
    const ready = await fetch(`${urls.admin}/readyz`);
    expect(ready.status).toBe(200);
    child.kill('SIGTERM');
    expect(await exited, output).toBe(0);
  }, 60_000);

  it('refuses a malformed REINS_GATEWAY_ALLOW_PRIVATE in one line, exit 2', async () => {
    const run = await runReins(['gateway', '--data-dir', data], {
      DATABASE_URL: '',
      REINS_GATEWAY_PORT: '0',
      REINS_ADMIN_PORT: '0',
      REINS_GATEWAY_ALLOW_PRIVATE: '10.0.0.1/33',
    });
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('REINS_GATEWAY_ALLOW_PRIVATE');
  }, 60_000);
});
