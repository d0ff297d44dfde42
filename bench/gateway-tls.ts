// The HTTPS part of bench/gateway: small GETs over keep-alive HTTPS to one local upstream
// (bench/gateway-servers.ts, upstream-tls), side by side in the same run:
//
// - direct HTTPS, no proxy;
// - the bare Node forward proxy (bench/gateway-servers.ts) inspecting every tunnel: the floor of
//   what TLS interception costs in Node, without a token, a check or an audit row;
// - reins, a plain tunnel: the token grants the origin whole, so the CONNECT is spliced and TLS
//   runs end to end between the client and the upstream;
// - reins, an inspected tunnel: the token grants `GET …/small` only, so the gateway terminates
//   the client's TLS with a leaf from the interception CA, checks and audits every request, and
//   sends it on over its own verified, pooled TLS connection;
// - squid with ssl_bump (Debian's squid-openssl), the same interception, where it installs.
//
// Two measurements: requests/s and p50/p99 on reused connections (each connection makes its
// tunnel and handshake once, in the warm-up), and the time a new connection takes — CONNECT,
// TLS handshake, one request, its answer — measured one at a time, the leaf certificate already
// cached. The targets: inspected ≥ 60% of the plain tunnel's requests/s on reused connections
// (issue 7) and ≥ 0.85× the bare inspecting floor's at 50 connections (issue 13); a new
// inspected connection adding under 5 ms at p50 over a new plain one. The reins rows include the
// production path (the gateway on 1 and 2 threads) whenever bench/gateway starts it.
import net from 'node:net';
import tls from 'node:tls';
import { type buildConnector, Client } from 'undici';
import type { Child } from './gateway-children.ts';
import type { LoadTarget } from './gateway-load.ts';
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
import type { Squid } from './gateway-squid.ts';
import { type ReinsStats, UPSTREAM_HOST, UPSTREAM_PATH } from './gateway-wire.ts';
import { smoke, table } from './harness.ts';

export interface TlsBench {
  /** The HTTPS upstream's child: its URL (127.0.0.1) and the CA of its certificate. */
  readonly upstream: Child;
  /** The bare Node proxy: it inspects every tunnel, its certificates from `ready.caPem`. */
  readonly bare: Child;
  readonly reins: ReadonlyArray<{ readonly label: string; readonly child: Child }>;
  /** squid with ssl_bump, when it could be had. */
  readonly squid: Squid | undefined;
  readonly schedule: Schedule;
}

/** Connects straight to the upstream and does TLS with it. */
function directConnector(port: number, ca: string): buildConnector.connector {
  return (_options, callback) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: UPSTREAM_HOST,
      ca,
      ALPNProtocols: ['http/1.1'],
    });
    settle(socket, callback);
  };
}

/**
 * Sends `CONNECT authority` to the proxy, reads its answer, and does TLS inside the tunnel,
 * trusting `ca` (the upstream's for a plain tunnel, the interception CA for an inspected one).
 */
