// bench/tokens: client-credentials tokens per second and latency for reins (PGlite, and
// PostgreSQL when BENCH_DATABASE_URL or DATABASE_URL is set and reachable) side by side with a
// bare oidc-provider configured for the same grant (JWT access token, ES256, resource
// indicators, in-memory adapter): the ceiling, since reins is oidc-provider plus its own steps.
// reins on PGlite runs as `reins serve` opens it, the engine in a thread of its own; full runs
// add it in the serving thread (what the thread buys) and without group commit. Beside the rates,
// each row shows the CPU time the server's process spent per token (all its threads, from
// /proc), and the target (issue 13) is printed met or missed: reins ≥ 0.75× the ceiling at 10 and
// at 50 connections, on each backend.
//
// Each server runs in a child process of its own (this file again, with BENCH_TOKENS_SERVE
// set), so that the load generator (autocannon, keep-alive connections, client_secret_basic)
// never shares an event loop with the server it measures. Every cell is warmed up first.
// BENCH_TOKENS_CPU_PROF=<dir> writes a --cpu-prof profile of each server to <dir>.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import { ClientRegistry } from '../src/server/clients/index.ts';
import { ensureSigningKey, loadKeys } from '../src/server/keys/index.ts';
import { createProvider } from '../src/server/provider/index.ts';
import type { Db } from '../src/store/db.ts';
import { migrate } from '../src/store/migrate.ts';
import { openPg } from '../src/store/pg.ts';
import { openPglite } from '../src/store/pglite.ts';
import { openPgliteWorker } from '../src/store/pglite-worker.ts';
import { exampleSources } from '../test/policy/support.ts';
import { applySources } from '../test/server/provider/support.ts';
import { uniqueName } from '../test/support/db.ts';
import { cpuSeconds } from './gateway-children.ts';
import { verdict } from './gateway-rows.ts';
import { formatRate, smoke, table } from './harness.ts';

const GATEWAY = 'https://gateway.reins.test';
const CLIENT_ID = 'billing-agent';
// The example secret policies/acme.yaml publishes (auth.example_secret, checked against its hash).
const SECRET = 'reins-example-billing-secret';
const SECRET_ENV = 'ACME_BILLING_AGENT_SECRET';

/** `pglite`: the engine in a thread of its own, as `reins serve` opens it; `pglite-inline`: in the serving thread. */
type Role = 'bare' | 'pglite' | 'pglite-inline' | 'pg';

interface ServeMessage {
  readonly url?: string;
  readonly error?: string;
}

// ---------------------------------------------------------------- the servers (child side)

async function serve(role: Role, groupCommit: boolean): Promise<void> {
  let db: Db | undefined;
  let clients: ClientRegistry | undefined;
  let dropSchema: (() => Promise<void>) | undefined;
  let callback: ReturnType<Provider['callback']>;
  if (role === 'bare') {
    callback = (await bareProvider()).callback();
  } else {
    if (role === 'pg') {
      const url = databaseUrl();
      if (!url) throw new Error('no BENCH_DATABASE_URL or DATABASE_URL');
      const schema = uniqueName('bench');
      const pg = await openPg(url, { schema, max: 10 });
      db = pg;
      dropSchema = async () => {
        await pg.query(`drop schema "${schema}" cascade`);
      };
    } else {
      db = role === 'pglite' ? await openPgliteWorker('memory') : await openPglite('memory');
    }
    await migrate(db);
    await applySources(db, exampleSources());
    await ensureSigningKey(db, { now: new Date() });
    const keys = await loadKeys(db, undefined);
    clients = await ClientRegistry.open(db);
    callback = createProvider({
      issuer: 'http://127.0.0.1',
      db,
      clients,
      gatewayResource: GATEWAY,
      signingKeys: keys.signing.map((k) => k.privateJwk),
      groupCommit,
    }).callback();
  }
  const server = createServer(callback);
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  process.send?.({ url: `http://127.0.0.1:${port}` } satisfies ServeMessage);
  await once(process, 'disconnect');
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await clients?.close();
  try {
    await dropSchema?.();
  } finally {
    await db?.close();
  }
}

