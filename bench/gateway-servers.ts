// The servers of bench/gateway, each run in a child process of its own (this file, forked with
// BENCH_GATEWAY_SERVE set), so that none shares an event loop with the load generator or with
// another server:
//
// - upstream: the one local origin every row reaches; GET /small answers 64 bytes, keep-alive.
// - upstream-tls: the same over HTTPS, its certificate for UPSTREAM_HOST from a throwaway CA
//   made at start (handed to the others as REINS_GATEWAY_UPSTREAM_CA would be).
// - bare: the floor of what a forward proxy written in Node costs: parse the absolute-form
//   target, look the name up in a fixed table, send it on over a keep-alive agent, pipe back.
//   No token, no policy, no audit. A CONNECT is always inspected: TLS terminated with one
//   certificate made at start, each request inside sent on over a pooled, verified TLS connection.
// - reins: the gateway assembled as `reins serve` runs it (test/gateway/support.ts, plus the
//   production logger and metrics): PGlite in memory (or PostgreSQL: BENCH_GATEWAY_DB=pg), the
//   authorization server issuing the tokens, the live state, the audit writer on the same
//   database with its JSON lines written (to /dev/null), a token cache of the default size. Two
//   more listeners on the same state: one with a one-entry token cache (every request verifies
//   an ES256 signature), and one whose audit events go nowhere (an ablation: what audit costs).
//   Given the HTTPS upstream, the first listener also tunnels to it: two more agents, one granted
//   that origin whole (plain tunnels) and one granted `GET …/small` (inspected tunnels), with the
//   interception CA made as the first `reins serve` makes it and the upstream CA trusted.
// - reins on gateway threads (BENCH_GATEWAY_THREADS=<n>): the production path, as
//   src/runtime/gateway.ts wires it for REINS_GATEWAY_WORKERS=<n>: startGatewayWorkers, n threads
//   on one port, fed the live state, the key set and the interception CA by the main thread, which
//   writes the audit rows (with their spool), the log line and the metrics of every exchange the
//   threads send back. PGlite runs in a thread of its own there, as `reins serve` opens it. One
//   listener, the token cached; no TLS upstream. With BENCH_GATEWAY_MONITORING=1, the policy has
//   every detection on and a budget on every agent, and the process runs the monitoring watcher
//   and the budget meter (the meter runs in every threaded reins, as in production).
//
// The child tells its parent what it listens on over IPC, answers `stats`, and stops when the
// parent disconnects.
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, TLSSocket } from 'node:tls';
import pino from 'pino';
import { Registry } from 'prom-client';
import { type Opening, parseOpening } from '../src/egress/index.ts';
import { AuditWriter, type AuditWriterOptions, observeAudit, observeLog } from '../src/gateway/audit.ts';
import { AuditSpool } from '../src/gateway/audit-spool.ts';
import { BudgetMeter, observeBudgets } from '../src/gateway/budget.ts';
import {
  ensureInterceptionCa,
  exportTrustBundle,
  LeafCache,
  loadSigningCa,
  portableSigningCa,
} from '../src/gateway/ca/index.ts';
import { ExchangeStream } from '../src/gateway/events.ts';
import { LiveState } from '../src/gateway/live-state.ts';
import { gatewayMetrics, observeMetrics } from '../src/gateway/metrics.ts';
import { type Gateway, startGateway } from '../src/gateway/proxy.ts';
import { tableResolver } from '../src/gateway/resolve.ts';
import { localKeys, TokenVerifier } from '../src/gateway/token.ts';
import { observedExchanges } from '../src/runtime/gateway.ts';
import { startGatewayWorkers } from '../src/runtime/gateway-workers.ts';
import { createLogger } from '../src/runtime/logger.ts';
import { MonitoringWatcher } from '../src/runtime/monitoring.ts';
import { loadPublicJwks } from '../src/server/keys/index.ts';
import type { Db } from '../src/store/db.ts';
import { openPglite } from '../src/store/pglite.ts';
import { openPgliteWorker } from '../src/store/pglite-worker.ts';
import { makeCa } from '../test/gateway/tls-support.ts';
import { sourcesOf, yaml } from '../test/policy/support.ts';
import {
  type AuthServer,
  basic,
  GATEWAY,
  requestToken,
  startAuthServer,
} from '../test/server/provider/support.ts';
import { openPgInFreshSchema, type TestBackend } from '../test/support/db.ts';
import {
  type ReinsStats,
  type ReinsTls,
  type Role,
  type ServeMessage,
  UNCACHED_TOKENS,
  UPSTREAM_BODY_BYTES,
  UPSTREAM_HOST,
  UPSTREAM_PATH,
} from './gateway-wire.ts';

