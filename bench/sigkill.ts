// bench/sigkill: how many audit events a SIGKILL can lose. A real `reins serve` (the CLI, as
// bench/memory runs it, its gateway on the default thread count) carries 50 keep-alive clients'
// GETs to a local upstream that records every request it receives; mid-load the process is
// killed with SIGKILL (nothing of it runs after that: no drain, no flush). It is then started
// again on the same data (its spool is replayed into PostgreSQL; PGlite recovers its files),
// left until the audit rows stop growing, and stopped; then every request the upstream received
// is looked up in audit_events. Lost = received by the upstream, no row.
//
// What a SIGKILL can lose by design (docs/gateway.md): the exchanges a gateway thread has
// published but not yet handed to the main thread (one batch: at most a turn of its event
// loop), and the rows in the main thread's audit queue not yet committed (or, on PostgreSQL
// during an outage, not yet written to the spool). SIGTERM loses none (test/runtime/
// stop-under-load.test.ts); this bench measures what the kill costs, it asserts nothing.
// Full runs kill three times per backend; BENCH_SMOKE=1 once, PGlite only.
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Db } from '../src/store/db.ts';
import { openPg } from '../src/store/pg.ts';
import { openPglite } from '../src/store/pglite.ts';
import { smoke, table } from './harness.ts';
import {
  type Backend,
  cli,
  type Prepared,
  pglite,
  postgres,
  type Serve,
  serveEnv,
  sleep,
  startServe,
  tokenFor,
} from './serve-process.ts';

const CLIENTS = 50;
const LOAD_MS = smoke ? 500 : 3_000;
const ROUNDS = smoke ? 1 : 3;
const SECRET = 'bench-sigkill-agent-secret-used-only-here';
const SECRET_ENV = 'BENCH_SIGKILL_AGENT_SECRET';
const AGENT = 'killed';
/** How long the restarted serve may take to write what it found (the spool) before it is read. */
const SETTLE_LIMIT_MS = 60_000;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

interface Kill {
  /** Requests the upstream received before the kill (each path once). */
  readonly received: number;
  /** Of those, how many have an audit row after the restart. */
  readonly recorded: number;
  /** Rows the restarted process wrote from the spool (PostgreSQL). */
  readonly replayed: number;
}

/** An upstream that records the path of every request it receives. */
async function recordingUpstream(): Promise<{ port: number; paths: Set<string>; close(): Promise<void> }> {
  const paths = new Set<string>();
  const server = http.createServer((req, res) => {
    paths.add(req.url ?? '');
    req.resume();
    res.end('ok');
  });
  server.listen(0, '127.0.0.1', 1024);
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    paths,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** `CLIENTS` keep-alive clients sending GETs until `stop()`; they end at the first failure. */
function load(serve: Serve, upstreamPort: number, token: string): { stop(): Promise<number> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const authority = `127.0.0.1:${upstreamPort}`;
  let going = true;
  let sent = 0;
  const get = (path: string) =>
    new Promise<boolean>((resolve) => {
      const req = http.request(
        {
          host: serve.gateway.host,
          port: serve.gateway.port,
          agent,
          path: `http://${authority}${path}`,
          headers: { host: authority, 'proxy-authorization': `Bearer ${token}` },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === 200));
          res.on('error', () => resolve(false));
        },
      );
      req.on('error', () => resolve(false));
      req.end();
    });
  const clients = Array.from({ length: CLIENTS }, async (_, client) => {
    for (let n = 0; going; n++) {
      sent++;
      if (!(await get(`/c${client}/${n}`))) return;
    }
  });
  return {
    async stop() {
      going = false;
      await Promise.all(clients);
      agent.destroy();
      return sent;
    },
  };
}

/** The database the serve of `prepared` wrote to, opened here once it has stopped. */
function openWritten(prepared: Prepared): Promise<Db> {
  const url = prepared.env.DATABASE_URL;
  return url ? openPg(url) : openPglite(prepared.env.REINS_DATA_DIR as string);
}

