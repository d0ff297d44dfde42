// bench/gateway: small plain-HTTP requests per second and latency, side by side on 127.0.0.1
// against one local upstream, in the same run:
//
// - direct, no proxy (what the upstream and the load generator can do);
// - a bare Node forward proxy: the floor of what a forward proxy written in Node costs;
// - reins on PGlite, audit on, the allowed path with its token cached; in full runs also with a
//   one-entry token cache (every request verifies an ES256 signature) and, as an ablation, with
//   the audit events dropped;
// - reins on PostgreSQL, the same, when BENCH_DATABASE_URL or DATABASE_URL is set and reachable;
// - squid from Debian with a one-domain allow-list (installed when missing in full runs;
//   skipped with a note when it cannot be had).
//
// Every server runs in a process of its own (bench/gateway-servers.ts, squid -N); the load
// generator (bench/gateway-load.ts: undici, absolute-form requests, keep-alive) runs here.
// Every cell is warmed up first; full runs measure every cell in three rounds (interleaved, so
// that the machine's other work is shared out) and report the median. Beside requests/s and
// latency, each row shows the CPU time the proxy process spent per request (from /proc), which
// other work on the machine disturbs much less than the rates. BENCH_GATEWAY_CPU_PROF=<dir>
// writes a --cpu-prof profile of each Node server to <dir>; BENCH_GATEWAY_ONLY=<text> measures
// only the rows naming it; BENCH_GATEWAY_ROUNDS=<n> sets the rounds.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Cell, Load, type LoadTarget } from './gateway-load.ts';
import { findSquid, startSquid } from './gateway-squid.ts';
import {
  type ReinsStats,
  type Role,
  type ServeMessage,
  UNCACHED_TOKENS,
  UPSTREAM_HOST,
  UPSTREAM_PATH,
} from './gateway-wire.ts';
import { formatRate, smoke, table } from './harness.ts';

const SERVERS = fileURLToPath(new URL('./gateway-servers.ts', import.meta.url));
/** USER_HZ: the unit of CPU time in /proc/<pid>/stat (100 on every Linux this runs on). */
const CLOCK_TICKS = 100;

type Ready = Extract<ServeMessage, { kind: 'ready' }>;

interface Child {
  readonly ready: Ready;
  readonly pid: number | undefined;
  stats(): Promise<ReinsStats>;
  stop(): Promise<void>;
}