const AGENT = 'bench-agent';
/** Granted the HTTPS upstream whole: plain tunnels. */
const WHOLE_AGENT = 'bench-agent-whole';
/** Granted one method and path on it: inspected tunnels. */
const SCOPED_AGENT = 'bench-agent-scoped';
const SECRET = 'bench-agent-secret-used-only-in-the-benchmark';
const SECRET_ENV = 'BENCH_GATEWAY_AGENT_SECRET';

function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => (server.address() as AddressInfo).port);
}

function send(message: ServeMessage): void {
  process.send?.(message);
}

// ---------------------------------------------------------------- upstream

const SMALL_BODY = Buffer.alloc(UPSTREAM_BODY_BYTES, 'x');

/** The upstream's one answer: 64 bytes for UPSTREAM_PATH, a 404 otherwise. */
function answerSmall(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  res.writeHead(req.url === UPSTREAM_PATH ? 200 : 404, {
    'content-type': 'text/plain',
    'content-length': SMALL_BODY.length,
  });
  res.end(SMALL_BODY);
}

async function serveUpstream(): Promise<() => Promise<void>> {
  const server = http.createServer(answerSmall);
  server.keepAliveTimeout = 60_000;
  const port = await listen(server);
  send({ kind: 'ready', url: `http://127.0.0.1:${port}` });
  return () => closeServer(server);
}

async function serveUpstreamTls(): Promise<() => Promise<void>> {
  const ca = await makeCa('reins bench upstream CA');
  const { certPem, keyPem } = await ca.issue(UPSTREAM_HOST);
  const server = https.createServer({ cert: certPem, key: keyPem, ALPNProtocols: ['http/1.1'] }, answerSmall);
  server.keepAliveTimeout = 60_000;
  const port = await listen(server);
  send({ kind: 'ready', url: `https://127.0.0.1:${port}`, caPem: ca.certPem });
  return () => closeServer(server);
}

// ---------------------------------------------------------------- bare Node forward proxy

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'upgrade'];

function withoutHopByHop(headers: IncomingMessage['headers']): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ...headers };
  for (const name of HOP_BY_HOP) delete out[name];
  return out;
}