/** The ceiling: oidc-provider with only what the grant needs, its default in-memory adapter. */
async function bareProvider(): Promise<Provider> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'bench', alg: 'ES256', use: 'sig' };
  return new Provider('http://127.0.0.1', {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [jwk] as never },
    ttl: { ClientCredentials: 120 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => GATEWAY,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: '',
          audience: GATEWAY,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
}

// ---------------------------------------------------------------- the load (parent side)

function databaseUrl(): string | undefined {
  return process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL || undefined;
}

interface Started {
  readonly url: string;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

async function start(role: Role, groupCommit: boolean): Promise<Started> {
  const profileDir = process.env.BENCH_TOKENS_CPU_PROF;
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
    env: {
      ...process.env,
      BENCH_TOKENS_SERVE: role,
      BENCH_TOKENS_GROUP_COMMIT: groupCommit ? '1' : '0',
      [SECRET_ENV]: SECRET,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = once(child, 'exit');
  const [message] = (await Promise.race([once(child, 'message'), exited])) as [ServeMessage | number];
  if (typeof message !== 'object' || !message.url) {
    throw new Error(typeof message === 'object' ? message.error : `server exited with ${message}`);
  }
  return {
    url: message.url,
    pid: child.pid,
    async stop() {
      child.disconnect();
      await exited;
    },
  };
}

interface Cell {
  readonly tokensPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly tokens: number;
  /** CPU time the server's process spent per token, µs (NaN where /proc cannot tell). */
  readonly cpuMicros?: number;
}

async function load(url: string, connections: number, seconds: number): Promise<Cell> {
  const result = await autocannon({
    url: `${url}/token`,
    method: 'POST',
    connections,
    duration: seconds,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${SECRET}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials',
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${url}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
  }
  return {
    tokensPerSecond: result['2xx'] / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    tokens: result['2xx'],
  };
}

interface Variant {
  readonly name: string;
  readonly role: Role;
  readonly groupCommit: boolean;
  /** Held to the target: the production path of its backend. */
  readonly target?: boolean;
}

const TARGET = 0.75;

async function main(): Promise<void> {
  const concurrency = [10, 50];
  const seconds = smoke ? 1 : 8;
  const warmSeconds = smoke ? 0.5 : 2;

  const variants: Variant[] = [
    { name: 'bare oidc-provider (ceiling)', role: 'bare', groupCommit: true },
    { name: 'reins, PGlite (engine in its own thread)', role: 'pglite', groupCommit: true, target: true },
  ];
  // The engine in the serving thread, and before group commit (one awaited INSERT per token):
  // full runs only, to keep smoke short.
  if (!smoke) {
    variants.push(
      { name: 'reins, PGlite in the serving thread', role: 'pglite-inline', groupCommit: true },
      { name: 'reins, PGlite, one INSERT per token', role: 'pglite', groupCommit: false },
    );
  }
  if (databaseUrl()) {
    variants.push({ name: 'reins, PostgreSQL', role: 'pg', groupCommit: true, target: true });
    if (!smoke) {
      variants.push({ name: 'reins, PostgreSQL, one INSERT per token', role: 'pg', groupCommit: false });
    }
  } else {
    console.log('bench/tokens: no BENCH_DATABASE_URL or DATABASE_URL: PostgreSQL column skipped');
  }

  const results = new Map<string, Map<number, Cell>>();
  for (const variant of variants) {
    let server: Started;
    try {
      server = await start(variant.role, variant.groupCommit);
    } catch (err) {
      if (variant.role !== 'pg') throw err;
      console.log(`bench/tokens: PostgreSQL not reachable (${String(err)}): ${variant.name} skipped`);
      continue;
    }
    try {
      const cells = new Map<number, Cell>();
      for (const connections of concurrency) {
        await load(server.url, connections, warmSeconds);
        const cpuBefore = cpuSeconds(server.pid);
        const cell = await load(server.url, connections, seconds);
        const cpuMicros = ((cpuSeconds(server.pid) - cpuBefore) * 1e6) / Math.max(1, cell.tokens);
        cells.set(connections, { ...cell, cpuMicros });
      }
      results.set(variant.name, cells);
    } finally {
      await server.stop();
    }
  }

  const ceiling = results.get(variants[0]?.name ?? '');
  const rows: string[][] = [];
  for (const [name, cells] of results) {
    for (const connections of concurrency) {
      const cell = cells.get(connections);
      const base = ceiling?.get(connections);
      if (!cell || !base) continue;
      rows.push([
        name,
        String(connections),
        formatRate(cell.tokensPerSecond),
        `${(cell.tokensPerSecond / base.tokensPerSecond).toFixed(2)}×`,
        `${cell.p50.toFixed(1)} ms`,
        `${cell.p99.toFixed(1)} ms`,
        cell.cpuMicros === undefined || Number.isNaN(cell.cpuMicros)
          ? '–'
          : `${cell.cpuMicros.toFixed(0)} µs`,
      ]);
    }
  }
  console.log(
    `\n#### bench/tokens: client-credentials tokens (client_secret_basic, keep-alive, ${seconds} s per cell)\n`,
  );
  console.log(
    table(['server', 'connections', 'tokens', 'vs ceiling', 'p50', 'p99', 'server CPU/token'], rows),
  );
  console.log('');
  for (const variant of variants) {
    if (!variant.target) continue;
    const cells = results.get(variant.name);
    const parts = concurrency.map((connections) => {
      const cell = cells?.get(connections);
      const base = ceiling?.get(connections);
      const value = cell && base ? cell.tokensPerSecond / base.tokensPerSecond : undefined;
      return `${connections} connections ${verdict(value, `${value?.toFixed(2)}×`, (value ?? 0) >= TARGET)}`;
    });
    console.log(`target, ${variant.name}: ≥ ${TARGET}× bare oidc-provider: ${parts.join('; ')}`);
  }
}

const role = process.env.BENCH_TOKENS_SERVE as Role | undefined;
if (role) {
  await serve(role, process.env.BENCH_TOKENS_GROUP_COMMIT !== '0').catch((err: unknown) => {
    process.send?.({ error: err instanceof Error ? err.message : String(err) } satisfies ServeMessage);
    process.exitCode = 1;
  });
} else {
  await main();
}
