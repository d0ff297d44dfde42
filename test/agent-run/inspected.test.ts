// `reins run` with an inspecting gateway and nothing but the issuer: the interception CA comes
// from the issuer's GET /ca.pem (no --ca, no `reins ca export`), and the command's TLS clients
// trust it through the variables alone (curl through CURL_CA_BUNDLE, Python through
// SSL_CERT_FILE, Node through NODE_EXTRA_CA_CERTS), while a whole-origin tunnel keeps end-to-end
// TLS with the real server, whose CA the caller's own SSL_CERT_FILE names. The gateway signs its
// leaves with the CA in the database, as `reins serve` does.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureInterceptionCa,
  LeafCache,
  loadSigningCa,
  rotateInterceptionCa,
} from '../../src/gateway/ca/index.ts';
import type { Interceptor } from '../../src/gateway/inspect.ts';
import { type Harness, startHarness, WORKER_ENV, within } from '../gateway/support.ts';
import { type HttpsUpstream, makeCa, startHttpsUpstream } from '../gateway/tls-support.ts';
import { testBackends } from '../support/db.ts';
import { runReins } from '../support/run-reins.ts';

const [backend] = testBackends();
if (backend === undefined) throw new Error('no test backend');

describe('reins run through an inspecting gateway', { timeout: 60_000 }, () => {
  let h: Harness;
  let upstream: HttpsUpstream;
  let dir: string;
  let otherCa: string;
  let upstreamCa: string;
  let secure: string;
  // The gateway's leaves, from the database's CA once the harness (and its database) is up.
  let leaves: LeafCache | undefined;
  const interceptor: Interceptor = {
    secureContextFor: (host) => {
      if (leaves === undefined) throw new Error('no interception CA loaded');
      return leaves.secureContextFor(host);
    },
  };

  beforeAll(async () => {
    const upstreamAuthority = await makeCa('upstream test CA');
    const other = await makeCa('a CA the gateway does not use');
    upstream = await startHttpsUpstream(upstreamAuthority, 'secure.test');
    const u = upstream.port;
    h = await startHarness(backend, {
      extraEgress: () => [`GET,POST https://secure.test:${u}/v1/`, `https://whole-tls.test:${u}/`],
      hosts: { 'secure.test': ['127.0.0.1'], 'whole-tls.test': ['127.0.0.1'] },
      openings: [`127.0.0.1/32:${u}`],
      interceptor,
      upstreamCa: upstreamAuthority.certPem,
    });
    // What the gateway runtime does at start: create the CA if there is none, sign with it.
    await ensureInterceptionCa(h.auth.db, { now: new Date() });
    leaves = new LeafCache(await loadSigningCa(h.auth.db, { now: new Date() }));
    dir = await mkdtemp(join(tmpdir(), 'reins-run-inspected-'));
    otherCa = join(dir, 'other-ca.pem');
    upstreamCa = join(dir, 'upstream-ca.pem');
    await writeFile(otherCa, other.certPem);
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

  describe('gives every client the same answers on a path-scoped rule, with no --ca', () => {
    // Allowed: POST /v1/… (its body echoed back). Refused inside the tunnel: another path, and
    // another method on the allowed path.
    const expected = ['200 body of {client}', '403 path_not_allowed', '403 method_not_allowed'];

    it('curl (trusting the CA through CURL_CA_BUNDLE), all three on one connection', async () => {
      const each = (args: string[]) => ['-s', '-w', '\n%{http_code} %{num_connects}\n', ...args];
      const result = await reinsRun([
        'curl',
        ...each(['--data-binary', 'body of curl', `${secure}/v1/echo`]),
        '--next',
        ...each([`${secure}/v2/other`]),
        '--next',
        ...each(['-X', 'DELETE', `${secure}/v1/echo`]),
      ]);
      expect(result.code, result.stderr).toBe(0);
      const lines = result.stdout.trim().split('\n');
      const reason = (json: string | undefined) => (JSON.parse(json ?? '{}') as { reason?: string }).reason;
      expect(lines[0]).toBe('body of curl');
      expect(lines[1]).toBe('200 1');
      expect(reason(lines[2])).toBe('path_not_allowed');
      // num_connects 0: the same tunnel, reused.
      expect(lines[3]).toBe('403 0');
      expect(reason(lines[4])).toBe('method_not_allowed');
      expect(lines[5]).toBe('403 0');
    });

    it('Python urllib (SSL_CERT_FILE) and Node fetch (NODE_EXTRA_CA_CERTS)', async () => {
      const python = [
        'import json, urllib.request, urllib.error',
        'def call(method, path, data=None):',
        `    request = urllib.request.Request("${secure}" + path, data=data, method=method)`,
        '    try:',
        '        answer = urllib.request.urlopen(request)',
        '        return f"{answer.status} {answer.read().decode()}"',
        '    except urllib.error.HTTPError as refused:',
        '        return f"{refused.code} {json.loads(refused.read())[\'reason\']}"',
        'print(call("POST", "/v1/echo", b"body of python"))',
        'print(call("GET", "/v2/other"))',
        'print(call("DELETE", "/v1/echo"))',
      ].join('\n');
      const node = [
        'const call = async (method, path, body) => {',
        `  const answer = await fetch("${secure}" + path, { method, body });`,
        '  const text = await answer.text();',
        '  return answer.status + " " + (answer.ok ? text : JSON.parse(text).reason);',
        '};',
        'const lines = [await call("POST", "/v1/echo", "body of node"), await call("GET", "/v2/other"), await call("DELETE", "/v1/echo")];',
        'process.stdout.write(lines.join("\\n") + "\\n");',
      ].join('\n');
      const [py, js] = await Promise.all([
        reinsRun(['python3', '-c', python]),
        reinsRun([process.execPath, '--input-type=module', '-e', node]),
      ]);
      const answers = (client: string) => expected.map((line) => line.replace('{client}', client));
      expect(py, py.stderr).toMatchObject({ code: 0 });
      expect(py.stdout.trim().split('\n')).toEqual(answers('python'));
      expect(js, js.stderr).toMatchObject({ code: 0 });
      expect(js.stdout.trim().split('\n')).toEqual(answers('node'));
    });
  });

  it('refuses a ClientHello whose SNI names another host than the CONNECT (curl exit 35)', async () => {
    // --connect-to: the tunnel is opened to secure.test, the TLS inside names evil.test.
    const result = await reinsRun([
      'curl',
      '-s',
      '--connect-to',
      `evil.test:${upstream.port}:secure.test:${upstream.port}`,
      `https://evil.test:${upstream.port}/v1/echo`,
    ]);
    expect(result.code).toBe(35);
    const rows = await within(5_000, async () => {
      const { rows } = await h.auth.db.query<{ host: string; decision: string }>(
        "select host, decision from audit_events where reason = 'sni_mismatch'",
      );
      return rows.length > 0 ? rows : undefined;
    });
    expect(rows).toEqual([{ host: 'secure.test', decision: 'denied' }]);
  });

  it('checks plain HTTP inside the tunnel Node fetch opens for an http:// URL, request by request', async () => {
    const api = `http://api.test:${h.upstream.port}`;
    const node = [
      `const one = await fetch("${api}/v1/plain-in-tunnel", { method: "POST", body: "plain body" });`,
      `const two = await fetch("${api}/v2/plain-in-tunnel");`,
      'const lines = [one.status + " " + (await one.text()), two.status + " " + (await two.json()).reason];',
      'process.stdout.write(lines.join("\\n") + "\\n");',
    ].join('\n');
    const result = await reinsRun([process.execPath, '--input-type=module', '-e', node]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stdout.trim().split('\n')).toEqual(['200 plain body', '403 path_not_allowed']);
    // Both went through a tunnel the gateway read (inspected), not as absolute-form requests.
    const { rows } = await h.auth.db.query<{ path: string; inspected: boolean; decision: string }>(
      "select path, inspected, decision from audit_events where path like '%/plain-in-tunnel' order by path",
    );
    expect(rows).toEqual([
      { path: '/v1/plain-in-tunnel', inspected: true, decision: 'allowed' },
      { path: '/v2/plain-in-tunnel', inspected: true, decision: 'denied' },
    ]);
  });

  it('lets an explicit --ca win over the issuer’s bundle: another CA fails verification (curl exit 60)', async () => {
    const result = await reinsRun(['curl', '-s', `${secure}/v1/charges`], ['--ca', otherCa], {
      CURL_CA_BUNDLE: undefined,
      SSL_CERT_FILE: undefined,
    });
    expect(result.code).toBe(60);
    expect(h.upstream.seen.some((s) => s.url === '/v1/charges')).toBe(false);
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
      [],
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

  it('after `reins ca rotate`, trusts the new CA and the one it replaced (gateways switch when they restart)', async () => {
    const before = await loadSigningCa(h.auth.db, { now: new Date() });
    const rotated = await rotateInterceptionCa(h.auth.db, { now: new Date() });
    const curl = ['curl', '-s', '--data-binary', 'after rotation', `${secure}/v1/echo`];
    const count = 'grep -c "BEGIN CERTIFICATE" "$NODE_EXTRA_CA_CERTS"';
    // This gateway still signs with the replaced CA, as a gateway not yet restarted does.
    expect(leaves?.ca.id).toBe(before.id);
    const [old, bundle] = await Promise.all([
      reinsRun(curl),
      reinsRun(['sh', '-c', count], [], { NODE_EXTRA_CA_CERTS: undefined }),
    ]);
    expect(old, old.stderr).toMatchObject({ code: 0, stdout: 'after rotation' });
    expect(bundle).toMatchObject({ code: 0, stdout: '2\n' });
    // Restarted: it signs with the new one, and agents started before or after trust it too.
    leaves?.setCa(await loadSigningCa(h.auth.db, { now: new Date() }));
    expect(leaves?.ca.id).toBe(rotated.id);
    const next = await reinsRun(curl);
    expect(next, next.stderr).toMatchObject({ code: 0, stdout: 'after rotation' });
  });
});
