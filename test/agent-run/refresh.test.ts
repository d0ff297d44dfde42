// `reins run` keeps an agent working across many token lifetimes: the policy gives the worker
// 10-second tokens (the shortest a policy allows), and loops of requests run for more than two
// of them, each answered by the upstream, under several tokens: curl (absolute-form requests,
// kept-alive connections to the gateway) and Node's fetch (CONNECT tunnels, plain and inspected,
// which the gateway closes when the token they were opened with expires).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  gatewayPolicy,
  type Harness,
  startHarness,
  WORKER_ENV,
  WORKER_SECRET,
  within,
} from '../gateway/support.ts';
import { type HttpsUpstream, makeCa, startHttpsUpstream, testInterceptor } from '../gateway/tls-support.ts';
import { basic, requestToken } from '../server/provider/support.ts';
import { testBackends } from '../support/db.ts';
import { runReins } from '../support/run-reins.ts';

const [backend] = testBackends();
if (backend === undefined) throw new Error('no test backend');

const TTL_SECONDS = 10;
const LOOP_SECONDS = 24;

describe('reins run across token lifetimes', () => {
  let h: Harness;
  let secure: HttpsUpstream;
  let dir: string;
  let interceptionCa: string;
  beforeAll(async () => {
    const upstreamAuthority = await makeCa('upstream test CA');
    const interception = await makeCa('interception test CA');
    secure = await startHttpsUpstream(upstreamAuthority, 'secure.test');
    // A path-scoped rule on HTTPS: Node's fetch gets inspected tunnels.
    const extra = [`GET https://secure.test:${secure.port}/v1/`];
    h = await startHarness(backend, {
      extraEgress: () => extra,
      hosts: { 'secure.test': ['127.0.0.1'] },
      openings: [`127.0.0.1/32:${secure.port}`],
      interceptor: testInterceptor(interception),
      upstreamCa: upstreamAuthority.certPem,
    });
    dir = await mkdtemp(join(tmpdir(), 'reins-run-refresh-'));
    interceptionCa = join(dir, 'interception-ca.pem');
    await writeFile(interceptionCa, interception.certPem);
    const files = gatewayPolicy(h.upstream.port, extra);
    const acme = files['acme.yaml']?.replace('token_ttl: 300', `token_ttl: ${TTL_SECONDS}`);
    await h.applyPolicy({ ...files, 'acme.yaml': String(acme) });
    // The server reloads its clients on the policy notification.
    await within(5_000, async () => {
      const { body } = await requestToken(
        h.auth,
        { grant_type: 'client_credentials' },
        basic('worker', WORKER_SECRET),
      );
      return body.expires_in === TTL_SECONDS;
    });
  });
  afterAll(async () => {
    await h?.close();
    await secure?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // The gateway signs with the test's interception CA, which the issuer does not publish
  // (/ca.pem serves the database's CA): the command is told to trust it with --ca.
  const reinsRun = (command: string[], extra: string[] = ['--ca', interceptionCa]) =>
    runReins([
      'run',
      '--agent',
      'worker',
      '--secret-env',
      WORKER_ENV,
      '--gateway',
      h.proxyUrl,
      '--issuer',
      h.auth.url,
      ...extra,
      '--',
      ...command,
    ]);

  /** A Node script fetching `url`/0, /1, … every 500 ms for LOOP_SECONDS; prints the statuses. */
  const fetchLoop = (url: string) =>
    [
      'const statuses = [];',
      '(async () => {',
      `  for (let i = 0; i < ${LOOP_SECONDS * 2}; i++) {`,
      `    const r = await fetch("${url}/" + i).catch((e) => ({ status: String(e.cause?.code ?? e.message), text: async () => "" }));`,
      '    await r.text();',
      '    statuses.push(r.status);',
      '    await new Promise((resolve) => setTimeout(resolve, 500));',
      '  }',
      '  process.stdout.write(statuses.join(" "));',
      '})();',
    ].join('\n');

  it.concurrent(
    'refreshes the token before it expires, so a loop of requests never sees a 407',
    async () => {
      const url = `http://api.test:${h.upstream.port}/v1/loop`;
      const loop = `i=0; while [ $i -lt ${LOOP_SECONDS * 2} ]; do curl -s -o /dev/null -w "%{http_code} " ${url}/$i; sleep 0.5; i=$((i+1)); done`;
      const result = await reinsRun(['sh', '-c', loop]);
      expect(result.code, result.stderr).toBe(0);
      const statuses = result.stdout.trim().split(' ');
      expect(statuses).toHaveLength(LOOP_SECONDS * 2);
      expect(new Set(statuses)).toEqual(new Set(['200']));
      // Every request was decided under a token; more than two lifetimes took several tokens.
      // The gateway records a request when its response has ended: the last rows may still be
      // on their way when the command has finished.
      const rows = await within(5_000, async () => {
        const { rows } = await h.auth.db.query<{ jti: string; n: number }>(
          "select jti, count(*)::int as n from audit_events where path like '/v1/loop/%' group by jti",
        );
        return rows.reduce((sum, row) => sum + row.n, 0) === LOOP_SECONDS * 2 ? rows : undefined;
      });
      expect(rows.length).toBeGreaterThanOrEqual(Math.floor(LOOP_SECONDS / (TTL_SECONDS / 2)) - 1);
    },
    LOOP_SECONDS * 1000 + 30_000,
  );

  it.concurrent(
    'keeps Node’s fetch working as the tunnels of expired tokens are closed',
    async () => {
      const url = `http://whole.test:${h.upstream.port}/fetch-loop`;
      const result = await reinsRun([process.execPath, '-e', fetchLoop(url)]);
      expect(result.code, result.stderr).toBe(0);
      const statuses = result.stdout.split(' ');
      expect(statuses).toHaveLength(LOOP_SECONDS * 2);
      expect(new Set(statuses)).toEqual(new Set(['200']));
      // The tunnels were opened under several tokens (each closed when its token expired).
      // A tunnel is recorded when it closes.
      await within(5_000, async () => {
        const { rows } = await h.auth.db.query<{ tokens: number }>(
          "select count(distinct jti)::int as tokens from audit_events where host = 'whole.test' and method = 'CONNECT'",
        );
        return (rows[0]?.tokens ?? 0) >= 3;
      });
    },
    LOOP_SECONDS * 1000 + 30_000,
  );

  it.concurrent(
    'keeps Node’s fetch working through inspected tunnels as their tokens expire',
    async () => {
      const url = `https://secure.test:${secure.port}/v1/inspected-loop`;
      const result = await reinsRun([process.execPath, '-e', fetchLoop(url)], ['--ca', interceptionCa]);
      expect(result.code, result.stderr).toBe(0);
      const statuses = result.stdout.split(' ');
      expect(statuses).toHaveLength(LOOP_SECONDS * 2);
      expect(new Set(statuses)).toEqual(new Set(['200']));
      // Every request was inspected, under several tokens (rows land once their answers end).
      const counted = await within(5_000, async () => {
        const { rows } = await h.auth.db.query<{ tokens: number; inspected: number }>(
          "select count(distinct jti)::int as tokens, count(*)::int as inspected from audit_events where path like '/v1/inspected-loop/%' and inspected",
        );
        return rows[0]?.inspected === LOOP_SECONDS * 2 ? rows[0] : undefined;
      });
      expect(counted.tokens).toBeGreaterThanOrEqual(3);
    },
    LOOP_SECONDS * 1000 + 30_000,
  );
});
