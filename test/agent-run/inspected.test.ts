// `reins run --ca` with an inspecting gateway: the command's TLS clients trust the interception
// CA through the variables alone (curl through CURL_CA_BUNDLE, Python through SSL_CERT_FILE,
// Node through NODE_EXTRA_CA_CERTS), while a whole-origin tunnel keeps end-to-end TLS with the
// real server, whose CA the caller's own SSL_CERT_FILE names.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness, WORKER_ENV, within } from '../gateway/support.ts';
import { type HttpsUpstream, makeCa, startHttpsUpstream, testInterceptor } from '../gateway/tls-support.ts';
import { testBackends } from '../support/db.ts';
import { runReins } from '../support/run-reins.ts';

const [backend] = testBackends();
if (backend === undefined) throw new Error('no test backend');

describe('reins run through an inspecting gateway', { timeout: 60_000 }, () => {
  let h: Harness;
  let upstream: HttpsUpstream;
  let dir: string;
  let interceptionCa: string;
  let upstreamCa: string;
  let secure: string;

  beforeAll(async () => {
    const upstreamAuthority = await makeCa('upstream test CA');
    const interception = await makeCa('interception test CA');
    upstream = await startHttpsUpstream(upstreamAuthority, 'secure.test');
    const u = upstream.port;
    h = await startHarness(backend, {
      extraEgress: () => [`GET,POST https://secure.test:${u}/v1/`, `https://whole-tls.test:${u}/`],
      hosts: { 'secure.test': ['127.0.0.1'], 'whole-tls.test': ['127.0.0.1'] },
      openings: [`127.0.0.1/32:${u}`],
      interceptor: testInterceptor(interception),
      upstreamCa: upstreamAuthority.certPem,
    });
    dir = await mkdtemp(join(tmpdir(), 'reins-run-inspected-'));
    interceptionCa = join(dir, 'interception-ca.pem');
    upstreamCa = join(dir, 'upstream-ca.pem');
    await writeFile(interceptionCa, interception.certPem);
    await writeFile(upstreamCa, upstreamAuthority.certPem);
    secure = `https://secure.test:${u}`;
  });
  afterAll(async () => {
    await h?.close();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const reinsRun = (command: string[], extra: string[] = [], env: Record<string, string | undefined> = {}) =>
    runReins(
      [
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
      ],
      env,
    );

  it('lets curl reach a partly granted HTTPS origin, trusting the CA through CURL_CA_BUNDLE', async () => {
    const result = await reinsRun(
      ['curl', '-s', '--data-binary', 'inspected', `${secure}/v1/charges`],
      ['--ca', interceptionCa],
    );
    expect(result, result.stderr).toMatchObject({ code: 0, stdout: 'inspected' });
  });

  it('passes the gateway’s 403 from inside the inspected tunnel to the command', async () => {
    const result = await reinsRun(
      ['curl', '-s', '-w', '\n%{http_code}', `${secure}/v2/refunds`],
      ['--ca', interceptionCa],
    );
    const [body, status] = result.stdout.split('\n');
    expect(status).toBe('403');
    expect(JSON.parse(body ?? '')).toMatchObject({ error: 'egress_denied', reason: 'path_not_allowed' });
  });

  it('lets Python (SSL_CERT_FILE) and Node (NODE_EXTRA_CA_CERTS) trust it too', async () => {
    const python = [
      'import sys, urllib.request',
      `r = urllib.request.urlopen("${secure}/v1/python", data=b"from python")`,
      'sys.stdout.write(r.read().decode())',
    ].join('\n');
    const node = `fetch("${secure}/v1/node", { method: "POST", body: "from node" }).then(async (r) => process.stdout.write(await r.text()))`;
    const [py, js] = await Promise.all([
      reinsRun(['python3', '-c', python], ['--ca', interceptionCa]),
      reinsRun([process.execPath, '-e', node], ['--ca', interceptionCa]),
    ]);
    expect(py, py.stderr).toMatchObject({ code: 0, stdout: 'from python' });
    expect(js, js.stderr).toMatchObject({ code: 0, stdout: 'from node' });
  });

  it('fails certificate verification without --ca (curl exit 60)', async () => {
    const result = await reinsRun(['curl', '-s', `${secure}/v1/charges`], [], {
      CURL_CA_BUNDLE: undefined,
      SSL_CERT_FILE: undefined,
    });
    expect(result.code).toBe(60);
  });

  it('keeps TLS end to end for a whole origin: the real server’s CA from the caller’s SSL_CERT_FILE stays trusted', async () => {
    // The tunnel is not inspected, so curl sees the upstream's own certificate (issued for
    // secure.test: --connect-to keeps the name while dialling whole-tls.test through the tunnel).
    const result = await reinsRun(
      [
        'curl',
        '-s',
        '--connect-to',
        `secure.test:${upstream.port}:whole-tls.test:${upstream.port}`,
        '--data-binary',
        'end to end',
        `${secure}/anything`,
      ],
      ['--ca', interceptionCa],
      { SSL_CERT_FILE: upstreamCa, CURL_CA_BUNDLE: undefined, REQUESTS_CA_BUNDLE: undefined },
    );
    expect(result, result.stderr).toMatchObject({ code: 0, stdout: 'end to end' });
    // A tunnel is recorded when it closes.
    const rows = await within(5_000, async () => {
      const { rows } = await h.auth.db.query<{ method: string; inspected: boolean }>(
        "select method, inspected from audit_events where host = 'whole-tls.test'",
      );
      return rows.length > 0 ? rows : undefined;
    });
    expect(rows).toEqual([{ method: 'CONNECT', inspected: false }]);
  });
});
