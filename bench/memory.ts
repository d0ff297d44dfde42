// bench/memory: the resident memory (VmRSS, /proc/<pid>/status) of a real `reins serve` process
// (the CLI, as test/cli/operate.test.ts runs it), with its gateway on 1 and on 2 worker threads
// (REINS_GATEWAY_WORKERS), so that what one more thread costs shows; on PGlite (a data directory
// in a temporary directory) and on PostgreSQL (a fresh database this bench creates and drops,
// when BENCH_DATABASE_URL or DATABASE_URL is set). Three readings per start, one after the other
// in the same process, each after a short settle:
//
// - idle: started, policy applied, nothing asked of it yet;
// - with 1,000 idle keep-alive connections to the gateway port, each having made one allowed GET
//   through it to a local HTTP upstream (so each has been parsed, bound to its token and audited,
//   as an agent's connection between two requests has);
// - with 1,000 plain CONNECT tunnels open too, to a local TCP upstream (the token's agent is
//   granted that origin whole, so the gateway splices bytes), each carrying one echo first.
//
// The readings add up: the tunnels are opened while the keep-alives stay open, so each column
// shows the process's RSS then and what it grew by since the one before. All three are read
// well within the gateway's idle limit (60 s), and every connection is checked to be still open
// after the last reading. RSS is what the kernel holds for the process (V8's heaps of every
// thread, PGlite's WebAssembly memory, malloc's arenas, buffers), garbage not yet collected
// included: a connection's share is what holding it, and what opening it left behind, cost.
//
// RSS right after a start varies from one start to the next (on PGlite by up to 200 MB: the
// engine's memory and malloc's per-thread arenas grow as start-up's timing has it), so full runs
// start each configuration three times (BENCH_MEMORY_ROUNDS), round after round, and report the
// median of each reading and the range of the idle ones.
//
// Each connection costs a file descriptor here and in reins, a tunnel two on each side: when the
// open-file limit (ulimit -n) is too low for 1,000 of each, fewer are opened, with a note.
// BENCH_SERVE_CLI=built runs bin/reins.js on dist/ instead of the sources (bench/serve-process.ts).
// BENCH_SMOKE=1: 50 connections, PGlite only, one start each.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

const WANTED_CONNECTIONS = smoke ? 50 : 1_000;
const WORKER_COUNTS = [1, 2] as const;
/** Starts per configuration: RSS right after start varies from one start to the next. */
const ROUNDS = smoke ? 1 : Number(process.env.BENCH_MEMORY_ROUNDS) || 3;
/** How long the process is left alone before each reading. */
const SETTLE_MS = smoke ? 300 : 2_000;
/** Connections opened at once: well under the listen backlog (511). */
const OPEN_BATCH = 100;
/** Tunnels per token: under the gateway's cap (128 per token, tunnelsPerToken). */
const TUNNELS_PER_TOKEN = 100;

const SECRET = 'bench-memory-agent-secret-used-only-here';
const SECRET_ENV = 'BENCH_MEMORY_AGENT_SECRET';
const FETCHER = 'fetcher';
const TUNNELLER = 'tunneller';
const BODY = Buffer.alloc(64, 'x');

const MB = 1024 * 1024;
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

// ---------------------------------------------------------------- the local upstreams

interface Upstreams {
  readonly httpPort: number;
  readonly tcpPort: number;
  /** TCP connections the tunnel upstream holds now. */
  readonly tunnelsHeld: () => number;
  close(): Promise<void>;
}