async function serveBare(): Promise<() => Promise<void>> {
  const hosts: Record<string, string> = { [UPSTREAM_HOST]: '127.0.0.1' };
  const options = { keepAlive: true, maxSockets: 256, maxFreeSockets: 64 };
  const agent = new http.Agent(options);
  // Upstream TLS verified against the bench's upstream CA, given as one context (forward.ts).
  const upstreamCa = process.env.BENCH_GATEWAY_UPSTREAM_CA;
  const tlsAgent = new https.Agent({
    ...options,
    secureContext: upstreamCa ? createSecureContext({ ca: upstreamCa }) : undefined,
  });
  const relay = (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const address = hosts[url.hostname];
    if (address === undefined) {
      res.writeHead(403).end();
      return;
    }
    const tls = url.protocol === 'https:';
    const upstream = (tls ? https : http).request(
      {
        host: address,
        port: url.port || (tls ? 443 : 80),
        method: req.method,
        path: url.pathname + url.search,
        headers: withoutHopByHop(req.headers),
        agent: tls ? tlsAgent : agent,
        servername: tls ? url.hostname : undefined,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, withoutHopByHop(answer.headers));
        answer.pipe(res);
      },
    );
    upstream.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
    req.pipe(upstream);
  };
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (url.protocol !== 'http:') res.writeHead(403).end();
    else relay(req, res, url);
  });
  server.keepAliveTimeout = 60_000;
  // CONNECT: always inspected, with one certificate for UPSTREAM_HOST made at start; each request
  // inside goes on to the CONNECT origin. No token, no check, no audit.
  const ca = await makeCa('reins bench bare inspecting CA');
  const leaf = await ca.issue(UPSTREAM_HOST);
  const context = createSecureContext({ cert: leaf.certPem, key: leaf.keyPem });
  const inner = http.createServer((req, res) => {
    const authority = (req.socket as TLSSocket & { authority?: string }).authority;
    relay(req, res, new URL(`https://${authority}${req.url ?? '/'}`));
  });
  inner.keepAliveTimeout = 60_000;
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) socket.unshift(head);
    const tls = new TLSSocket(socket, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ['http/1.1'],
    });
    Object.assign(tls, { authority: req.url });
    tls.on('error', () => socket.destroy());
    inner.emit('connection', tls);
  });
  const port = await listen(server);
  send({ kind: 'ready', url: `http://127.0.0.1:${port}`, caPem: ca.certPem });
  return async () => {
    await closeServer(server);
    agent.destroy();
    tlsAgent.destroy();
  };
}

// ---------------------------------------------------------------- reins

/** The HTTPS upstream, when the benchmark started one. */
interface TlsUpstream {
  readonly port: number;
  readonly caPem: string;
}

/**
 * With `monitored` (BENCH_GATEWAY_MONITORING=1): every detection on (alerts only, so a finding
 * never stops the load) and a budget on every agent too high to be reached, so that the rows
 * measure what learning, detecting and counting cost a request.
 */
function benchPolicy(
  upstreamPort: number,
  tls: TlsUpstream | undefined,
  monitored = false,
): Record<string, string> {
  const agent = (name: string, rule: string) => [
    `  ${name}:`,
    `    auth: { method: client_secret_basic, secret_env: ${SECRET_ENV} }`,
    `    egress: ["${rule}"]`,
    '    token_ttl: 3600',
    ...(monitored ? ['    budget: { requests_per_minute: 1000000000, bytes_out_per_hour: 1000GB }'] : []),
  ];
  const monitoring = monitored
    ? [
        'monitoring:',
        '  learning_period: 1h',
        '  detections:',
        '    new_destination: { response: alert }',
        '    destination_burst: { new_hosts: 5, within: 1m, response: alert }',
        '    denial_spike: { denials: 20, within: 1m, response: alert }',
        '    bytes_out_spike: { factor: 10, within: 5m, response: alert }',
        '    forbidden_address: { response: alert }',
        '    new_method: { response: alert }',
      ]
    : [];
  const origin = tls && `https://${UPSTREAM_HOST}:${tls.port}`;
  return {
    'bench.yaml': yaml(
      'tenant: bench',
      'settings:',
      '  max_token_ttl: 3600',
      ...monitoring,
      'agents:',
      ...agent(AGENT, `GET http://${UPSTREAM_HOST}:${upstreamPort}/`),
      ...(origin
        ? [...agent(WHOLE_AGENT, `${origin}/`), ...agent(SCOPED_AGENT, `GET ${origin}${UPSTREAM_PATH}`)]
        : []),
    ),
  };
}

function tlsUpstream(): TlsUpstream | undefined {
  const port = Number(process.env.BENCH_GATEWAY_TLS_PORT);
  const caPem = process.env.BENCH_GATEWAY_UPSTREAM_CA;
  return port > 0 && caPem ? { port, caPem } : undefined;
}

/** The gateway may reach 127.0.0.1 on these ports only (REINS_GATEWAY_ALLOW_PRIVATE). */
function openingsFor(ports: readonly number[]): Opening[] {
  return ports.map((port) => {
    const opening = parseOpening(`127.0.0.1/32:${port}`);
    if (!opening.ok) throw new Error(opening.error.message);
    return opening.opening;
  });
}

