// `reins run` and `reins env` as an agent's operator runs them: real processes against a real
// authorization server and gateway (test/gateway/support.ts), with unmodified clients — curl,
// Node's fetch, Python's urllib — as the agent's command.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { exportJWK, exportPKCS8, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureInterceptionCa, exportTrustBundle } from '../../src/gateway/ca/index.ts';
import {
  auditRow,
  gatewayPolicy,
  type Harness,
  startHarness,
  WORKER_ENV,
  within,
} from '../gateway/support.ts';
import { testBackends } from '../support/db.ts';
import { type ReinsRun, runReins } from '../support/run-reins.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";

const [backend] = testBackends();
if (backend === undefined) throw new Error('no test backend');

const POSTER_ENV = 'RUN_TEST_POSTER_SECRET';
const POSTER_SECRET = 'poster-secret-used-only-in-tests';

/** The private_key_jwt agents added to the harness policy: one per key type. */
const SIGNERS = [
  { name: 'signer-es256', alg: 'ES256', options: {} },
  { name: 'signer-eddsa', alg: 'EdDSA', options: { crv: 'Ed25519' } },
  { name: 'signer-rs256', alg: 'RS256', options: { modulusLength: 2048 } },
] as const;

// Each reins process takes a few seconds to start from the sources (tsx): tests that start
// several get more time.
describe('reins run and reins env', { timeout: 60_000 }, () => {
  let h: Harness;
  let api: string;
  let whole: string;
  let dir: string;
  /** Where `reins env` keeps the CA it fetched (XDG_CACHE_HOME), never the developer's ~/.cache. */
  let cache: string;
  /** The bundle the harness's issuer serves at /ca.pem. */
  let issuerCa: string;
  const keyFiles = new Map<string, string>();

  /** The options that point reins at the harness, for the worker agent and its secret. */
  const worker = () => [
    '--agent',
    'worker',
    '--secret-env',
    WORKER_ENV,
    '--gateway',
    h.proxyUrl,
    '--issuer',
    h.auth.url,
  ];
  const reinsRun = (command: string[], options: string[] = worker(), env = {}) =>
    runReins(['run', ...options, '--', ...command], env);

  beforeAll(async () => {
    h = await startHarness(backend);
    api = `http://api.test:${h.upstream.port}`;
    whole = `http://whole.test:${h.upstream.port}`;
    dir = await mkdtemp(join(tmpdir(), 'reins-run-test-'));
    cache = join(dir, 'cache');
    // What the gateway does at first start; the issuer then serves it at /ca.pem.
    await ensureInterceptionCa(h.auth.db, { now: new Date() });
    issuerCa = (await exportTrustBundle(h.auth.db, new Date())).pem;
    // Agents that authenticate with private_key_jwt, one per key type, granted the api integration.
    const agents: string[] = [];
    for (const signer of SIGNERS) {
      const { publicKey, privateKey } = await generateKeyPair(signer.alg, {
        extractable: true,
        ...signer.options,
      });
      const file = join(dir, `${signer.name}.pem`);
      await writeFile(file, await exportPKCS8(privateKey));
      keyFiles.set(signer.name, file);
      const jwk = { ...(await exportJWK(publicKey)), kid: `${signer.name}-1`, alg: signer.alg };
      agents.push(
        `  ${signer.name}:`,
        `    auth: { method: private_key_jwt, jwks: { keys: [${JSON.stringify(jwk)}] } }`,
        '    egress: [api]',
      );
    }
    // An agent declared client_secret_post: the server accepts its secret only in the form body.
    process.env[POSTER_ENV] = POSTER_SECRET;
    agents.push(
      '  poster:',
      `    auth: { method: client_secret_post, secret_env: ${POSTER_ENV} }`,
      '    egress: [api]',
    );
    const files = gatewayPolicy(h.upstream.port);
    await h.applyPolicy({ ...files, 'acme.yaml': `${files['acme.yaml']}${agents.join('\n')}\n` });
    // The server reloads its clients on the policy notification.
    await within(5_000, () => h.auth.clients.lookup('signer-rs256') !== undefined);
  });
  afterAll(async () => {
    delete process.env[POSTER_ENV];
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('reins run', () => {
    it('sends curl’s requests through the gateway under the agent’s token, bodies intact', async () => {
      // Large enough for curl to send Expect: 100-continue.
      const body = randomBytes(1_500_000).toString('base64');
      const file = join(dir, 'body.txt');
      await writeFile(file, body);
      const result = await reinsRun(['curl', '-s', '--data-binary', `@${file}`, `${api}/v1/curl?q=1`]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toBe('');
      expect(result.stdout === body, 'the body came back intact').toBe(true);
      const seen = h.upstream.seen.find((s) => s.url === '/v1/curl?q=1');
      expect(seen).toMatchObject({ method: 'POST', bodyBytes: body.length });
      expect(seen?.headers['proxy-authorization']).toBeUndefined();
      const row = await auditRow(h, String(seen?.headers['x-request-id']));
      expect(row).toMatchObject({ decision: 'allowed', agent: 'worker', tenant: 'acme', path: '/v1/curl' });
    });

    it('gives the command the gateway’s 403 JSON for a path outside the grant', async () => {
      const result = await reinsRun(['curl', '-s', '-w', '\n%{http_code}', `${api}/v2/x`]);
      expect(result.code, result.stderr).toBe(0);
      const [body, status] = result.stdout.split('\n');
      expect(status).toBe('403');
      expect(JSON.parse(body ?? '')).toMatchObject({ error: 'egress_denied', reason: 'path_not_allowed' });
    });

    it('tunnels Node’s fetch (CONNECT, NODE_USE_ENV_PROXY) to a whole origin', async () => {
      const script = `fetch("${whole}/anything", { method: "POST", body: "from fetch" }).then(async (r) => process.stdout.write(r.status + " " + await r.text()))`;
      const result = await reinsRun([process.execPath, '-e', script]);
      expect(result, result.stderr).toMatchObject({ code: 0, stdout: '200 from fetch' });
      expect(h.upstream.seen.find((s) => s.url === '/anything')).toMatchObject({ method: 'POST' });
    });

    it('tunnels curl with --proxytunnel, and relays the gateway’s refusal of a CONNECT', async () => {
      const allowed = await reinsRun(['curl', '-s', '-p', `${whole}/tunnelled`]);
      expect(allowed, allowed.stderr).toMatchObject({ code: 0, stdout: '' });
      expect(h.upstream.seen.find((s) => s.url === '/tunnelled')).toMatchObject({ method: 'GET' });
      // curl reports the refused CONNECT with its own exit code 56, which reins passes on.
      const refused = await reinsRun([
        'curl',
        '-s',
        '-p',
        '-w',
        '%{http_connect}',
        `http://other.test:${h.upstream.port}/`,
      ]);
      expect(refused).toMatchObject({ code: 56, stdout: '403' });
    });

    it('sends Python’s urllib through the gateway from the environment alone', async () => {
      const script = [
        'import sys, urllib.request',
        `r = urllib.request.urlopen("${api}/v1/python", data=b"from python")`,
        'sys.stdout.write(str(r.status) + " " + r.read().decode())',
      ].join('\n');
      const result = await reinsRun(['python3', '-c', script]);
      expect(result, result.stderr).toMatchObject({ code: 0, stdout: '200 from python' });
    });

    it('gives the command the proxy variables, and no NO_PROXY', async () => {
      const result = await reinsRun(['env'], worker(), {
        NO_PROXY: 'api.test',
        no_proxy: 'api.test',
        REINS_ADMIN_TOKEN: 'an-admin-credential-the-agent-must-not-see',
      });
      expect(result.code).toBe(0);
      const vars = parseEnv(result.stdout);
      expect(vars.HTTP_PROXY).toMatch(/^http:\/\/reins:[A-Za-z0-9_-]{32}@127\.0\.0\.1:[0-9]+$/);
      expect(vars).toMatchObject({
        HTTPS_PROXY: vars.HTTP_PROXY,
        http_proxy: vars.HTTP_PROXY,
        https_proxy: vars.HTTP_PROXY,
        NODE_USE_ENV_PROXY: '1',
      });
      expect(vars.NO_PROXY).toBeUndefined();
      expect(vars.no_proxy).toBeUndefined();
      // reins's credentials stay with reins: the agent gets its leash, not the keys to it.
      expect(vars.REINS_ADMIN_TOKEN).toBeUndefined();
      expect(vars[WORKER_ENV]).toBeUndefined();
    });

    it('sends the secret of an agent declared client_secret_post in the form with --secret-method post', async () => {
      const options = (extra: string[]) => [
        '--agent',
        'poster',
        '--secret-env',
        POSTER_ENV,
        ...extra,
        '--gateway',
        h.proxyUrl,
        '--issuer',
        h.auth.url,
      ];
      const env = { [POSTER_ENV]: POSTER_SECRET };
      const posted = await reinsRun(
        ['curl', '-s', `${api}/v1/posted`],
        options(['--secret-method', 'post']),
        env,
      );
      expect(posted.code, posted.stderr).toBe(0);
      const seen = h.upstream.seen.find((s) => s.url === '/v1/posted');
      expect(await auditRow(h, String(seen?.headers['x-request-id']))).toMatchObject({ agent: 'poster' });
      // Basic is not how poster is declared: refused before the command starts (exit 1, one line).
      const basic = await reinsRun(['curl', '-s', `${api}/v1/basic`], options([]), env);
      expect(basic.code).not.toBe(0);
      expect(basic.stderr).toMatch(/^reins: .*invalid_client.*\n$/);
      expect(h.upstream.seen.find((s) => s.url === '/v1/basic')).toBeUndefined();
    });

    it('passes the command’s exit code through', async () => {
      expect((await reinsRun(['sh', '-c', 'exit 7'])).code).toBe(7);
      expect((await reinsRun(['sh', '-c', 'kill -KILL $$'])).code).toBe(128 + 9);
    });

    it('exits 127 with one line when the command cannot be started', async () => {
      const result = await reinsRun(['reins-no-such-command']);
      expect(result).toMatchObject({
        code: 127,
        stdout: '',
        stderr: 'reins: cannot run reins-no-such-command: ENOENT\n',
      });
    });

    it('passes SIGTERM on to the command and exits as the command does', async () => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          '--input-type=module',
          '--eval',
          ENTRY,
          '--',
          'run',
          ...worker(),
          '--',
          'sh',
          '-c',
          'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done',
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
      });
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      await within(15_000, () => stdout.includes('ready'));
      child.kill('SIGTERM');
      expect(await exited).toBe(3);
      expect(stdout).toBe('ready\ngot TERM\n');
    });

    it('trusts the CA through the four variables, with a bundle of the usual roots it removes at exit', async () => {
      const ca = join(dir, 'ca.pem');
      await makeCa(ca);
      const result = await reinsRun(
        [
          'sh',
          '-c',
          'echo "$NODE_EXTRA_CA_CERTS $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $CURL_CA_BUNDLE"; grep -c "BEGIN CERTIFICATE" "$SSL_CERT_FILE"',
        ],
        [...worker(), '--ca', ca],
        { NODE_EXTRA_CA_CERTS: undefined },
      );
      expect(result.code, result.stderr).toBe(0);
      const [paths, count] = result.stdout.trim().split('\n');
      const [extra, sslCertFile, requests, curl] = (paths ?? '').split(' ');
      expect(extra).toBe(ca);
      expect(requests).toBe(sslCertFile);
      expect(curl).toBe(sslCertFile);
      expect(Number(count)).toBeGreaterThan(100);
      expect(existsSync(String(sslCertFile))).toBe(false);
    });

    it('without --ca, gives the command the issuer’s CA bundle (GET /ca.pem), and removes it at exit', async () => {
      const result = await reinsRun(
        [
          'sh',
          '-c',
          'echo "$NODE_EXTRA_CA_CERTS $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $CURL_CA_BUNDLE"; cat "$NODE_EXTRA_CA_CERTS"; tail -c 2000 "$SSL_CERT_FILE"',
        ],
        worker(),
        { NODE_EXTRA_CA_CERTS: undefined, SSL_CERT_FILE: undefined },
      );
      expect(result, result.stderr).toMatchObject({ code: 0, stderr: '' });
      const [paths = '', ...rest] = result.stdout.split('\n');
      const [extra, sslCertFile, requests, curl] = paths.split(' ');
      expect([requests, curl]).toEqual([sslCertFile, sslCertFile]);
      expect(extra).not.toBe(sslCertFile);
      const printed = rest.join('\n');
      // NODE_EXTRA_CA_CERTS is the bundle itself; the others end with it, after the usual roots.
      expect(printed.startsWith(issuerCa)).toBe(true);
      expect(printed.endsWith(issuerCa)).toBe(true);
      expect(existsSync(String(extra))).toBe(false);
      expect(existsSync(String(sslCertFile))).toBe(false);
    });

    it('exits 3 in one line, without running the command, when the issuer has no CA to give', async () => {
      const port = await closedPort();
      const marker = join(dir, 'ran-without-ca');
      const tokenCommand = `curl -s -u "worker:$${WORKER_ENV}" -d grant_type=client_credentials ${h.auth.url}/token | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])"`;
      const result = await reinsRun(
        ['touch', marker],
        ['--token-command', tokenCommand, '--gateway', h.proxyUrl, '--issuer', `http://127.0.0.1:${port}`],
      );
      expect(result).toMatchObject({
        code: 3,
        stdout: '',
        stderr: `reins: cannot fetch the interception CA: cannot reach http://127.0.0.1:${port}: ECONNREFUSED; give --issuer URL, or --ca FILE\n`,
      });
      expect(existsSync(marker)).toBe(false);
    });

    it('takes each token from --token-command', async () => {
      const tokenCommand = `curl -s -u "worker:$${WORKER_ENV}" -d grant_type=client_credentials ${h.auth.url}/token | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])"`;
      const result = await reinsRun(
        ['curl', '-s', '--data-binary', 'via token command', `${api}/v1/token-command`],
        // The token comes from the command; the CA still from the issuer.
        ['--token-command', tokenCommand, '--gateway', h.proxyUrl, '--issuer', h.auth.url],
      );
      expect(result, result.stderr).toMatchObject({ code: 0, stdout: 'via token command', stderr: '' });
    });

    it('authenticates with a private key (private_key_jwt)', async () => {
      const result = await reinsRun(
        ['curl', '-s', '--data-binary', 'signed', `${api}/v1/signed`],
        [
          '--agent',
          'signer-es256',
          '--key',
          String(keyFiles.get('signer-es256')),
          '--kid',
          'signer-es256-1',
          '--gateway',
          h.proxyUrl,
          '--issuer',
          h.auth.url,
        ],
      );
      expect(result, result.stderr).toMatchObject({ code: 0, stdout: 'signed' });
      const seen = h.upstream.seen.find((s) => s.url === '/v1/signed');
      const row = await auditRow(h, String(seen?.headers['x-request-id']));
      expect(row).toMatchObject({ agent: 'signer-es256', decision: 'allowed' });
    });

    it('refuses to start the command when the token cannot be had, exit 1, one line', async () => {
      const marker = join(dir, 'ran');
      const result = await reinsRun(['touch', marker], worker(), { [WORKER_ENV]: 'wrong-secret' });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /^reins: the token endpoint refused the agent worker: invalid_client.*\n$/,
      );
      expect(existsSync(marker)).toBe(false);
    });

    it('exits 3 when the issuer cannot be reached, 2 for a bad option', async () => {
      const port = await closedPort();
      const unreachable = await reinsRun(['true'], [...worker(), '--issuer', `http://127.0.0.1:${port}`]);
      expect(unreachable).toMatchObject({
        code: 3,
        stderr: `reins: cannot reach http://127.0.0.1:${port}: ECONNREFUSED\n`,
      });
      expect((await reinsRun(['true'], [...worker(), '--gateway', 'https://gw.example/x'])).code).toBe(2);
      expect((await reinsRun(['true'], ['--agent', 'worker'])).code).toBe(2);
      expect((await reinsRun(['true'], [...worker(), '--key', 'k.pem'])).code).toBe(2);
      expect((await reinsRun(['true'], worker(), { [WORKER_ENV]: '' })).stderr).toBe(
        `reins: the variable ${WORKER_ENV} (--secret-env) is unset or empty\n`,
      );
    });
  });

  describe('reins env', () => {
    const envJson = async (options: string[]) => {
      const result = await runReins(
        ['env', ...options, '--gateway', h.proxyUrl, '--issuer', h.auth.url, '--format', 'json'],
        { XDG_CACHE_HOME: cache },
      );
      expect(result.code, result.stderr).toBe(0);
      return { vars: JSON.parse(result.stdout) as Record<string, string>, result };
    };
    const curlWith = (vars: Record<string, string>, url: string) =>
      run('curl', ['-s', '--data-binary', 'from env', url], { env: { ...process.env, ...vars } });

    it('prints the variables with the token in the proxy URL, and says when it expires', async () => {
      const { vars, result } = await envJson(['--agent', 'worker', '--secret-env', WORKER_ENV]);
      const gatewayHost = new URL(h.proxyUrl).host;
      expect(Object.keys(vars)).toEqual([
        'HTTP_PROXY',
        'HTTPS_PROXY',
        'http_proxy',
        'https_proxy',
        'NO_PROXY',
        'no_proxy',
        'NODE_USE_ENV_PROXY',
        'NODE_EXTRA_CA_CERTS',
      ]);
      expect(vars.HTTP_PROXY).toMatch(new RegExp(`^http://agent:[A-Za-z0-9_.-]+@${gatewayHost}$`));
      expect(vars).toMatchObject({ NO_PROXY: '', NODE_USE_ENV_PROXY: '1' });
      expect(result.stderr).toMatch(
        /^reins: the token in these variables expires at \d{4}-\d\d-\d\dT.*Z \(in (29\d|300) s\)/,
      );
      const { stdout } = await curlWith(vars, `${api}/v1/env`);
      expect(stdout).toBe('from env');
    });

    it('prints shell exports that a shell can eval', async () => {
      const result = await runReins(['env', ...worker()], { XDG_CACHE_HOME: cache });
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^export HTTP_PROXY='http:\/\/agent:/);
      const { stdout } = await run('sh', [
        '-c',
        `${result.stdout}\ncurl -s --data-binary from-shell ${api}/v1/shell`,
      ]);
      expect(stdout).toBe('from-shell');
    });

    it('obtains tokens with ES256, EdDSA and RS256 keys', async () => {
      await Promise.all(
        SIGNERS.map(async (signer) => {
          const { vars } = await envJson([
            '--agent',
            signer.name,
            '--key',
            String(keyFiles.get(signer.name)),
          ]);
          const { stdout } = await curlWith(vars, `${api}/v1/${signer.name}`);
          expect(stdout, signer.name).toBe('from env');
        }),
      );
    });

    it('points NODE_EXTRA_CA_CERTS at the CA, and the other three at a --bundle it writes', async () => {
      const ca = join(dir, 'env-ca.pem');
      await makeCa(ca);
      const bundle = join(dir, 'bundle.pem');
      const { vars } = await envJson([
        '--agent',
        'worker',
        '--secret-env',
        WORKER_ENV,
        '--ca',
        ca,
        '--bundle',
        bundle,
      ]);
      expect(vars).toMatchObject({
        NODE_EXTRA_CA_CERTS: ca,
        SSL_CERT_FILE: bundle,
        REQUESTS_CA_BUNDLE: bundle,
        CURL_CA_BUNDLE: bundle,
      });
      const text = await readFile(bundle, 'utf8');
      expect(text.endsWith(await readFile(ca, 'utf8'))).toBe(true);
      const noBundle = await envJson(['--agent', 'worker', '--secret-env', WORKER_ENV, '--ca', ca]);
      expect(noBundle.vars.SSL_CERT_FILE).toBeUndefined();
      expect(noBundle.result.stderr).toContain(
        'SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are not set',
      );
    });

    it('without --ca, keeps the issuer’s CA under XDG_CACHE_HOME for NODE_EXTRA_CA_CERTS, and bundles it', async () => {
      const bundle = join(dir, 'issuer-bundle.pem');
      const { vars } = await envJson(['--agent', 'worker', '--secret-env', WORKER_ENV, '--bundle', bundle]);
      const kept = join(cache, 'reins', `interception-ca-${new URL(h.auth.url).host.replace(':', '_')}.pem`);
      expect(vars).toMatchObject({
        NODE_EXTRA_CA_CERTS: kept,
        SSL_CERT_FILE: bundle,
        REQUESTS_CA_BUNDLE: bundle,
        CURL_CA_BUNDLE: bundle,
      });
      expect(await readFile(kept, 'utf8')).toBe(issuerCa);
      expect((await readFile(bundle, 'utf8')).endsWith(issuerCa)).toBe(true);
    });

    it('exits 3 in one line, printing nothing, when the issuer has no CA to give', async () => {
      const port = await closedPort();
      const tokenCommand = `curl -s -u "worker:$${WORKER_ENV}" -d grant_type=client_credentials ${h.auth.url}/token | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])"`;
      const result: ReinsRun = await runReins(
        ['env', '--token-command', tokenCommand, '--issuer', `http://127.0.0.1:${port}`],
        { XDG_CACHE_HOME: cache },
      );
      expect(result).toMatchObject({
        code: 3,
        stdout: '',
        stderr: `reins: cannot fetch the interception CA: cannot reach http://127.0.0.1:${port}: ECONNREFUSED; give --issuer URL, or --ca FILE\n`,
      });
    });
  });
});

/** `env`'s output as a map. */
function parseEnv(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return vars;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A self-signed CA certificate in `file` (openssl, as an operator would make one). */
async function makeCa(file: string): Promise<void> {
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    '/dev/null',
    '-subj',
    '/CN=reins run test CA',
    '-days',
    '1',
    '-out',
    file,
  ]);
}