async function killOnce(backend: Backend): Promise<Kill> {
  const work = await mkdtemp(join(tmpdir(), 'reins-bench-sigkill-'));
  const upstream = await recordingUpstream();
  let prepared: Prepared | undefined;
  let serve: Serve | undefined;
  try {
    prepared = await backend.prepare(work);
    const agents = [{ name: AGENT, egress: `GET http://127.0.0.1:${upstream.port}/` }];
    const policy = { tenant: 'sigkill', agents, secretEnv: SECRET_ENV, secret: SECRET };
    const env = await serveEnv(work, prepared, policy, '');
    serve = await startServe(env);
    const token = await tokenFor(serve, AGENT, SECRET);
    const clients = load(serve, upstream.port, token);
    await sleep(LOAD_MS);
    await serve.kill();
    await clients.stop();
    const received = new Set(upstream.paths);

    // Started again on the same data: it replays the spool; read once the rows stop growing.
    const before = await countRows(prepared);
    serve = await startServe(env);
    let rows = await countRows(prepared);
    for (const start = Date.now(); Date.now() - start < SETTLE_LIMIT_MS; ) {
      await sleep(1_000);
      const now = await countRows(prepared);
      if (now === rows) break;
      rows = now;
    }
    await serve.stop();
    serve = undefined;
    const db = await openWritten(prepared);
    try {
      const { rows: written } = await db.query<{ path: string }>(
        `select path from audit_events where agent = $1`,
        [AGENT],
      );
      const paths = new Set(written.map((r) => r.path));
      let recorded = 0;
      for (const path of received) if (paths.has(path)) recorded++;
      return { received: received.size, recorded, replayed: Math.max(0, rows - before) };
    } finally {
      await db.close();
    }
  } finally {
    await serve?.stop();
    await upstream.close();
    await prepared?.cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Rows so far, read beside the running serve where that can be done (PostgreSQL); PGlite's files
 * are the serve's alone while it runs, so there the count is only read after it stopped (0 here).
 */
async function countRows(prepared: Prepared): Promise<number> {
  const url = prepared.env.DATABASE_URL;
  if (!url) return 0;
  const db = await openPg(url);
  try {
    const { rows } = await db.query<{ n: string }>(
      `select count(*) as n from audit_events where agent = $1`,
      [AGENT],
    );
    return Number(rows[0]?.n ?? 0);
  } finally {
    await db.close();
  }
}

async function main(): Promise<void> {
  const url = process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL || undefined;
  const backends: Backend[] = [pglite];
  if (smoke) console.log('bench/sigkill: smoke mode kills PGlite only');
  else if (!url) console.log('bench/sigkill: no BENCH_DATABASE_URL or DATABASE_URL: PostgreSQL is skipped');
  else backends.push(postgres(url));

  const lines: string[][] = [];
  for (const backend of backends) {
    for (let round = 0; round < ROUNDS; round++) {
      let kill: Kill;
      try {
        kill = await killOnce(backend);
      } catch (err) {
        if (backend === pglite) throw err;
        console.log(`bench/sigkill: ${message(err)}: PostgreSQL is skipped`);
        break;
      }
      const lost = kill.received - kill.recorded;
      lines.push([
        backend.label,
        String(round + 1),
        kill.received.toLocaleString('en'),
        kill.recorded.toLocaleString('en'),
        `${lost} (${((100 * lost) / Math.max(1, kill.received)).toFixed(2)}%)`,
        backend === pglite ? '–' : kill.replayed.toLocaleString('en'),
      ]);
    }
  }
  console.log(
    `\n#### bench/sigkill: audit rows lost to a SIGKILL under load (${CLIENTS} keep-alive clients, killed after ${LOAD_MS / 1000} s; serve ${cli.what})\n`,
  );
  console.log(
    table(
      [
        'backend',
        'kill',
        'requests the upstream received',
        'with an audit row',
        'lost',
        'rows replayed from the spool after the restart',
      ],
      lines,
    ),
  );
}

await main();