/** A client_credentials token for one of the bench's agents, from the authorization server. */
async function tokenOf(auth: AuthServer, agent: string): Promise<string> {
  const { status, body } = await requestToken(
    auth,
    { grant_type: 'client_credentials' },
    basic(agent, SECRET),
  );
  if (status !== 200) throw new Error(`token endpoint answered ${status}: ${JSON.stringify(body)}`);
  return String(body.access_token);
}

/** Rows in audit_events. */
async function auditRowsIn(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: string | number }>('select count(*) as n from audit_events');
  return Number(rows[0]?.n ?? 0);
}

/** The audit writer, its INSERT statements counted: rows per INSERT is what the audit costs hinges on. */
function countedWriter(
  db: Db,
  log: ReturnType<typeof createLogger>,
  options: AuditWriterOptions = {},
): { audit: AuditWriter; statements: () => number } {
  let statements = 0;
  const counted = {
    query: <R>(sql: string, params?: readonly unknown[]) => {
      statements++;
      return db.query<R>(sql, params);
    },
  };
  return { audit: new AuditWriter(counted, log, options), statements: () => statements };
}

/** Answers the parent's `stats` with what `read` finds. */
/** The tokens and the interception CA the HTTPS rows use, when there is an HTTPS upstream. */
async function tlsFactsOf(auth: AuthServer, tls: TlsUpstream | undefined): Promise<ReinsTls | undefined> {
  return (
    tls && {
      wholeToken: await tokenOf(auth, WHOLE_AGENT),
      scopedToken: await tokenOf(auth, SCOPED_AGENT),
      interceptionCaPem: (await exportTrustBundle(auth.db, new Date())).pem,
    }
  );
}

function answerStats(read: () => Promise<ReinsStats>): void {
  process.on('message', (message: unknown) => {
    if (message !== 'stats') return;
    void read().then((stats) => send({ kind: 'stats', stats }));
  });
}

