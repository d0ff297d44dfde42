// bench/gateway-kids: what the gateway pays to refuse tokens that name key ids it does not know,
// against what it pays for an allowed request, in the same run on the same server.
//
// Threat: anyone who can reach the gateway can mint well-formed JWTs whose `kid` names no
// published key (a random one each time, so no cache keyed by token or kid ever hits). If each of
// them made the gateway read the key set from the database, or wait behind such a read, a flood
// of them would cost more than real traffic and slow it down.
//
// First the token check alone, in this process (TokenVerifier over a KeySet, as the gateway
// builds them): an unknown kid against a cached token and a token whose signature is verified.
// Then through the gateway: one reins gateway (bench/gateway-servers.ts, as `reins serve`
// assembles it, PGlite, audit on) and one local upstream, each in a process of its own. Per round:
//
// - allowed: REQUESTS requests with one cached token, CONNECTIONS at a time, on keep-alive
//   connections opened before the measure;
// - unknown kids: REQUESTS distinct tokens, CONNECTIONS at a time, each with a fresh random
//   `kid`, signed ES256 by a key of the attacker's, the real issuer, audience and claims; every
//   one must be refused with 407 invalid_token. The gateway closes the connection after a 407,
//   so each of these includes opening a connection. In full runs the flood begins only once the
//   gateway's key set is older than the refresh cooldown, so the round measures the worst case
//   (the flood's first misses may refresh the set once); the key-set reads are counted.
//
// The row compares the two p99s and marks the target MISSED when the refusals' is worse. Full
// runs measure three rounds and report the median of each figure; BENCH_SMOKE=1 runs one short
// round (numbers meaningless).
import { randomBytes } from 'node:crypto';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Client } from 'undici';
import { KEY_REFRESH_COOLDOWN_MS, KeySet } from '../src/gateway/keys.ts';
import { TokenVerifier } from '../src/gateway/token.ts';
import { type Child, cpuSeconds, startChild } from './gateway-children.ts';
import { UPSTREAM_HOST, UPSTREAM_PATH } from './gateway-wire.ts';
import { formatRate, smoke, table } from './harness.ts';

const REQUESTS = smoke ? 100 : 1_000;
const CONNECTIONS = 50;
const ROUNDS = smoke ? 1 : 3;

interface Burst {
  readonly requestsPerSecond: number;
  /** Milliseconds. */
  readonly p50: number;
  readonly p99: number;
  /** Answers by status. */
  readonly statuses: ReadonlyMap<number, number>;
  /** Answers whose body was not what the status promises. */
  readonly wrongBodies: number;
  /** CPU time the gateway's process spent per request (user + system, from /proc), µs. */
  readonly cpuMicros: number;
}

/**
 * Sends one request per entry of `headers`, `connections` at a time (one undici Client each,
 * keep-alive, no pipelining; a connection the gateway closes is reopened for the next request),
 * and measures each from the call to the last byte of its body. With `warm`, each connection
 * first sends one unmeasured request with those headers, so that keep-alive requests are measured
 * on open connections (the harsher baseline for the refusals, which each need a new one).
 */
async function burst(
  pid: number | undefined,
  origin: string,
  path: string,
  headers: readonly Record<string, string>[],
  connections: number,
  warm?: Record<string, string>,
): Promise<Burst> {
  const clients = Array.from(
    { length: connections },
    () =>
      new Client(origin, {
        pipelining: 1,
        keepAliveTimeout: 60_000,
        keepAliveMaxTimeout: 60_000,
        connect: { noDelay: true },
      }),
  );
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let wrongBodies = 0;
  let next = 0;
  if (warm !== undefined) {
    await Promise.all(
      clients.map(async (client) => {
        const answer = await client.request({ method: 'GET', path, headers: warm });
        await answer.body.dump();
      }),
    );
  }
  const worker = async (client: Client) => {
    while (next < headers.length) {
      const these = headers[next++] as Record<string, string>;
      const began = performance.now();
      const answer = await client.request({ method: 'GET', path, headers: these });
      const body = await answer.body.text();
      latencies.push(performance.now() - began);
      statuses.set(answer.statusCode, (statuses.get(answer.statusCode) ?? 0) + 1);
      if (answer.statusCode === 407 && !body.includes('"error":"invalid_token"')) wrongBodies++;
    }
  };
  const cpuBefore = cpuSeconds(pid);
  const start = performance.now();
  try {
    await Promise.all(clients.map(worker));
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpuMicros = ((cpuSeconds(pid) - cpuBefore) * 1e6) / headers.length;
  latencies.sort((a, b) => a - b);
  return {
    requestsPerSecond: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    statuses,
    wrongBodies,
    cpuMicros,
  };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] as number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/**
 * `count` tokens as an attacker makes them: the claims of a real token (issuer, audience,
 * tenant, grant), a fresh jti, and a header naming a random kid, signed with the attacker's key.
 */
async function unknownKidTokens(real: string, count: number): Promise<string[]> {
  const claims = decodeJwt(real);
  const { privateKey } = await generateKeyPair('ES256');
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    tokens.push(
      await new SignJWT({ ...claims, jti: randomBytes(16).toString('hex') })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: randomBytes(32).toString('base64url') })
        .sign(privateKey),
    );
  }
  return tokens;
}

