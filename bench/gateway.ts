// bench/gateway: small plain-HTTP requests per second and latency, side by side on 127.0.0.1
// against one local upstream, in the same run: direct (no proxy); through a bare Node forward
// proxy (the floor of what a proxy written in Node costs); through reins (allowed path, token
// cached; and, in full runs, with a one-entry token cache, so that every request verifies an
// ES256 signature); through squid from Debian with a one-domain allow-list (installed when
// missing in full runs; skipped with a note when it cannot be had).
//
// Every server runs in a process of its own (bench/gateway-servers.ts, squid -N); the load
// generator (bench/gateway-load.ts: undici, absolute-form requests, keep-alive) runs here.
// Every cell is warmed up first. BENCH_GATEWAY_CPU_PROF=<dir> writes a --cpu-prof profile of
// each Node server to <dir>; BENCH_GATEWAY_ONLY=<text> measures only the rows naming it.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Cell, Load, type LoadTarget } from './gateway-load.ts';
import { findSquid, type Squid, startSquid } from './gateway-squid.ts';
import {
  type ReinsStats,
  type Role,
  type ServeMessage,
  UNCACHED_TOKENS,
  UPSTREAM_HOST,
  UPSTREAM_PATH,
} from './gateway-wire.ts';
import { formatRate, smoke, table } from './harness.ts';

/** USER_HZ: what /proc/<pid>/stat counts CPU time in (100 on every Linux this runs on). */
const CLOCK_TICKS = 100;
const SERVERS = fileURLToPath(new URL('./gateway-servers.ts', import.meta.url));

type Ready = Extract<ServeMessage, { kind: 'ready' }>;

interface Child {
  readonly ready: Ready;
  readonly pid: number | undefined;
  stats(): Promise<ReinsStats>;
  stop(): Promise<void>;
}

