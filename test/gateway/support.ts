// A whole gateway on ephemeral ports for end-to-end tests: a migrated database with a policy
// made for the test's local upstream, the authorization server issuing real tokens, the live
// state, the audit writer, and the proxy with a fixed resolver (no lookup leaves the machine).
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type JWK, SignJWT } from 'jose';
import pino from 'pino';
import { parseOpening } from '../../src/egress/index.ts';
import { AuditWriter, observeAudit } from '../../src/gateway/audit.ts';
import { BudgetMeter, type BudgetMeterOptions, observeBudgets } from '../../src/gateway/budget.ts';
import type { Resolver } from '../../src/gateway/check.ts';
import { ExchangeStream } from '../../src/gateway/events.ts';
import type { InterceptMode, Interceptor } from '../../src/gateway/inspect.ts';
import { LiveState } from '../../src/gateway/live-state.ts';
import { type GatewayMetrics, observeMetrics } from '../../src/gateway/metrics.ts';
import { type Gateway, type GatewayLimits, startGateway } from '../../src/gateway/proxy.ts';
import { tableResolver } from '../../src/gateway/resolve.ts';
import { localKeys, TokenVerifier } from '../../src/gateway/token.ts';
import { loadKeys, loadPublicJwks } from '../../src/server/keys/index.ts';
import type { Db } from '../../src/store/db.ts';
import { sourcesOf, yaml } from '../policy/support.ts';
import {
  type AuthServer,
  applySources,
  basic,
  GATEWAY,
  requestToken,
  startAuthServer,
} from '../server/provider/support.ts';
import type { TestBackend } from '../support/db.ts';

export const WORKER_SECRET = 'worker-secret-for-gateway-tests';
export const WORKER_ENV = 'XG_WORKER_SECRET';

/** What the upstream saw: every request, with its body's digest. */
export interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly bodyBytes: number;
  readonly bodySha256: string;
}

export interface Upstream {
  readonly port: number;
  readonly seen: Seen[];
  /** TCP connections accepted: a refused request must not have opened one. */
  readonly connections: () => number;
  close(): Promise<void>;
}

/** Echoes the request body back, and says what it received in headers. */
export async function startUpstream(): Promise<Upstream> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      chunks.push(chunk);
    });
    req.on('end', () => {
      const digest = hash.digest('hex');
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bodyBytes: bytes,
        bodySha256: digest,
      });
      if (req.url?.startsWith('/v1/redirect')) {
        res.writeHead(302, { location: 'http://elsewhere.test/' });
        res.end();
        return;
      }
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'x-upstream-saw-bytes': String(bytes),
        'x-upstream-saw-sha256': digest,
      });
      res.end(Buffer.concat(chunks));
    });
  });
  let connections = 0;
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    connections: () => connections,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * acme's `worker` may GET/POST api.test/v1, use whole.test entirely, and is granted addresses the
 * gateway must still refuse (loopback and metadata literals on ports nobody opened, a name that
 * resolves privately). globex owns owned.globex.test and federates nothing.
 */
export function gatewayPolicy(port: number, extraEgress: readonly string[] = []): Record<string, string> {
  return {
    'acme.yaml': yaml(
      'tenant: acme',
      'integrations:',
      `  api: ["GET,POST http://api.test:${port}/v1/"]`,
      'agents:',
      '  worker:',
      `    auth: { method: client_secret_basic, secret_env: ${WORKER_ENV} }`,
      '    egress:',
      '      - api',
      `      - http://whole.test:${port}/`,
      `      - https://whole.test:${port}/`,
      `      - http://removable.test:${port}/`,
      `      - http://internal.test:${port}/`,
      `      - http://owned.globex.test:${port}/`,
      '      - http://127.0.0.0/8/',
      '      - https://127.0.0.0/8/',
      '      - http://169.254.169.254/',
      ...extraEgress.map((rule) => `      - "${rule}"`),
      '    token_ttl: 300',
    ),
    'globex.yaml': yaml('tenant: globex', 'owns:', `  - http://owned.globex.test:${port}/`),
  };
}

/** An event stream whose every exchange the audit writer records (as src/runtime/gateway.ts wires it). */
export function auditedStream(audit: AuditWriter): ExchangeStream {
  const events = new ExchangeStream();
  observeAudit(events, audit);
  return events;
}

export interface Harness {
  readonly auth: AuthServer;
  readonly gateway: Gateway;
  readonly live: LiveState;
  readonly audit: AuditWriter;
  readonly upstream: Upstream;
  /** http://127.0.0.1:<gateway port> */
  readonly proxyUrl: string;
  workerToken(): Promise<string>;
  /** A token signed with the server's key, with claims changed (expired, other audience…). */
  forgedToken(claims: Record<string, unknown>): Promise<string>;
  applyPolicy(files: Record<string, string>): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** More rules for `worker`, given the HTTP upstream's port. */
  readonly extraEgress?: (port: number) => readonly string[];
  /** More names for the resolver. */
  readonly hosts?: Readonly<Record<string, readonly string[]>>;
  /** Wraps the resolver (to hold a lookup open); gets the fixed one to answer with. */
  readonly resolveWith?: (name: string, table: Resolver) => Promise<readonly string[]>;
  /** More operator openings (e.g. another upstream's port). */
  readonly openings?: readonly string[];
  readonly intercept?: InterceptMode;
  readonly interceptor?: Interceptor;
  readonly upstreamCa?: string;
  /** Smaller limits (timeouts) than the defaults. */
  readonly limits?: Partial<GatewayLimits>;
  readonly metrics?: GatewayMetrics;
  /** Count budgets (budget.ts) with these options; `db` replaces the meter's database (to fail it). */
  readonly budgets?: BudgetMeterOptions & { readonly db?: Db };
}

