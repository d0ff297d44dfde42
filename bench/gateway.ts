// bench/gateway: small plain-HTTP requests per second and latency, side by side on 127.0.0.1
// against one local upstream, in the same run (then the same over HTTPS through plain and
// inspected tunnels: bench/gateway-tls.ts):
//
// - direct, no proxy (what the upstream and the load generator can do);
// - a bare Node forward proxy: the floor of what a forward proxy written in Node costs;
// - reins on PGlite, audit on, the allowed path with its token cached; in full runs also with a
//   one-entry token cache (every request verifies an ES256 signature) and, as an ablation, with
//   the audit events dropped;
// - reins on PostgreSQL, the same, when BENCH_DATABASE_URL or DATABASE_URL is set and reachable;
// - reins on the production path, on each of those backends: the gateway on worker threads
//   (startGatewayWorkers, as `reins serve` runs it with REINS_GATEWAY_WORKERS=1 and =2), audit on,
//   the token cached, each thread count in a reins process of its own;
// - squid from Debian with a one-domain allow-list (installed when missing in full runs;
//   skipped with a note when it cannot be had).
//
// Every server runs in a process of its own (bench/gateway-servers.ts, squid -N); the load
// generator (bench/gateway-load.ts: undici, absolute-form requests, keep-alive) runs here.
// Every cell is warmed up first; full runs measure every cell in three rounds (interleaved, so
// that the machine's other work is shared out) and report the median. Beside requests/s and
// latency, each row shows the CPU time the proxy process spent per request (from /proc), which
// other work on the machine disturbs much less than the rates. BENCH_GATEWAY_CPU_PROF=<dir>
// writes a --cpu-prof profile of each Node server to <dir>; BENCH_GATEWAY_ONLY=<text>[|<text>…]
// measures only the rows naming one of them (and starts no threaded reins whose row it leaves
// out); BENCH_GATEWAY_ROUNDS=<n> sets the rounds; BENCH_GATEWAY_NODE_FLAGS="<flags>" starts every
// server's node with them (`--trace-gc-nvp` shows what each isolate's scavenges keep and promote).
import { availableParallelism } from 'node:os';
import { type Child, startChild } from './gateway-children.ts';
import {
  chosen,
  measureRows,
  type Row,
  ratio,
  row,
  type Schedule,
  share,
  tableLines,
  verdict,
} from './gateway-rows.ts';
import { findSquid, type Squid, startSquid, whyNoBump } from './gateway-squid.ts';
import { runTlsBench } from './gateway-tls.ts';
import { UNCACHED_TOKENS, UPSTREAM_HOST, UPSTREAM_PATH } from './gateway-wire.ts';
import { smoke, table } from './harness.ts';