/** An HTTP upstream answering 64 bytes, and a TCP one echoing what each tunnel sends. */
async function startUpstreams(): Promise<Upstreams> {
  const web = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  web.keepAliveTimeout = 120_000;
  const held = new Set<net.Socket>();
  const echo = net.createServer((socket) => {
    held.add(socket);
    socket.on('close', () => held.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  const listen = async (server: net.Server) => {
    server.listen(0, '127.0.0.1', 1024);
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  };
  const httpPort = await listen(web);
  const tcpPort = await listen(echo);
  return {
    httpPort,
    tcpPort,
    tunnelsHeld: () => held.size,
    async close() {
      web.closeAllConnections();
      for (const socket of held) socket.destroy();
      await Promise.all([
        new Promise((resolve) => web.close(resolve)),
        new Promise((resolve) => echo.close(resolve)),
      ]);
    },
  };
}

// ---------------------------------------------------------------- reins serve

/** VmRSS of `pid` in bytes (all its threads: the gateway's, PGlite's, the main one). */
function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

// ---------------------------------------------------------------- connections

/**
 * Opens a connection to the gateway, writes `request` and reads until `complete` says the answer
 * is all there; fails unless its status is 200. Resolves with the socket, left open.
 */
function exchange(
  gateway: Serve['gateway'],
  request: string,
  complete: (received: Buffer) => boolean,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: gateway.host, port: gateway.port });
    let received = Buffer.alloc(0);
    const fail = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (!complete(received)) return;
      socket.off('data', onData);
      socket.off('error', fail);
      socket.off('end', onEnd);
      const status = received.subarray(0, received.indexOf('\r\n')).toString('latin1');
      if (!/^HTTP\/1\.1 200 /.test(status)) return fail(new Error(`the gateway answered ${status}`));
      // Closed later by the gateway or by us; an error then must not crash the bench.
      socket.on('error', () => undefined);
      resolve(socket);
    };
    const onEnd = () => fail(new Error(`the gateway closed the connection: ${received.toString()}`));
    socket.once('connect', () => socket.write(request));
    socket.on('data', onData);
    socket.once('error', fail);
    socket.once('end', onEnd);
  });
}

/** A keep-alive connection that made one allowed GET through the gateway, its answer read. */
async function keepAlive(gateway: Serve['gateway'], httpPort: number, token: string): Promise<net.Socket> {
  const authority = `127.0.0.1:${httpPort}`;
  const request =
    `GET http://${authority}/small HTTP/1.1\r\nHost: ${authority}\r\n` +
    `Proxy-Authorization: Bearer ${token}\r\n\r\n`;
  return exchange(gateway, request, (received) => {
    const end = received.indexOf('\r\n\r\n');
    if (end < 0) return false;
    const head = received.subarray(0, end).toString('latin1');
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    return received.length >= end + 4 + length;
  });
}