function tunnelConnector(
  proxy: string,
  authority: string,
  proxyAuthorization: string | undefined,
  ca: string,
): buildConnector.connector {
  const { hostname, port } = new URL(proxy);
  const credentials = proxyAuthorization ? `Proxy-Authorization: ${proxyAuthorization}\r\n` : '';
  const connect = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${credentials}\r\n`;
  return (_options, callback) => {
    const socket = net.connect({ host: hostname, port: Number(port), noDelay: true });
    let head = Buffer.alloc(0);
    const fail = (err: Error) => {
      socket.destroy();
      callback(err, null);
    };
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.off('error', fail);
      const status = head.subarray(0, head.indexOf('\r\n')).toString();
      if (!/^HTTP\/1\.[01] 200 /.test(status)) return fail(new Error(`CONNECT answered ${status}`));
      if (end + 4 !== head.length) return fail(new Error('the proxy sent bytes after its CONNECT answer'));
      settle(tls.connect({ socket, servername: UPSTREAM_HOST, ca, ALPNProtocols: ['http/1.1'] }), callback);
    };
    socket.once('connect', () => socket.write(connect));
    socket.on('data', onData);
    socket.once('error', fail);
  };
}

function settle(socket: tls.TLSSocket, callback: buildConnector.Callback): void {
  const onError = (err: Error) => {
    socket.destroy();
    callback(err, null);
  };
  socket.once('error', onError);
  socket.once('secureConnect', () => {
    socket.off('error', onError);
    callback(null, socket);
  });
}

interface TlsRow extends Row {
  /** Which reins (its label) this row goes through, and how; undefined for the others. */
  readonly reins?: { readonly label: string; readonly tunnel: 'plain' | 'inspected' };
}

const OPENING_WARM_UPS = 5;

interface Opening {
  readonly p50: number;
  readonly p99: number;
  readonly count: number;
}

/** New connections one at a time: connect (and tunnel), handshake, one GET, its answer, close. */
async function measureOpenings(target: LoadTarget, count: number): Promise<Opening> {
  const once = async (): Promise<number> => {
    const began = performance.now();
    const client = new Client(target.origin, { connect: target.connect, pipelining: 1 });
    try {
      const answer = await client.request({ method: 'GET', path: target.path, headers: target.headers(0) });
      await answer.body.dump();
      if (answer.statusCode !== 200) throw new Error(`${target.origin}: status ${answer.statusCode}`);
      return performance.now() - began;
    } finally {
      await client.destroy();
    }
  };
  // The first opening makes (and caches) the leaf certificate; a few more warm the code paths.
  for (let i = 0; i < OPENING_WARM_UPS; i++) await once();
  const times: number[] = [];
  for (let i = 0; i < count; i++) times.push(await once());
  times.sort((a, b) => a - b);
  const at = (p: number) => times[Math.min(times.length - 1, Math.ceil(p * times.length) - 1)] as number;
  return { p50: at(0.5), p99: at(0.99), count };
}

/** The rows of the HTTPS part, and the ones the others are compared with. */
interface TlsRows {
  readonly rows: readonly TlsRow[];
  readonly direct: TlsRow;
  readonly floor: TlsRow;
  readonly peer: TlsRow | undefined;
  /** The plain tunnel through the same reins as `r`. */
  plainOf(r: TlsRow): TlsRow | undefined;
}

function tlsRows(bench: TlsBench): TlsRows {
  const { upstream } = bench;
  const upstreamCa = upstream.ready.caPem;
  if (upstreamCa === undefined) throw new Error('the HTTPS upstream did not send its CA');
  const port = Number(new URL(upstream.ready.url).port);
  const authority = `${UPSTREAM_HOST}:${port}`;
  const target = (connect: buildConnector.connector): LoadTarget => ({
    origin: `https://${authority}`,
    path: UPSTREAM_PATH,
    headers: () => ({}),
    connect,
  });
  const through = (proxy: string, token: string | undefined, ca: string) =>
    target(tunnelConnector(proxy, authority, token === undefined ? undefined : `Bearer ${token}`, ca));

  const direct: TlsRow = row(
    'direct HTTPS (no proxy)',
    upstream.pid,
    target(directConnector(port, upstreamCa)),
  );
  const bareCa = bench.bare.ready.caPem;
  if (bareCa === undefined) throw new Error('the bare proxy did not send its CA');
  const floor: TlsRow = row(
    'bare Node proxy, inspecting (floor)',
    bench.bare.pid,
    through(bench.bare.ready.url, undefined, bareCa),
  );
  const rows: TlsRow[] = [direct, floor];
  for (const { label, child } of bench.reins) {
    const facts = child.ready.tls;
    if (facts === undefined) throw new Error(`reins (${label}) did not set up the HTTPS upstream`);
    const { url, unauditedUrl } = child.ready;
    rows.push(
      {
        ...row(`reins (${label}), plain tunnel`, child.pid, through(url, facts.wholeToken, upstreamCa)),
        reins: { label, tunnel: 'plain' },
      },
      {
        ...row(
          `reins (${label}), inspected tunnel`,
          child.pid,
          through(url, facts.scopedToken, facts.interceptionCaPem),
          true,
        ),
        reins: { label, tunnel: 'inspected' },
      },
    );
    // What the audit costs an inspected request (full runs, PGlite: as in the plain part).
    if (smoke || label !== 'PGlite' || !unauditedUrl) continue;
    rows.push(
      row(
        `reins (${label}), inspected tunnel, audit off (ablation)`,
        child.pid,
        through(unauditedUrl, facts.scopedToken, facts.interceptionCaPem),
      ),
    );
  }
  const { squid } = bench;
  const peer: TlsRow | undefined =
    squid?.caPem === undefined
      ? undefined
      : row(
          `${squid.version.replace(/^Squid Cache: Version /, 'squid ')}, ssl_bump`,
          squid.pid,
          through(squid.url, undefined, squid.caPem),
        );
  if (peer) rows.push(peer);
  const plainOf = (r: TlsRow) =>
    rows.find((other) => other.reins?.label === r.reins?.label && other.reins?.tunnel === 'plain');
  return { rows, direct, floor, peer, plainOf };
}

/** The connections at which the inspected tunnel is held to the bare inspecting floor (issue 13). */
const FLOOR_TARGET_CONNECTIONS = 50;