function statusText(statuses: ReadonlyMap<number, number>): string {
  return [...statuses]
    .sort(([a], [b]) => a - b)
    .map(([status, n]) => `${n}× ${status}`)
    .join(', ');
}

interface Round {
  readonly allowed: Burst;
  readonly unknown: Burst;
  readonly keyReads: number;
}

async function round(reins: Child, authority: string, token: string, staleFrom: number): Promise<Round> {
  const path = `http://${authority}${UPSTREAM_PATH}`;
  const allowedHeaders = Array.from({ length: REQUESTS }, () => ({
    host: authority,
    'proxy-authorization': `Bearer ${token}`,
  }));
  const allowed = await burst(
    reins.pid,
    reins.ready.url,
    path,
    allowedHeaders,
    CONNECTIONS,
    allowedHeaders[0],
  );
  const forged = await unknownKidTokens(token, REQUESTS);
  const unknownHeaders = forged.map((t) => ({ host: authority, 'proxy-authorization': `Bearer ${t}` }));
  // The worst case: the gateway's key set is past its cooldown when the flood begins.
  if (!smoke) {
    const wait = staleFrom + KEY_REFRESH_COOLDOWN_MS + 250 - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  const before = (await reins.stats()).keyReads;
  const unknown = await burst(reins.pid, reins.ready.url, path, unknownHeaders, CONNECTIONS);
  const keyReads = (await reins.stats()).keyReads - before;
  return { allowed, unknown, keyReads };
}

/**
 * Awaits `fn` one call after another for about `ms` (after a quarter of it as warm-up), in five
 * slices: µs per call, the median slice (other work on the machine lands in one slice or two).
 */
async function perCall(fn: (i: number) => Promise<unknown>, ms: number): Promise<number> {
  const budget = smoke ? Math.min(ms, 50) : ms;
  let i = 0;
  const warmUntil = performance.now() + budget / 4;
  while (performance.now() < warmUntil) await fn(i++);
  const slices: number[] = [];
  for (let slice = 0; slice < 5; slice++) {
    let calls = 0;
    const start = performance.now();
    while (performance.now() - start < budget / 5) {
      await fn(i++);
      calls++;
    }
    slices.push(((performance.now() - start) * 1000) / calls);
  }
  return median(slices);
}

/**
 * The token check alone, in this process: TokenVerifier over a KeySet holding one ES256 key, as
 * the gateway builds it. What an unknown kid costs next to a cached token and to a valid token
 * checked afresh (its signature verified), and how often the key set was read.
 */
async function verifierRows(): Promise<string[][]> {
  const issuer = 'https://issuer.bench.test';
  const audience = 'https://gateway.bench.test';
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench-key', alg: 'ES256', use: 'sig' };
  let reads = 0;
  const keys = new KeySet(async () => {
    reads++;
    return { keys: [jwk] };
  });
  const sign = (kid: string) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      tenant: 'bench',
      client_id: 'bench-agent',
      authorization_details: [{ type: 'egress', locations: ['http://upstream.test/'] }],
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
      .setIssuer(issuer)
      .setSubject('bench-agent')
      .setAudience(audience)
      .setJti(randomBytes(16).toString('hex'))
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(privateKey);
  };
  const cached = new TokenVerifier({ issuer, audience, keys: keys.getKey });
  // A one-entry cache and two tokens in turn: every check verifies a signature.
  const uncached = new TokenVerifier({ issuer, audience, keys: keys.getKey, maxEntries: 1 });
  const valid = [await sign('bench-key'), await sign('bench-key')];
  const unknown = await Promise.all(
    Array.from({ length: 1_000 }, () => sign(randomBytes(32).toString('base64url'))),
  );
  const expect = (ok: boolean) => (checked: { ok: boolean }) => {
    if (checked.ok !== ok) throw new Error('bench/gateway-kids: a token check answered the wrong way');
  };
  const hit = await perCall(() => cached.verify(valid[0] as string).then(expect(true)), 400);
  const fresh = await perCall((i) => uncached.verify(valid[i % 2] as string).then(expect(true)), 400);
  const readsBefore = reads;
  const miss = await perCall(
    (i) => cached.verify(unknown[i % unknown.length] as string).then(expect(false)),
    400,
  );
  const micros = (value: number) => `${value.toFixed(1)} µs`;
  return [
    ['valid token, cached', micros(hit), '–'],
    ['valid token, signature verified', micros(fresh), '–'],
    ['random unknown kid', micros(miss), String(reads - readsBefore)],
  ];
}

