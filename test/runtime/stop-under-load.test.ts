// Stopping a running reins under load (SIGTERM runs the same stop()): with the gateway on two
// threads, every request the upstream received has exactly one audit row, on both databases —
// the threads finish or cut what is in flight, hand their last exchanges to the main thread, and
// only then is the audit writer drained.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.ts';
import { openPglite } from '../../src/store/pglite.ts';
import { testDatabaseUrl } from '../support/db.ts';
import { type AgentPolicy, agentToken, getThrough, startWithAgent } from '../support/runtime.ts';

const SECRET = 'stop-under-load-secret-0123456789';
const CLIENTS = 16;

interface Backend {
  readonly name: string;
  /** DATABASE_URL and REINS_DATA_DIR for the process under test. */
  setting(work: string): Promise<{ DATABASE_URL: string; REINS_DATA_DIR: string }>;
  /** The agent's audit rows (path and reason), read after the process stopped. */
  rows(work: string): Promise<AuditedRow[]>;
  cleanup(): Promise<void>;
}

interface AuditedRow {
  readonly path: string;
  readonly reason: string | null;
}

const AUDITED = `select path, reason from audit_events where agent = 'loaded' order by id`;

function pgliteBackend(): Backend {
  return {
    name: 'pglite',
    setting: async (work) => ({ DATABASE_URL: '', REINS_DATA_DIR: join(work, 'data') }),
    async rows(work) {
      // The stopped process released the directory: open it again and read what it wrote.
      const db: Db = await openPglite(join(work, 'data'));
      try {
        return (await db.query<AuditedRow>(AUDITED)).rows;
      } finally {
        await db.close();
      }
    },
    cleanup: async () => undefined,
  };
}

function pgBackend(url: string): Backend {
  const database = `reins_stop_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  let connected = false;
  const where = () => admin as unknown as { host: string; port: number; user: string };
  return {
    name: 'pg',
    async setting(work) {
      await admin.connect();
      connected = true;
      await admin.query(`create database ${database}`);
      const { host, port, user } = where();
      // As the tests' own URL reaches the server: its socket directory, or host and port.
      const where_ = host.startsWith('/')
        ? `/${database}?host=${host}&port=${port}`
        : `${host}:${port}/${database}`;
      return {
        DATABASE_URL: `postgres://${user}@${where_}`,
        REINS_DATA_DIR: join(work, 'data'),
      };
    },
    async rows() {
      const { host, port, user } = where();
      const check = new pg.Client({ host, port, user, database });
      await check.connect();
      try {
        return (await check.query<AuditedRow>(AUDITED)).rows;
      } finally {
        await check.end();
      }
    },
    async cleanup() {
      if (!connected) return;
      await admin.query(`drop database if exists ${database} with (force)`);
      await admin.end();
    },
  };
}

const url = testDatabaseUrl();
const backends: Backend[] = [pgliteBackend(), ...(url ? [pgBackend(url)] : [])];

describe.each(backends)('stopping reins on $name under load, gateway on two threads', (backend) => {
  let upstream: http.Server;
  let upstreamPort = 0;
  const received: string[] = [];
  let work = '';

  beforeAll(async () => {
    upstream = http.createServer((req, res) => {
      received.push(req.url ?? '');
      // A little work upstream, so that requests are in flight when the stop comes.
      setTimeout(() => res.end('ok'), 2);
    });
    await new Promise<void>((done) => upstream.listen(0, '127.0.0.1', done));
    upstreamPort = (upstream.address() as AddressInfo).port;
    work = await mkdtemp(join(tmpdir(), 'reins-stop-'));
  });

  afterAll(async () => {
    upstream?.close();
    await backend.cleanup();
    await rm(work, { recursive: true, force: true });
  });

  it('leaves exactly one row for every request the upstream received', async () => {
    const policy: AgentPolicy = { tenant: 'load', agent: 'loaded', secret: SECRET, upstreamPort };
    const running = await startWithAgent(work, policy, {
      ...(await backend.setting(work)),
      REINS_GATEWAY_WORKERS: '2',
      REINS_GATEWAY_SHUTDOWN_GRACE_MS: '2000',
    });
    const bearer = await agentToken(running, policy);
    const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
    // Each request ends answered, or refused or cut by the stop: either way the client moves on.
    const get = (path: string) =>
      getThrough(running.gateway.url, upstreamPort, path, bearer, agent).then(
        (answer) => answer.status,
        () => 0,
      );
    let loading = true;
    let answered = 0;
    const clients = Array.from({ length: CLIENTS }, async (_, client) => {
      for (let n = 0; loading; n++) {
        if ((await get(`/c${client}/${String(n).padStart(6, '0')}`)) === 200) answered++;
      }
    });
    while (answered < 300) await new Promise((done) => setTimeout(done, 20));
    await running.stop();
    loading = false;
    await Promise.all(clients);
    agent.destroy();

    const rows = await backend.rows(work);
    expect(received.length).toBeGreaterThanOrEqual(300);
    // Each request the upstream received: exactly one row.
    const reached = new Set(received);
    expect(reached.size).toBe(received.length);
    expect(
      rows
        .filter((r) => reached.has(r.path))
        .map((r) => r.path)
        .sort(),
    ).toEqual([...received].sort());
    // Any other row is a request the stopping gateway refused before dialling.
    for (const row of rows.filter((r) => !reached.has(r.path)))
      expect(['shutdown', 'client_closed']).toContain(row.reason);
  }, 120_000);
});