/** A plain CONNECT tunnel to the echo upstream, proven end to end by one echo. */
async function tunnel(gateway: Serve['gateway'], tcpPort: number, token: string): Promise<net.Socket> {
  const authority = `127.0.0.1:${tcpPort}`;
  const request = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`;
  const socket = await exchange(gateway, request, (received) => received.includes('\r\n\r\n'));
  const ping = 'ping\n';
  const echoed = new Promise<void>((resolve, reject) => {
    let back = '';
    const onData = (chunk: Buffer) => {
      back += chunk.toString('latin1');
      if (back.length < ping.length) return;
      socket.off('data', onData);
      if (back === ping) resolve();
      else reject(new Error(`the tunnel echoed ${JSON.stringify(back)}`));
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error('the tunnel closed before its echo came back')));
  });
  socket.write(ping);
  await echoed;
  return socket;
}

/** Opens `count` connections with `open`, OPEN_BATCH at a time; fails with the first error. */
async function openMany(count: number, open: (i: number) => Promise<net.Socket>): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  try {
    for (let first = 0; first < count; first += OPEN_BATCH) {
      const batch = Array.from({ length: Math.min(OPEN_BATCH, count - first) }, (_, i) => open(first + i));
      const settled = await Promise.allSettled(batch);
      for (const result of settled) if (result.status === 'fulfilled') sockets.push(result.value);
      const failed = settled.find((result) => result.status === 'rejected');
      if (failed) throw failed.reason;
    }
    return sockets;
  } catch (err) {
    for (const socket of sockets) socket.destroy();
    throw err;
  }
}

// ---------------------------------------------------------------- one serve, three readings

interface Readings {
  readonly idle: number;
  readonly keepAlives: number;
  readonly tunnels: number;
}

async function measureServe(
  backend: Backend,
  workers: number,
  upstreams: Upstreams,
  connections: number,
): Promise<Readings> {
  const work = await mkdtemp(join(tmpdir(), 'reins-bench-memory-'));
  const sockets: net.Socket[] = [];
  let prepared: Prepared | undefined;
  let serve: Serve | undefined;
  try {
    prepared = await backend.prepare(work);
    const agents = [
      { name: FETCHER, egress: `GET http://127.0.0.1:${upstreams.httpPort}/` },
      // The whole origin: its CONNECT gets a plain tunnel, spliced, not inspected.
      { name: TUNNELLER, egress: `https://127.0.0.1:${upstreams.tcpPort}/` },
    ];
    const policy = { tenant: 'memory', agents, secretEnv: SECRET_ENV, secret: SECRET };
    serve = await startServe(await serveEnv(work, prepared, policy, String(workers)));
    const { gateway, pid } = serve;
    const reading = async () => {
      await sleep(SETTLE_MS);
      return rssOf(pid);
    };
    const idle = await reading();

    const fetchToken = await tokenFor(serve, FETCHER, SECRET);
    const kept = await openMany(connections, () => keepAlive(gateway, upstreams.httpPort, fetchToken));
    sockets.push(...kept);
    const keepAlives = await reading();

    const tunnelTokens: string[] = [];
    for (let i = 0; i < Math.ceil(connections / TUNNELS_PER_TOKEN); i++) {
      tunnelTokens.push(await tokenFor(serve, TUNNELLER, SECRET));
    }
    const tunnels = await openMany(connections, (i) =>
      tunnel(gateway, upstreams.tcpPort, tunnelTokens[Math.floor(i / TUNNELS_PER_TOKEN)] as string),
    );
    sockets.push(...tunnels);
    const withTunnels = await reading();

    // Every reading counted connections that were really open: none has been closed since.
    const gone = sockets.filter((socket) => socket.destroyed || socket.readyState !== 'open').length;
    if (gone > 0) throw new Error(`${gone} connections closed before the last reading`);
    if (upstreams.tunnelsHeld() !== connections) {
      throw new Error(`the upstream holds ${upstreams.tunnelsHeld()} tunnels, not ${connections}`);
    }
    return { idle, keepAlives, tunnels: withTunnels };
  } finally {
    for (const socket of sockets) socket.destroy();
    await serve?.stop();
    await prepared?.cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- backends and limits

/** The soft open-file limit (ulimit -n) this process and reins, its child, run under. */
function openFileLimit(): number {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1];
  return soft === undefined || soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
}

/**
 * As many connections as the fd limit allows, up to WANTED_CONNECTIONS. Each side holds, per
 * connection: a keep-alive (1), a tunnel (2: client and upstream here, client and upstream in
 * reins), plus the upstream pool and whatever else is open: 3 per connection and 512 spare.
 */
function connectionCount(): number {
  const limit = openFileLimit();
  const fits = Math.floor((limit - 512) / 3);
  if (fits >= WANTED_CONNECTIONS) return WANTED_CONNECTIONS;
  console.log(
    `bench/memory: the open-file limit is ${limit} (ulimit -n): ${Math.max(0, fits)} connections of each kind, not ${WANTED_CONNECTIONS}`,
  );
  return Math.max(0, fits);
}

// ---------------------------------------------------------------- the report