/** Resolves once `done()` holds, or after ten seconds. */
async function until(done: () => boolean): Promise<void> {
  for (let waited = 0; !done() && waited < 10_000; waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function serveReins(upstreamPort: number, backend: TestBackend): Promise<() => Promise<void>> {
  process.env[SECRET_ENV] = SECRET;
  const tls = tlsUpstream();
  const auth = await startAuthServer(backend, sourcesOf(benchPolicy(upstreamPort, tls)));
  const { db } = auth;
  const log = createLogger('info', pino.destination({ dest: '/dev/null', sync: false }));
  const live = await LiveState.open(db);
  const { audit, statements } = countedWriter(db, log);
  const metrics = gatewayMetrics(new Registry(), () => audit.depth);
  const openings = openingsFor([upstreamPort, ...(tls ? [tls.port] : [])]);
  // As src/runtime/gateway.ts makes and loads it.
  await ensureInterceptionCa(db, { now: new Date(), warn: () => undefined });
  const leaves = new LeafCache(await loadSigningCa(db, { now: new Date() }));
  // Counted: bench/gateway-kids shows how many reads a flood of unknown key ids costs.
  let keyReads = 0;
  const keys = localKeys(() => {
    keyReads++;
    return loadPublicJwks(db);
  });
  // As src/runtime/gateway.ts builds it, token cache metrics included.
  const verifierOptions = {
    issuer: auth.url,
    audience: GATEWAY,
    keys,
    onLookup: (result: 'hit' | 'miss') => metrics.tokenCache.inc({ result }),
  };
  const verifiers = {
    cached: new TokenVerifier(verifierOptions),
    uncached: new TokenVerifier({ ...verifierOptions, maxEntries: 1 }),
  };
  // As src/runtime/gateway.ts wires it: the row, the log line and the metrics follow the stream.
  const observed = (): ExchangeStream => {
    const events = new ExchangeStream();
    observeAudit(events, audit);
    observeLog(events, log);
    observeMetrics(events, metrics);
    return events;
  };
  const gatewayWith = (verifier: TokenVerifier, events: ExchangeStream = observed()): Promise<Gateway> =>
    startGateway({
      host: '127.0.0.1',
      port: 0,
      verifier,
      live,
      openings,
      resolve: tableResolver({ [UPSTREAM_HOST]: ['127.0.0.1'] }),
      events,
      upstreamCa: tls?.caPem,
      interceptor: leaves,
    });
  const cached = await gatewayWith(verifiers.cached);
  const uncached = await gatewayWith(verifiers.uncached);
  // The ablation: the same gateway with the audit event dropped (no log line, no row).
  const unobserved = new ExchangeStream();
  observeMetrics(unobserved, metrics);
  const unaudited = await gatewayWith(verifiers.cached, unobserved);

  const tokens: string[] = [];
  for (let i = 0; i < UNCACHED_TOKENS; i++) tokens.push(await tokenOf(auth, AGENT));
  const tlsFacts = await tlsFactsOf(auth, tls);

  answerStats(async () => {
    await until(() => audit.depth === 0);
    return {
      cached: { hits: verifiers.cached.hits, misses: verifiers.cached.misses },
      uncached: { hits: verifiers.uncached.hits, misses: verifiers.uncached.misses },
      auditRows: await auditRowsIn(db),
      auditStatements: statements(),
      keyReads,
    };
  });
  send({
    kind: 'ready',
    url: cached.url,
    uncachedUrl: uncached.url,
    unauditedUrl: unaudited.url,
    tokens,
    tls: tlsFacts,
  });
  return async () => {
    await cached.close();
    await uncached.close();
    await unaudited.close();
    await audit.drain();
    await live.close();
    await auth.close();
    log.flush();
  };
}

/**
 * reins as `reins serve` runs it with REINS_GATEWAY_WORKERS=`count`, wired as
 * src/runtime/gateway.ts wires it (the tokens and the policy as serveReins makes them). A process
 * of its own per thread count, so that the CPU time charged to its rows is that of this gateway
 * alone, and its main thread does what production's does and nothing more: the authorization
 * server, the live state, the key set, the audit writer, the log line and the metrics.
 */
async function serveReinsThreaded(
  upstreamPort: number,
  backend: TestBackend,
  count: number,
  monitored: boolean,
): Promise<() => Promise<void>> {
  process.env[SECRET_ENV] = SECRET;
  const tls = tlsUpstream();
  const auth = await startAuthServer(backend, sourcesOf(benchPolicy(upstreamPort, tls, monitored)));
  const { db } = auth;
  const log = createLogger('info', pino.destination({ dest: '/dev/null', sync: false }));
  await ensureInterceptionCa(db, { now: new Date(), warn: () => undefined });
  const ca = portableSigningCa(await loadSigningCa(db, { now: new Date() }));
  const live = await LiveState.open(db, {
    onError: (err: unknown) => log.warn({ err }, 'could not refresh the gateway state'),
  });
  // Production keeps the spool in the data directory; here, a directory removed at the end.
  const spoolDir = await mkdtemp(join(tmpdir(), 'reins-bench-spool-'));
  const spool = await AuditSpool.open(spoolDir);
  const { audit, statements } = countedWriter(db, log, {
    onError: (err: unknown) => log.warn({ err }, 'could not write audit rows (they are kept and retried)'),
    spool,
  });
  const registry = new Registry();
  const { events, metrics } = observedExchanges(audit, log, registry);
  // As src/runtime/gateway.ts: budgets count from the stream (agents have one only when monitored).
  const budgets = new BudgetMeter(db, live);
  observeBudgets(events, budgets);
  budgets.start();
  // As `reins serve`: monitoring reads the audit trail in the server's process (this one).
  const monitoring = monitored ? new MonitoringWatcher({ db, log }) : null;
  monitoring?.start();
  // The threads' token cache lookups, as they report them: the stats' `cached`.
  const lookups = { hits: 0, misses: 0 };
  let keyReads = 0;
  // When the last exchange arrived from a thread: a thread sends its batch after answering, so
  // the stats wait until the threads have been quiet for a moment, then for the writer.
  let lastExchangeAt = 0;
  events.subscribe(() => {
    lastExchangeAt = performance.now();
    return undefined;
  });
  const workers = await startGatewayWorkers({
    count,
    settings: {
      host: '127.0.0.1',
      port: 0,
      issuer: auth.url,
      audience: GATEWAY,
      openings: openingsFor([upstreamPort, ...(tls ? [tls.port] : [])]),
      upstreamCa: tls?.caPem,
      intercept: 'auto',
      limits: {},
      ca,
      hosts: { [UPSTREAM_HOST]: ['127.0.0.1'] },
    },
    live,
    loadKeys: () => {
      keyReads++;
      return loadPublicJwks(db);
    },
    events,
    onLookup: (result, n) => {
      lookups[result === 'hit' ? 'hits' : 'misses'] += n;
      metrics.tokenCache.inc({ result }, n);
    },
    registry,
    log,
  });
  if (workers.serving !== count) throw new Error(`${workers.serving} gateway threads serving, not ${count}`);
  const tokens = [await tokenOf(auth, AGENT)];
  const tlsFacts = await tlsFactsOf(auth, tls);

  answerStats(async () => {
    await until(() => audit.depth === 0 && performance.now() - lastExchangeAt > 100);
    return {
      cached: { ...lookups },
      uncached: { hits: 0, misses: 0 },
      auditRows: await auditRowsIn(db),
      auditStatements: statements(),
      keyReads,
    };
  });
  send({ kind: 'ready', url: `http://127.0.0.1:${workers.port}`, tokens, tls: tlsFacts });
  return async () => {
    // As src/runtime/gateway.ts stops it: every thread publishes what it began, then the audit
    // queue is drained.
    await workers.close();
    await budgets.close();
    await audit.drain();
    await monitoring?.stop();
    await spool.close();
    await live.close();
    await auth.close();
    log.flush();
    await rm(spoolDir, { recursive: true, force: true });
  };
}

// ---------------------------------------------------------------- child entry

async function closeServer(server: http.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

/**
 * PGlite in memory (in a thread of its own for the threaded gateway, as `reins serve` opens it),
 * or a fresh schema (dropped at the end) of BENCH_DATABASE_URL / DATABASE_URL.
 */
function backend(threaded: boolean): TestBackend {
  if (process.env.BENCH_GATEWAY_DB !== 'pg') {
    return { name: 'pglite', open: () => (threaded ? openPgliteWorker('memory') : openPglite('memory')) };
  }
  const url = process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL;
  if (!url) throw new Error('no BENCH_DATABASE_URL or DATABASE_URL');
  return { name: 'pg', open: () => openPgInFreshSchema(url) };
}

async function serve(role: Role): Promise<void> {
  let stop: () => Promise<void>;
  if (role === 'upstream') stop = await serveUpstream();
  else if (role === 'upstream-tls') stop = await serveUpstreamTls();
  else if (role === 'bare') stop = await serveBare();
  else {
    const upstreamPort = Number(process.env.BENCH_GATEWAY_UPSTREAM_PORT);
    const threads = Number(process.env.BENCH_GATEWAY_THREADS) || 0;
    stop =
      threads > 0
        ? await serveReinsThreaded(
            upstreamPort,
            backend(true),
            threads,
            process.env.BENCH_GATEWAY_MONITORING === '1',
          )
        : await serveReins(upstreamPort, backend(false));
  }
  if (process.connected) await once(process, 'disconnect');
  await stop();
}

const role = process.env.BENCH_GATEWAY_SERVE as Role | undefined;
if (role) {
  await serve(role).catch((err: unknown) => {
    send({ kind: 'error', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exitCode = 1;
  });
}