function databaseUrl(): string | undefined {
  return process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL || undefined;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

interface Reins {
  readonly label: string;
  readonly child: Child;
}

/** A reins whose gateway runs on `threads` worker threads (the production path). */
interface Threaded extends Reins {
  readonly threads: number;
  /** Every detection and a budget on (BENCH_GATEWAY_MONITORING): what monitoring costs. */
  readonly monitored: boolean;
}

/** How many gateway threads the threaded rows run with. */
const THREAD_COUNTS = [1, 2] as const;

const threadedLabel = (label: string, threads: number) =>
  `${label}, ${threads} thread${threads === 1 ? '' : 's'}`;
const threadedName = (label: string, threads: number, monitored = false) =>
  `reins, ${threadedLabel(label, threads)}${monitored ? ', monitoring on' : ''}`;

async function main(): Promise<void> {
  const schedule: Schedule = {
    concurrency: [10, 50],
    seconds: smoke ? 0.4 : 4,
    warmSeconds: smoke ? 0.1 : 1,
    rounds: Number(process.env.BENCH_GATEWAY_ROUNDS) || (smoke ? 1 : 3),
    only: process.env.BENCH_GATEWAY_ONLY,
  };
  const stops: (() => Promise<void>)[] = [];
  try {
    const upstreams = await Promise.allSettled([
      startChild('upstream', 'upstream'),
      startChild('upstream-tls', 'upstream-tls'),
    ]);
    for (const result of upstreams) {
      if (result.status === 'fulfilled') stops.push(result.value.stop);
    }
    const value = <T>(result: PromiseSettledResult<T>): T => {
      if (result.status === 'rejected') throw result.reason;
      return result.value;
    };
    const upstream = value(upstreams[0]);
    const upstreamTls = value(upstreams[1]);
    const upstreamPort = new URL(upstream.ready.url).port;
    const reinsEnv = (db: string) => ({
      BENCH_GATEWAY_UPSTREAM_PORT: upstreamPort,
      BENCH_GATEWAY_TLS_PORT: new URL(upstreamTls.ready.url).port,
      BENCH_GATEWAY_UPSTREAM_CA: upstreamTls.ready.caPem ?? '',
      BENCH_GATEWAY_DB: db,
    });
    const url = databaseUrl();
    if (!url)
      console.log('bench/gateway: no BENCH_DATABASE_URL or DATABASE_URL: the PostgreSQL rows are skipped');
    const found = findSquid(!smoke);
    if (found.path === null) console.log(`bench/gateway: ${found.why}: the squid rows are skipped`);
    const noBump = found.path === null ? null : whyNoBump(found.path);
    if (noBump !== null) console.log(`bench/gateway: ${noBump}: the squid ssl_bump row is skipped`);
    // Optional servers: a failure to start skips their row, with a note.
    const optional = <T>(start: Promise<T>, what: string) =>
      start.catch((err: unknown) => {
        console.log(`bench/gateway: ${message(err)}: the ${what} row is skipped`);
        return undefined;
      });
    const squidOf = (bump: boolean): Promise<Squid | undefined> | undefined => {
      if (found.path === null || (bump && noBump !== null)) return undefined;
      const options = bump ? { bump: { upstreamCaPem: upstreamTls.ready.caPem ?? '' } } : {};
      return optional(startSquid(found.path, UPSTREAM_HOST, options), bump ? 'squid ssl_bump' : 'squid');
    };
    // The threaded reins, one process per backend and thread count; only those whose row is
    // measured. PGlite's must start; PostgreSQL's is optional, as its other row is.
    const backends = [
      { label: 'PGlite', db: 'pglite', required: true },
      ...(url ? [{ label: 'PostgreSQL', db: 'pg', required: false }] : []),
    ];
    const variants = [
      ...THREAD_COUNTS.map((threads) => ({ threads, monitored: false })),
      { threads: 1, monitored: true },
    ];
    const threadedStarts = backends.flatMap(({ label, db, required }) =>
      variants
        .filter(({ threads, monitored }) =>
          chosen({ name: threadedName(label, threads, monitored) }, schedule),
        )
        .map(({ threads, monitored }) => {
          const what = threadedName(label, threads, monitored);
          const env = {
            ...reinsEnv(db),
            BENCH_GATEWAY_THREADS: String(threads),
            BENCH_GATEWAY_MONITORING: monitored ? '1' : '',
          };
          const name = `reins-${db}-${threads}-threads${monitored ? '-monitored' : ''}`;
          const start = startChild('reins', name, env);
          return { label, threads, monitored, start: required ? start : optional(start, what) };
        }),
    );
    // Started together (PGlite's start dominates); each is stopped at the end if it started.
    const threadedStarted = Promise.allSettled(threadedStarts.map(({ start }) => start));
    const started = await Promise.allSettled([
      startChild('bare', 'bare', { BENCH_GATEWAY_UPSTREAM_CA: upstreamTls.ready.caPem ?? '' }),
      startChild('reins', 'reins-pglite', reinsEnv('pglite')),
      url ? optional(startChild('reins', 'reins-pg', reinsEnv('pg')), 'PostgreSQL') : undefined,
      squidOf(false),
      squidOf(true),
    ] as const);
    const threadedResults = await threadedStarted;
    for (const result of [...started, ...threadedResults]) {
      if (result.status === 'fulfilled' && result.value) stops.push(result.value.stop);
    }
    const bare = value(started[0]);
    const pglite = value(started[1]);
    const pg = value(started[2]);
    const squid = value(started[3]);
    const squidBump = value(started[4]);
    const reins: Reins[] = [{ label: 'PGlite', child: pglite }];
    if (pg) reins.push({ label: 'PostgreSQL', child: pg });
    const threaded: Threaded[] = [];
    threadedResults.forEach((result, i) => {
      const child = value(result);
      const { label, threads, monitored } = threadedStarts[i] as (typeof threadedStarts)[number];
      if (child) threaded.push({ label, threads, monitored, child });
    });

    await runPlainBench({ upstream, bare, reins, threaded, squid, schedule });
    // The threaded reins inspect too: the production path's row of the inspected-tunnel target.
    const tlsReins = [
      ...reins,
      ...threaded
        .filter(({ monitored }) => !monitored)
        .map(({ label, threads, child }) => ({ label: threadedLabel(label, threads), child })),
    ];
    await runTlsBench({ upstream: upstreamTls, bare, reins: tlsReins, squid: squidBump, schedule });
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

interface PlainBench {
  readonly upstream: Child;
  readonly bare: Child;
  readonly reins: readonly Reins[];
  readonly threaded: readonly Threaded[];
  readonly squid: Squid | undefined;
  readonly schedule: Schedule;
}

async function runPlainBench({
  upstream,
  bare,
  reins,
  threaded,
  squid,
  schedule,
}: PlainBench): Promise<void> {
  const upstreamPort = new URL(upstream.ready.url).port;
  const authority = `${UPSTREAM_HOST}:${upstreamPort}`;
  const viaProxy = (origin: string, extra: (n: number) => Record<string, string> = () => ({})) => ({
    origin,
    path: `http://${authority}${UPSTREAM_PATH}`,
    headers: (n: number) => ({ host: authority, ...extra(n) }),
  });
  const bearer = (child: Child) =>
    (child.ready.tokens ?? []).map((token) => ({ 'proxy-authorization': `Bearer ${token}` }));

  const direct = row('direct (no proxy)', upstream.pid, {
    origin: upstream.ready.url,
    path: UPSTREAM_PATH,
    headers: () => ({}),
  });
  const floor = row('bare Node proxy (floor)', bare.pid, viaProxy(bare.ready.url));
  const rows: Row[] = [direct, floor];
  const reinsRows: Row[] = [];
  /** The threaded rows, by backend label then thread count. */
  const threadedRows = new Map<string, Map<number, Row>>();
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
  // The production path: the gateway on worker threads, per backend, one row per thread count.
  /** The monitoring-on rows, by backend label (one thread). */
  const monitoredRows = new Map<string, Row>();
  for (const { label, threads, monitored, child } of threaded) {
    const token = bearer(child)[0] ?? {};
    const r = row(
      threadedName(label, threads, monitored),
      child.pid,
      viaProxy(child.ready.url, () => token),
      true,
    );
    rows.push(r);
    if (monitored) {
      monitoredRows.set(label, r);
      continue;
    }
    const byCount = threadedRows.get(label) ?? new Map<number, Row>();
    threadedRows.set(label, byCount.set(threads, r));
  }
  const peer = squid
    ? row(
        `${squid.version.replace(/^Squid Cache: Version /, 'squid ')}, allow-list`,
        squid.pid,
        viaProxy(squid.url),
      )
    : undefined;
  if (peer) rows.push(peer);

  await measureRows(rows, schedule);

  const lines = tableLines(rows, schedule.concurrency, (r, connections) => [
    ratio(r, floor, connections),
    ratio(r, peer, connections),
  ]);
  const { seconds, warmSeconds, rounds } = schedule;
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
  // Each reins is a process of its own: its rows are the ones charged to its pid.
  const auditedThrough = (child: Child) =>
    rows.filter((r) => r.audited && r.pid === child.pid).reduce((n, r) => n + r.sent, 0);
  const rowsPerInsert = (stats: { auditRows: number; auditStatements: number }) =>
    (stats.auditRows / Math.max(1, stats.auditStatements)).toFixed(1);
  // Nothing to say of a reins none of whose rows BENCH_GATEWAY_ONLY let through.
  const measuredThrough = (child: Child) => rows.some((r) => r.pid === child.pid && r.cells.size > 0);
  for (const { label, child } of reins) {
    if (!measuredThrough(child)) continue;
    const stats = await child.stats();
    console.log(
      `reins (${label}): ${stats.auditRows} audit rows written for ${auditedThrough(child)} audited requests ` +
        `(${rowsPerInsert(stats)} rows per INSERT); token cache hits ` +
        `${hitRate(stats.cached)} (default cache), ${hitRate(stats.uncached)} (one-entry cache)`,
    );
  }
  for (const { label, threads, monitored, child } of threaded) {
    if (!measuredThrough(child)) continue;
    const stats = await child.stats();
    const sent = auditedThrough(child);
    console.log(
      `${threadedName(label, threads, monitored)}: ${stats.auditRows} audit rows written for ${sent} audited requests ` +
        `(${stats.auditRows === sent ? 'none missing' : 'SOME MISSING'}; ${rowsPerInsert(stats)} rows per INSERT); ` +
        `token cache hits ${hitRate(stats.cached)} (each thread's own cache)`,
    );
  }
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
  reportThreadedTargets(threadedRows, floor);
  reportMonitoringCost(threadedRows, monitoredRows, schedule.concurrency);
}

/**
 * What monitoring costs a request (issue 14): the one-thread gateway with every detection and a
 * budget on, beside the same gateway without, same run — CPU per request (the whole process:
 * the monitoring watcher reads the audit trail on its main thread) and requests/s.
 */
const signed = (n: number) => `${n < 0 ? '−' : '+'}${Math.abs(n).toFixed(0)}`;

function reportMonitoringCost(
  threadedRows: ReadonlyMap<string, ReadonlyMap<number, Row>>,
  monitoredRows: ReadonlyMap<string, Row>,
  concurrency: readonly number[],
): void {
  for (const [label, on] of monitoredRows) {
    const off = threadedRows.get(label)?.get(1);
    if (off === undefined) continue;
    for (const connections of concurrency) {
      const a = off.cells.get(connections);
      const b = on.cells.get(connections);
      if (a === undefined || b === undefined) continue;
      console.log(
        `monitoring cost, reins, ${label}, 1 thread, ${connections} connections: ` +
          `${b.requestsPerSecond.toFixed(0)} req/s on vs ${a.requestsPerSecond.toFixed(0)} off ` +
          `(${(b.requestsPerSecond / a.requestsPerSecond).toFixed(2)}×); CPU/request ` +
          `${b.cpuMicros.toFixed(0)} µs on vs ${a.cpuMicros.toFixed(0)} µs off (${signed(b.cpuMicros - a.cpuMicros)} µs)`,
      );
    }
  }
}

/**
 * The production path's targets, per backend at 50 connections: one gateway thread does at least
 * 0.80× the bare Node proxy's requests/s; each thread count keeps p99 within 1.5× the bare
 * proxy's; two threads are not slower than one.
 */
function reportThreadedTargets(
  threadedRows: ReadonlyMap<string, ReadonlyMap<number, Row>>,
  floor: Row,
): void {
  const connections = 50;
  const floorP99 = floor.cells.get(connections)?.p99;
  const p99Target = (r: Row): string => {
    const p99 = r.cells.get(connections)?.p99;
    const limit = floorP99 === undefined ? undefined : 1.5 * floorP99;
    return (
      `p99 ≤ 1.5× the bare Node proxy's${limit === undefined ? '' : ` (≤ ${limit.toFixed(2)} ms)`}: ` +
      verdict(
        limit === undefined ? undefined : p99,
        `${p99?.toFixed(2)} ms`,
        (p99 ?? Number.POSITIVE_INFINITY) <= (limit ?? 0),
      )
    );
  };
  // Two threads can only beat one where a CPU is free for the second: say how many there are.
  if (threadedRows.size > 0) {
    console.log(
      `(${availableParallelism()} CPUs here, shared by the load generator, the upstream and the proxy measured)`,
    );
  }
  for (const byCount of threadedRows.values()) {
    const one = byCount.get(1);
    const two = byCount.get(2);
    if (one?.cells.has(connections)) {
      const vsFloor = share(one, floor, connections);
      console.log(
        `target, ${one.name}, ${connections} connections: ` +
          `≥ 0.80× bare Node proxy: ${verdict(vsFloor, `${vsFloor?.toFixed(2)}×`, (vsFloor ?? 0) >= 0.8)}; ` +
          p99Target(one),
      );
    }
    if (two?.cells.has(connections)) {
      const vsOne = one && share(two, one, connections);
      console.log(
        `target, ${two.name}, ${connections} connections: ` +
          `not slower than 1 thread: ${verdict(vsOne, `${vsOne?.toFixed(2)}×`, (vsOne ?? 0) >= 1)}; ` +
          p99Target(two),
      );
    }
  }
}

await main();
