// A gateway thread that dies (src/runtime/gateway-workers.ts): it is replaced on the same port,
// again and again until a replacement listens; while no thread serves, /readyz says so; and a
// second reins cannot quietly share the gateway port with the first (SO_REUSEPORT would let it).
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker, WorkerOptions } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Running } from '../../src/runtime/start.ts';
import { type AgentPolicy, agentToken, getThrough, startWithAgent } from '../support/runtime.ts';

// Every gateway thread the runtime starts, so that the test can end one as a crash would; and a
// switch that makes new ones fail to load (as a replacement failing for EMFILE or ENOMEM would).
const started: Worker[] = [];
const control = { failNew: false };
vi.mock('node:worker_threads', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:worker_threads')>();
  class Recorded extends real.Worker {
    constructor(url: URL | string, options?: WorkerOptions) {
      const gateway = options?.name?.startsWith('gateway-') === true;
      super(
        gateway && control.failNew ? new URL('./no-such-gateway-thread.ts', import.meta.url) : url,
        options,
      );
      if (gateway) started.push(this);
    }
  }
  return { ...real, Worker: Recorded, default: { ...real, Worker: Recorded } };
});

let upstream: http.Server;
let work = '';
let running: Running;
let policy: AgentPolicy;

beforeAll(async () => {
  upstream = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((done) => upstream.listen(0, '127.0.0.1', done));
  work = await mkdtemp(join(tmpdir(), 'reins-thread-loss-'));
  policy = {
    tenant: 'loss',
    agent: 'survivor',
    secret: 'thread-loss-secret-0123456789',
    upstreamPort: (upstream.address() as AddressInfo).port,
  };
  running = await startWithAgent(work, policy, { REINS_GATEWAY_WORKERS: '2' });
}, 120_000);

afterAll(async () => {
  control.failNew = false;
  await running?.stop();
  upstream?.close();
  await rm(work, { recursive: true, force: true });
});

async function until(condition: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error('condition not met in time');
    await new Promise((done) => setTimeout(done, 50));
  }
}

const readyz = async () => (await fetch(`${running.admin.url}/readyz`)).status;

describe('a gateway thread that dies', () => {
  it('is replaced on the same port, which keeps serving', async () => {
    const bearer = await agentToken(running, policy);
    expect(running.gateway.threads).toBe(2);
    await started[0]?.terminate();
    await until(() => running.gateway.threads === 2 && started.length === 3, 10_000);
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => getThrough(running.gateway.url, policy.upstreamPort, '/', bearer)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
  }, 30_000);

  it('is tried again until a replacement listens; meanwhile /readyz fails when no thread serves', async () => {
    control.failNew = true;
    const live = started.filter((_, i) => i > 0);
    await Promise.all(live.map((worker) => worker.terminate()));
    await until(() => running.gateway.threads === 0, 5_000);
    expect(await readyz()).toBe(503);
    // The first replacements fail to load; once they can, one listens and the gateway is ready.
    const failedBefore = started.length;
    await until(() => started.length > failedBefore, 5_000);
    control.failNew = false;
    await until(() => running.gateway.threads > 0, 20_000);
    await until(async () => (await readyz()) === 200, 5_000);
  }, 40_000);
});

describe('a second reins on the same gateway port', () => {
  it('is refused as a port in use, not let to share the port', async () => {
    const other = await mkdtemp(join(tmpdir(), 'reins-second-'));
    try {
      await expect(
        startWithAgent(other, policy, {
          REINS_GATEWAY_WORKERS: '2',
          REINS_GATEWAY_PORT: new URL(running.gateway.url).port,
        }),
      ).rejects.toMatchObject({ code: 'port_in_use' });
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  }, 60_000);
});