async function main(): Promise<void> {
  const verifier = await verifierRows();
  console.log('\n#### bench/gateway-kids: the token check alone (TokenVerifier + KeySet, in process)\n');
  console.log(table(['token', 'per check', 'key-set reads while measured'], verifier));

  const stops: (() => Promise<void>)[] = [];
  try {
    const upstream = await startChild('upstream', 'upstream');
    stops.push(upstream.stop);
    const upstreamPort = new URL(upstream.ready.url).port;
    const reins = await startChild('reins', 'reins-pglite-kids', {
      BENCH_GATEWAY_UPSTREAM_PORT: upstreamPort,
      BENCH_GATEWAY_DB: 'pglite',
    });
    stops.push(reins.stop);
    const token = reins.ready.tokens?.[0];
    if (token === undefined) throw new Error('the reins server handed over no token');
    const authority = `${UPSTREAM_HOST}:${upstreamPort}`;

    // Warm-up: both paths once, unmeasured (the first request also loads the key set).
    let staleFrom = performance.now();
    await round(reins, authority, token, staleFrom);
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // The previous flood may have refreshed the key set as it began.
      staleFrom = performance.now();
      rounds.push(await round(reins, authority, token, staleFrom));
    }

    const problems: string[] = [];
    for (const [i, r] of rounds.entries()) {
      if (r.allowed.statuses.get(200) !== REQUESTS) {
        problems.push(`round ${i + 1}, allowed: ${statusText(r.allowed.statuses)}`);
      }
      if (r.unknown.statuses.get(407) !== REQUESTS || r.unknown.wrongBodies > 0) {
        problems.push(
          `round ${i + 1}, unknown kids: ${statusText(r.unknown.statuses)}` +
            (r.unknown.wrongBodies > 0 ? `, ${r.unknown.wrongBodies} 407s without invalid_token` : ''),
        );
      }
    }
    if (problems.length > 0)
      throw new Error(`bench/gateway-kids: unexpected answers: ${problems.join('; ')}`);

    const figure = (pick: (r: Round) => number) => median(rounds.map(pick));
    const allowedP99 = figure((r) => r.allowed.p99);
    const unknownP99 = figure((r) => r.unknown.p99);
    const ms = (value: number) => `${value.toFixed(2)} ms`;
    const micros = (value: number) => (Number.isNaN(value) ? '–' : `${value.toFixed(0)} µs`);
    console.log(
      `\n#### bench/gateway-kids: ${REQUESTS} requests, ${CONNECTIONS} at a time, ` +
        `${ROUNDS === 1 ? 'one round' : `median of ${ROUNDS} rounds`} (reins on PGlite, audit on)\n`,
    );
    console.log(
      table(
        ['requests', 'answered', 'rate', 'p50', 'p99', 'gateway CPU/request', 'key-set reads'],
        [
          [
            'allowed, token cached',
            `${REQUESTS}× 200`,
            formatRate(figure((r) => r.allowed.requestsPerSecond)),
            ms(figure((r) => r.allowed.p50)),
            ms(allowedP99),
            micros(figure((r) => r.allowed.cpuMicros)),
            '–',
          ],
          [
            'random unknown kid, one token each',
            `${REQUESTS}× 407 invalid_token`,
            formatRate(figure((r) => r.unknown.requestsPerSecond)),
            ms(figure((r) => r.unknown.p50)),
            ms(unknownP99),
            micros(figure((r) => r.unknown.cpuMicros)),
            String(figure((r) => r.keyReads)),
          ],
        ],
      ),
    );
    console.log('');
    for (const [i, r] of rounds.entries()) {
      console.log(
        `round ${i + 1}: p99 allowed ${ms(r.allowed.p99)}, unknown kids ${ms(r.unknown.p99)} ` +
          `(${(r.unknown.p99 / r.allowed.p99).toFixed(2)}×), key-set reads during the flood: ${r.keyReads}`,
      );
    }
    const ratio = unknownP99 / allowedP99;
    console.log(
      `target, unknown kids refused at 407, p99 no worse than allowed: ` +
        `${ms(unknownP99)} vs ${ms(allowedP99)} (${ratio.toFixed(2)}×) ${ratio <= 1 ? 'met' : 'MISSED'}`,
    );
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

await main();