async function startChild(role: Role, name: string, env: Record<string, string> = {}): Promise<Child> {
  const profileDir = process.env.BENCH_GATEWAY_CPU_PROF;
  const profile = profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`]
    : [];
  const child: ChildProcess = fork(SERVERS, [], {
    execArgv: ['--import', 'tsx', ...profile],
    env: { ...process.env, ...env, BENCH_GATEWAY_SERVE: role },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = once(child, 'exit');
  const [message] = (await Promise.race([once(child, 'message'), exited])) as [ServeMessage | number];
  if (typeof message !== 'object' || message.kind !== 'ready') {
    const why = typeof message === 'object' && message.kind === 'error' ? message.error : `exit ${message}`;
    child.kill();
    throw new Error(`the ${name} server did not start: ${why}`);
  }
  return {
    ready: message,
    pid: child.pid,
    stats() {
      const answer = new Promise<ReinsStats>((resolve) => {
        const onMessage = (m: ServeMessage) => {
          if (m.kind !== 'stats') return;
          child.off('message', onMessage);
          resolve(m.stats);
        };
        child.on('message', onMessage);
      });
      child.send('stats');
      return answer;
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * CPU seconds (user + system, all threads) a process has used so far, from /proc (Linux); NaN
 * elsewhere.
 */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (which may hold spaces) start at field 3, state;
    // utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

function databaseUrl(): string | undefined {
  return process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL || undefined;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

interface Row {
  readonly name: string;
  /** The process whose CPU time is charged to the row: the proxy (the upstream for direct). */
  readonly pid: number | undefined;
  readonly target: LoadTarget;
  /** A reins row whose every request must leave an audit row. */
  readonly audited: boolean;
  /** Requests sent, warm-ups included. */
  sent: number;
  /** Per connection count: every round's cell, and the median one. */
  readonly samples: Map<number, Measured[]>;
  readonly cells: Map<number, Measured>;
}

type Measured = Cell & { readonly cpuMicros: number };

interface Reins {
  readonly label: string;
  readonly child: Child;
}

async function main(): Promise<void> {
  const concurrency = [10, 50];
  const seconds = smoke ? 0.4 : 4;
  const warmSeconds = smoke ? 0.1 : 1;
  const rounds = Number(process.env.BENCH_GATEWAY_ROUNDS) || (smoke ? 1 : 3);
  const stops: (() => Promise<void>)[] = [];
  try {
    const upstream = await startChild('upstream', 'upstream');
    stops.push(upstream.stop);
    const upstreamPort = new URL(upstream.ready.url).port;
    const reinsEnv = (db: string) => ({ BENCH_GATEWAY_UPSTREAM_PORT: upstreamPort, BENCH_GATEWAY_DB: db });
    const url = databaseUrl();
    if (!url)
      console.log('bench/gateway: no BENCH_DATABASE_URL or DATABASE_URL: the PostgreSQL row is skipped');
    const found = findSquid(!smoke);
    if (found.path === null) console.log(`bench/gateway: ${found.why}: the squid row is skipped`);
    // Optional servers: a failure to start skips their row, with a note.
    const optional = <T>(start: Promise<T>, what: string) =>
      start.catch((err: unknown) => {
        console.log(`bench/gateway: ${message(err)}: the ${what} row is skipped`);
        return undefined;
      });
    // Started together (PGlite's start dominates); each is stopped at the end if it started.
    const started = await Promise.allSettled([
      startChild('bare', 'bare'),
      startChild('reins', 'reins-pglite', reinsEnv('pglite')),
      url ? optional(startChild('reins', 'reins-pg', reinsEnv('pg')), 'PostgreSQL') : undefined,
      found.path === null ? undefined : optional(startSquid(found.path, UPSTREAM_HOST), 'squid'),
    ] as const);
    for (const result of started) {
      if (result.status === 'fulfilled' && result.value) stops.push(result.value.stop);
    }
    const value = <T>(result: PromiseSettledResult<T>): T => {
      if (result.status === 'rejected') throw result.reason;
      return result.value;
    };
    const bare = value(started[0]);
    const pglite = value(started[1]);
    const pg = value(started[2]);
    const squid = value(started[3]);

    const authority = `${UPSTREAM_HOST}:${upstreamPort}`;
    const viaProxy = (origin: string, extra: (n: number) => Record<string, string> = () => ({})) => ({
      origin,
      path: `http://${authority}${UPSTREAM_PATH}`,
      headers: (n: number) => ({ host: authority, ...extra(n) }),
    });
    const bearer = (child: Child) =>
      (child.ready.tokens ?? []).map((token) => ({ 'proxy-authorization': `Bearer ${token}` }));
    const row = (name: string, pid: number | undefined, target: LoadTarget, audited = false): Row => ({
      name,
      pid,
      target,
      audited,
      sent: 0,
      samples: new Map(),
      cells: new Map(),
    });

    const direct = row('direct (no proxy)', upstream.pid, {
      origin: upstream.ready.url,
      path: UPSTREAM_PATH,
      headers: () => ({}),
    });
    const floor = row('bare Node proxy (floor)', bare.pid, viaProxy(bare.ready.url));
    const rows: Row[] = [direct, floor];
    const reinsRows: Row[] = [];
    const reins: Reins[] = [{ label: 'PGlite', child: pglite }];
    if (pg) reins.push({ label: 'PostgreSQL', child: pg });
    for (const { label, child } of reins) {
      const tokens = bearer(child);
      const cached = row(
        `reins (${label}), token cached`,
        child.pid,
        viaProxy(child.ready.url, () => tokens[0] ?? {}),
        true,
      );
      reinsRows.push(cached);
      rows.push(cached);
      // What the token cache and the audit cost: on PGlite, in full runs (smoke stays short).
      const { uncachedUrl, unauditedUrl } = child.ready;
      if (smoke || label !== 'PGlite' || !uncachedUrl || !unauditedUrl) continue;
      rows.push(
        row(
          `reins (${label}), token verified every request`,
          child.pid,
          viaProxy(uncachedUrl, (n) => tokens[n % UNCACHED_TOKENS] ?? {}),
          true,
        ),
        row(
          `reins (${label}), audit off (ablation), token cached`,
          child.pid,
          viaProxy(unauditedUrl, () => tokens[0] ?? {}),
        ),
      );
    }
    const peer = squid
      ? row(
          `${squid.version.replace(/^Squid Cache: Version /, 'squid ')}, allow-list`,
          squid.pid,
          viaProxy(squid.url),
        )
      : undefined;
    if (peer) rows.push(peer);

    // Rounds, each measuring every cell once: the machine's other work comes and goes, and each
    // row gets its share of it. The median round (by requests/s) is reported.
    const only = process.env.BENCH_GATEWAY_ONLY;
    for (let round = 0; round < rounds; round++) {
      for (const connections of concurrency) {
        for (const r of rows) {
          if (only && !r.name.includes(only)) continue;
          const load = new Load(r.target, connections);
          try {
            await load.run(warmSeconds);
            const cpuBefore = cpuSeconds(r.pid);
            const cell = await load.run(seconds);
            const cpuMicros = ((cpuSeconds(r.pid) - cpuBefore) * 1e6) / cell.requests;
            const samples = r.samples.get(connections) ?? [];
            samples.push({ ...cell, cpuMicros });
            r.samples.set(connections, samples);
          } finally {
            r.sent += load.sent;
            await load.close();
          }
        }
      }
    }
    for (const r of rows) {
      for (const [connections, samples] of r.samples) {
        const sorted = [...samples].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond);
        const median = sorted[Math.floor(sorted.length / 2)];
        if (median) r.cells.set(connections, median);
      }
    }

    const share = (r: Row, base: Row | undefined, connections: number): number | undefined => {
      const a = r.cells.get(connections)?.requestsPerSecond;
      const b = base?.cells.get(connections)?.requestsPerSecond;
      return a !== undefined && b !== undefined ? a / b : undefined;
    };
    const ratio = (r: Row, base: Row | undefined, connections: number): string => {
      const value = share(r, base, connections);
      return value === undefined ? '–' : `${value.toFixed(2)}×`;
    };
    const lines: string[][] = [];
    for (const connections of concurrency) {
      for (const r of rows) {
        const cell = r.cells.get(connections);
        if (!cell) continue;
        lines.push([
          r.name,
          String(connections),
          formatRate(cell.requestsPerSecond),
          ratio(r, floor, connections),
          ratio(r, peer, connections),
          `${cell.p50.toFixed(2)} ms`,
          `${cell.p99.toFixed(2)} ms`,
          Number.isNaN(cell.cpuMicros) ? '–' : `${cell.cpuMicros.toFixed(0)} µs`,
        ]);
      }
    }
    console.log(
      `\n#### bench/gateway: small GET through a forward proxy (${seconds} s per cell after ${warmSeconds} s warm-up, ${rounds === 1 ? 'one round' : `median of ${rounds} rounds`})\n`,
    );
    console.log(
      table(
        [
          'path',
          'connections',
          'requests',
          'vs bare Node proxy',
          'vs squid',
          'p50',
          'p99',
          'proxy CPU/request',
        ],
        lines,
      ),
    );

    // Audit on means every request left a row: check it, and what the token cache did.
    console.log('');
    const hitRate = (s: { hits: number; misses: number }) =>
      `${((100 * s.hits) / Math.max(1, s.hits + s.misses)).toFixed(1)}%`;
    for (const { label, child } of reins) {
      const stats = await child.stats();
      const sent = rows
        .filter((r) => r.audited && r.name.startsWith(`reins (${label})`))
        .reduce((n, r) => n + r.sent, 0);
      console.log(
        `reins (${label}): ${stats.auditRows} audit rows written for ${sent} audited requests; token cache hits ` +
          `${hitRate(stats.cached)} (default cache), ${hitRate(stats.uncached)} (one-entry cache)`,
      );
    }
    const verdict = (value: number | undefined, text: string, ok: boolean) =>
      value === undefined ? 'not measured' : `${text} ${ok ? 'met' : 'MISSED'}`;
    for (const r of reinsRows) {
      const cell = r.cells.get(50);
      if (!cell) continue;
      const vsFloor = share(r, floor, 50);
      const vsPeer = share(r, peer, 50);
      console.log(
        `target, ${r.name}, 50 connections: ` +
          `≥ 0.85× bare Node proxy: ${verdict(vsFloor, `${vsFloor?.toFixed(2)}×`, (vsFloor ?? 0) >= 0.85)}; ` +
          `≥ 0.90× squid: ${verdict(vsPeer, `${vsPeer?.toFixed(2)}×`, (vsPeer ?? 0) >= 0.9)}; ` +
          `p99 < 10 ms: ${verdict(cell.p99, `${cell.p99.toFixed(2)} ms`, cell.p99 < 10)}`,
      );
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

await main();