async function startChild(role: Role, env: Record<string, string> = {}): Promise<Child> {
  const profileDir = process.env.BENCH_GATEWAY_CPU_PROF;
  const profile = profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${role}.cpuprofile`]
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
    throw new Error(`bench/gateway: the ${role} server did not start: ${why}`);
  }
  return {
    ready: message,
    pid: child.pid,
    async stats() {
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

interface Row {
  readonly name: string;
  readonly target: LoadTarget;
  /** The process whose CPU time is charged to the row: the proxy (the upstream for direct). */
  readonly pid: number | undefined;
  /** Requests sent to it, warm-ups included (for the audit row count). */
  sent: number;
  readonly cells: Map<number, Cell & { readonly cpuMicros: number }>;
}

function row(name: string, pid: number | undefined, target: LoadTarget): Row {
  return { name, pid, target, sent: 0, cells: new Map() };
}

/**
 * CPU seconds (user + system, all threads) a process has used so far, from /proc (Linux); NaN
 * elsewhere. Unlike requests/s it does not depend on what else the machine runs meanwhile.
 */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at state (field 3).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

const ratio = (a: Cell | undefined, b: Cell | undefined): string =>
  a && b ? `${(a.requestsPerSecond / b.requestsPerSecond).toFixed(2)}×` : '–';

async function main(): Promise<void> {
  const concurrency = [10, 50];
  const seconds = smoke ? 0.5 : 5;
  const warmSeconds = smoke ? 0.25 : 2;
  const stops: (() => Promise<void>)[] = [];
  try {
    const upstream = await startChild('upstream');
    stops.push(upstream.stop);
    const upstreamPort = new URL(upstream.ready.url).port;
    const [bare, reins] = await Promise.all([
      startChild('bare'),
      startChild('reins', { BENCH_GATEWAY_UPSTREAM_PORT: upstreamPort }),
    ]);
    stops.push(bare.stop, reins.stop);
    let squid: Squid | undefined;
    const found = findSquid(!smoke);
    if (found.path === null) console.log(`bench/gateway: ${found.why}: the squid row is skipped`);
    else {
      try {
        squid = await startSquid(found.path, UPSTREAM_HOST);
        stops.push(squid.stop);
      } catch (err) {
        console.log(
          `bench/gateway: ${err instanceof Error ? err.message : String(err)}: the squid row is skipped`,
        );
      }
    }

    const authority = `${UPSTREAM_HOST}:${upstreamPort}`;
    const absolute = `http://${authority}${UPSTREAM_PATH}`;
    const tokens = reins.ready.tokens ?? [];
    const viaProxy = (origin: string, extra: (n: number) => Record<string, string> = () => ({})) => ({
      origin,
      path: absolute,
      headers: (n: number) => ({ host: authority, ...extra(n) }),
    });
    const bearer = tokens.map((token) => ({ 'proxy-authorization': `Bearer ${token}` }));
    const rows: Row[] = [
      row('direct (no proxy)', upstream.pid, {
        origin: upstream.ready.url,
        path: UPSTREAM_PATH,
        headers: () => ({}),
      }),
      row('bare Node proxy (floor)', bare.pid, viaProxy(bare.ready.url)),
      row(
        'reins, token cached',
        reins.pid,
        viaProxy(reins.ready.url, () => bearer[0] ?? {}),
      ),
    ];
    // What the token cache and the audit cost: full runs only, to keep smoke short.
    if (!smoke && reins.ready.uncachedUrl && reins.ready.unauditedUrl) {
      rows.push(
        row(
          'reins, token verified every request',
          reins.pid,
          viaProxy(reins.ready.uncachedUrl, (n) => bearer[n % UNCACHED_TOKENS] ?? {}),
        ),
        row(
          'reins, token cached, audit off (ablation)',
          reins.pid,
          viaProxy(reins.ready.unauditedUrl, () => bearer[0] ?? {}),
        ),
      );
    }
    if (squid)
      rows.push(
        row(
          `${squid.version.replace(/^Squid Cache: Version /, 'squid ')}, allow-list`,
          squid.pid,
          viaProxy(squid.url),
        ),
      );

    // BENCH_GATEWAY_ONLY=<text>: measure only the rows whose name contains it (with
    // BENCH_GATEWAY_CPU_PROF, a profile of one path under load and nothing else).
    const only = process.env.BENCH_GATEWAY_ONLY;
    for (const connections of concurrency) {
      for (const r of rows) {
        if (only && !r.name.includes(only)) continue;
        const load = new Load(r.target, connections);
        try {
          await load.run(warmSeconds);
          const cpuBefore = cpuSeconds(r.pid);
          const cell = await load.run(seconds);
          const cpuMicros = ((cpuSeconds(r.pid) - cpuBefore) * 1e6) / cell.requests;
          r.cells.set(connections, { ...cell, cpuMicros });
        } finally {
          r.sent += load.sent;
          await load.close();
        }
      }
    }

    const bareRow = rows[1];
    const squidRow = squid ? rows[rows.length - 1] : undefined;
    const lines: string[][] = [];
    for (const connections of concurrency) {
      for (const r of rows) {
        const cell = r.cells.get(connections);
        if (!cell) continue;
        lines.push([
          r.name,
          String(connections),
          formatRate(cell.requestsPerSecond),
          ratio(cell, bareRow?.cells.get(connections)),
          squidRow ? ratio(cell, squidRow.cells.get(connections)) : '–',
          `${cell.p50.toFixed(2)} ms`,
          `${cell.p99.toFixed(2)} ms`,
          Number.isNaN(cell.cpuMicros) ? '–' : `${cell.cpuMicros.toFixed(0)} µs`,
        ]);
      }
    }
    console.log(
      `\n#### bench/gateway: small GET through a forward proxy (${seconds} s per cell after ${warmSeconds} s warm-up)\n`,
    );
    console.log(
      table(
        ['path', 'connections', 'requests', 'vs bare Node proxy', 'vs squid', 'p50', 'p99', 'CPU/request'],
        lines,
      ),
    );

    const stats = await reins.stats();
    const throughReins = rows
      .filter((r) => r.name.startsWith('reins') && !r.name.includes('audit off'))
      .reduce((n, r) => n + r.sent, 0);
    const hitRate = (s: { hits: number; misses: number }) =>
      `${((100 * s.hits) / Math.max(1, s.hits + s.misses)).toFixed(1)}% hits`;
    console.log(
      `\nreins: token cache ${hitRate(stats.cached)} (cached listener), ${hitRate(stats.uncached)} (one-entry cache);` +
        ` ${stats.auditRows} audit rows written for ${throughReins} requests sent`,
    );
    const reinsRow = rows[2];
    const at50 = reinsRow?.cells.get(50);
    if (at50 && bareRow) {
      const vsBare = at50.requestsPerSecond / (bareRow.cells.get(50)?.requestsPerSecond ?? Number.NaN);
      const vsSquid = squidRow
        ? at50.requestsPerSecond / (squidRow.cells.get(50)?.requestsPerSecond ?? Number.NaN)
        : Number.NaN;
      const met = (ok: boolean) => (ok ? 'met' : 'missed');
      console.log(
        `target at 50 connections: ≥ 0.85× bare Node proxy: ${vsBare.toFixed(2)}× (${met(vsBare >= 0.85)}); ` +
          `≥ 0.90× squid: ${squidRow ? `${vsSquid.toFixed(2)}× (${met(vsSquid >= 0.9)})` : 'no squid'}; ` +
          `p99 < 10 ms: ${at50.p99.toFixed(2)} ms (${met(at50.p99 < 10)})`,
      );
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

await main();