export async function runTlsBench(bench: TlsBench): Promise<void> {
  const { schedule } = bench;
  const { rows, direct, floor, peer, plainOf } = tlsRows(bench);
  const statsBefore = new Map<string, ReinsStats>();
  for (const { label, child } of bench.reins) statsBefore.set(label, await child.stats());

  await measureRows(rows, schedule);
  const inspected = (r: TlsRow, text: string) => (r.reins?.tunnel === 'inspected' ? text : '–');
  const lines = tableLines(rows, schedule.concurrency, (r: TlsRow, connections) => [
    ratio(r, direct, connections),
    inspected(r, ratio(r, plainOf(r), connections)),
    inspected(r, ratio(r, floor, connections)),
    inspected(r, ratio(r, peer, connections)),
  ]);
  const { seconds, warmSeconds, rounds } = schedule;
  console.log(
    `\n#### bench/gateway: small GET over keep-alive HTTPS, reused connections (${seconds} s per cell after ${warmSeconds} s warm-up, ${rounds === 1 ? 'one round' : `median of ${rounds} rounds`})\n`,
  );
  const ratios = ['vs direct HTTPS', 'vs plain tunnel', 'vs bare inspecting', 'vs squid ssl_bump'];
  console.log(
    table(['path', 'connections', 'requests', ...ratios, 'p50', 'p99', 'proxy CPU/request'], lines),
  );

  // New connections, one at a time, every row after the other.
  const count = smoke ? 5 : 300;
  const openings = new Map<TlsRow, Opening>();
  for (const r of rows) {
    if (!chosen(r, schedule)) continue;
    openings.set(r, await measureOpenings(r.target, count));
    r.sent += OPENING_WARM_UPS + count;
  }
  const addedOf = (r: TlsRow): number | undefined => {
    const mine = openings.get(r);
    const plain = r.reins?.tunnel === 'inspected' ? plainOf(r) : undefined;
    const theirs = plain && openings.get(plain);
    return mine && theirs ? mine.p50 - theirs.p50 : undefined;
  };
  const openingLines = [...openings].map(([r, o]) => {
    const added = addedOf(r);
    return [
      r.name,
      `${o.p50.toFixed(2)} ms`,
      `${o.p99.toFixed(2)} ms`,
      added === undefined ? '–' : `${added.toFixed(2)} ms`,
    ];
  });
  console.log(
    `\n#### bench/gateway: a new HTTPS connection (CONNECT, TLS handshake, one GET; ${count} one after another, leaf certificate cached)\n`,
  );
  console.log(table(['path', 'p50', 'p99', 'added over a new plain tunnel (p50)'], openingLines));
  console.log('');

  await reportAudit(bench, rows, statsBefore);
  for (const r of rows) {
    if (r.reins?.tunnel !== 'inspected') continue;
    const plain = plainOf(r);
    for (const connections of schedule.concurrency) {
      const value = plain && share(r, plain, connections);
      console.log(
        `target, ${r.name}, ${connections} connections: ≥ 0.60× the plain tunnel: ` +
          verdict(value, `${value?.toFixed(2)}×`, (value ?? 0) >= 0.6),
      );
    }
    const added = addedOf(r);
    console.log(
      `target, ${r.name}, a new connection adds < 5 ms at p50 over a new plain tunnel: ` +
        verdict(added, `${added?.toFixed(2)} ms`, (added ?? Number.POSITIVE_INFINITY) < 5),
    );
    const vsFloor = share(r, floor, FLOOR_TARGET_CONNECTIONS);
    console.log(
      `target, ${r.name}, ${FLOOR_TARGET_CONNECTIONS} connections: ≥ 0.85× the bare inspecting floor: ` +
        verdict(vsFloor, `${vsFloor?.toFixed(2)}×`, (vsFloor ?? 0) >= 0.85),
    );
  }
}

/** Every inspected request leaves an audit row (and every tunnel one more): checks it. */
async function reportAudit(
  bench: TlsBench,
  rows: readonly TlsRow[],
  statsBefore: ReadonlyMap<string, ReinsStats>,
): Promise<void> {
  for (const { label, child } of bench.reins) {
    const before = statsBefore.get(label);
    const after = await child.stats();
    const written = after.auditRows - (before?.auditRows ?? 0);
    const statements = after.auditStatements - (before?.auditStatements ?? 0);
    const inspected = rows
      .filter((r) => r.audited && r.reins?.label === label)
      .reduce((n, r) => n + r.sent, 0);
    console.log(
      `reins (${label}): ${written} audit rows written in the HTTPS part for ${inspected} inspected requests ` +
        `(${written >= inspected ? 'none missing' : 'SOME MISSING'}; the rest are one per tunnel), ` +
        `${(written / Math.max(1, statements)).toFixed(1)} rows per INSERT`,
    );
  }
}