interface Config {
  readonly backend: Backend;
  readonly workers: number;
  /** One per start (round). */
  readonly readings: Readings[];
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** A configuration's median reading of `key`, and the median growth from `before` to `key`. */
function summary(c: Config, key: keyof Readings, before?: keyof Readings): { at: number; grew: number } {
  return {
    at: median(c.readings.map((r) => r[key])),
    grew: before === undefined ? 0 : median(c.readings.map((r) => r[key] - r[before])),
  };
}

const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
const signedMb = (bytes: number) => `${bytes >= 0 ? '+' : '−'}${(Math.abs(bytes) / MB).toFixed(1)}`;

async function main(): Promise<void> {
  const connections = connectionCount();
  if (connections < 1) throw new Error('bench/memory: the open-file limit leaves no room for connections');
  const url = process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL || undefined;
  const backends: Backend[] = [pglite];
  if (smoke) console.log('bench/memory: smoke mode measures PGlite only');
  else if (!url)
    console.log('bench/memory: no BENCH_DATABASE_URL or DATABASE_URL: the PostgreSQL rows are skipped');
  else {
    try {
      backends.push(postgres(url));
    } catch (err) {
      console.log(`bench/memory: ${message(err)}: the PostgreSQL rows are skipped`);
    }
  }

  const configs: Config[] = backends.flatMap((backend) =>
    WORKER_COUNTS.map((workers) => ({ backend, workers, readings: [] })),
  );
  const upstreams = await startUpstreams();
  try {
    // Round after round over every configuration, so that whatever else the machine does is
    // shared out between them.
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of configs) {
        if (!backends.includes(c.backend)) continue;
        try {
          c.readings.push(await measureServe(c.backend, c.workers, upstreams, connections));
        } catch (err) {
          // PostgreSQL is optional, as in the other benchmarks; PGlite must work.
          if (c.backend === pglite) throw err;
          console.log(`bench/memory: ${message(err)}: the PostgreSQL rows are skipped`);
          backends.splice(backends.indexOf(c.backend), 1);
        }
      }
    }
  } finally {
    await upstreams.close();
  }
  const measured = configs.filter((c) => backends.includes(c.backend));

  const count = connections.toLocaleString('en');
  const runs = ROUNDS === 1 ? 'one start' : `median of ${ROUNDS} starts`;
  console.log(
    `\n#### bench/memory: RSS of \`reins serve\` (${runs} per row, ${cli.what}; VmRSS after ${SETTLE_MS} ms settle; each column adds to the one before, its growth in brackets)\n`,
  );
  const range = (c: Config) => {
    if (c.readings.length < 2) return '';
    const idles = c.readings.map((r) => r.idle / MB);
    return ` (${Math.min(...idles).toFixed(0)}–${Math.max(...idles).toFixed(0)})`;
  };
  console.log(
    table(
      ['backend', 'gateway threads', 'idle', `+${count} keep-alives`, `+${count} tunnels`],
      measured.map((c) => {
        const idle = summary(c, 'idle');
        const keepAlives = summary(c, 'keepAlives', 'idle');
        const tunnels = summary(c, 'tunnels', 'keepAlives');
        return [
          c.backend.label,
          String(c.workers),
          `${mb(idle.at)}${range(c)}`,
          `${mb(keepAlives.at)} (${signedMb(keepAlives.grew)})`,
          `${mb(tunnels.at)} (${signedMb(tunnels.grew)})`,
        ];
      }),
    ),
  );
  console.log('');
  for (const backend of backends) {
    const one = measured.find((c) => c.backend === backend && c.workers === 1);
    const two = measured.find((c) => c.backend === backend && c.workers === 2);
    if (!one || !two) continue;
    const delta = (key: keyof Readings) => `${signedMb(summary(two, key).at - summary(one, key).at)} MB`;
    console.log(
      `bench/memory, ${backend.label}: one more gateway thread: ${delta('idle')} idle, ` +
        `${delta('keepAlives')} with the keep-alives, ${delta('tunnels')} with the tunnels too`,
    );
  }
  for (const c of measured) {
    const kib = (bytes: number) => `${(bytes / connections / 1024).toFixed(1)} KiB`;
    console.log(
      `bench/memory, ${c.backend.label}, ${c.workers} gateway thread${c.workers === 1 ? '' : 's'}: ` +
        `${kib(summary(c, 'keepAlives', 'idle').grew)} per idle keep-alive, ` +
        `${kib(summary(c, 'tunnels', 'keepAlives').grew)} per open tunnel`,
    );
  }
}

await main();