export async function startHarness(backend: TestBackend, options: HarnessOptions = {}): Promise<Harness> {
  process.env[WORKER_ENV] = WORKER_SECRET;
  const upstream = await startUpstream();
  const extra = options.extraEgress?.(upstream.port) ?? [];
  const auth = await startAuthServer(backend, sourcesOf(gatewayPolicy(upstream.port, extra)));
  const { db } = auth;
  const beside = await startGatewayOn(db, auth.url, upstream.port, options);
  const { gateway, live, audit } = beside;
  const signing = (await loadKeys(db, undefined)).signing[0];
  if (signing === undefined) throw new Error('no signing key');
  return {
    auth,
    gateway,
    live,
    audit,
    upstream,
    proxyUrl: gateway.url,
    async workerToken() {
      const { status, body } = await requestToken(
        auth,
        { grant_type: 'client_credentials' },
        basic('worker', WORKER_SECRET),
      );
      if (status !== 200) throw new Error(JSON.stringify(body));
      return String(body.access_token);
    },
    async forgedToken(claims) {
      const now = Math.floor(Date.now() / 1000);
      const base = {
        client_id: 'worker',
        tenant: 'acme',
        authorization_details: [{ type: 'egress', locations: [`http://api.test:${upstream.port}/v1`] }],
      };
      return new SignJWT({ ...base, ...claims })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: signing.kid })
        .setIssuer(auth.url)
        .setSubject(String(claims.sub ?? 'worker'))
        .setAudience(String(claims.aud ?? GATEWAY))
        .setJti(crypto.randomUUID())
        .setIssuedAt(now - 60)
        .setExpirationTime(Number(claims.exp ?? now + 300))
        .sign(signing.privateJwk as JWK);
    },
    async applyPolicy(files) {
      await applySources(db, sourcesOf(files));
    },
    async close() {
      await beside.close();
      await auth.close();
      await upstream.close();
    },
  };
}

/** A gateway with its own live state, event stream and audit writer: what one gateway process has. */
export interface GatewayBeside {
  readonly gateway: Gateway;
  readonly live: LiveState;
  readonly audit: AuditWriter;
  readonly budgets: BudgetMeter | null;
  close(): Promise<void>;
}

/**
 * Starts a gateway on `db` that verifies tokens of the server at `issuer`: the harness's own, or
 * a second one beside it (two gateway processes on one database). With `options.budgets`, a
 * budget meter counts its exchanges as src/runtime/gateway.ts wires one.
 */
export async function startGatewayOn(
  db: Db,
  issuer: string,
  upstreamPort: number,
  options: HarnessOptions = {},
): Promise<GatewayBeside> {
  const live = await LiveState.open(db, { pollMs: 100 });
  const audit = new AuditWriter(db, pino({ level: 'silent' }));
  const events = new ExchangeStream();
  observeAudit(events, audit);
  if (options.metrics !== undefined) observeMetrics(events, options.metrics);
  const budgets =
    options.budgets === undefined ? null : new BudgetMeter(options.budgets.db ?? db, live, options.budgets);
  if (budgets !== null) {
    observeBudgets(events, budgets);
    budgets.start();
  }
  const verifier = new TokenVerifier({
    issuer,
    audience: GATEWAY,
    keys: localKeys(() => loadPublicJwks(db)),
  });
  const openings = [`127.0.0.1/32:${upstreamPort}`, ...(options.openings ?? [])].map((text) => {
    const parsed = parseOpening(text);
    if (!parsed.ok) throw new Error(parsed.error.message);
    return parsed.opening;
  });
  const table = tableResolver({
    'api.test': ['127.0.0.1'],
    'whole.test': ['127.0.0.1'],
    'removable.test': ['127.0.0.1'],
    'internal.test': ['10.0.0.5'],
    'owned.globex.test': ['127.0.0.1'],
    ...options.hosts,
  });
  const gateway = await startGateway({
    host: '127.0.0.1',
    port: 0,
    verifier,
    live,
    openings,
    resolve: (name) => (options.resolveWith === undefined ? table(name) : options.resolveWith(name, table)),
    events,
    intercept: options.intercept,
    interceptor: options.interceptor,
    upstreamCa: options.upstreamCa,
    limits: options.limits,
  });
  return {
    gateway,
    live,
    audit,
    budgets,
    async close() {
      await gateway.close();
      await budgets?.close().catch(() => undefined);
      await audit.drain();
      await live.close();
    },
  };
}

/** Waits for `probe` to hold, checking every 20 ms, failing after `ms`. */
export async function within<T>(ms: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The audit row of a request id, once written. */
export function auditRow(harness: Harness, requestId: string) {
  return within(2_000, async () => {
    const { rows } = await harness.auth.db.query<Record<string, unknown>>(
      'select * from audit_events where request_id = $1',
      [requestId],
    );
    return rows[0];
  });
}
