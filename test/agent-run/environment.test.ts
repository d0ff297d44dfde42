// The variables the command is given, how `reins env` prints them, and the CA files behind
// the CA variables.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleText, readCa, saveFetchedCa, temporaryCaFiles } from '../../src/agent-run/ca-bundle.ts';
import { plainHttpOffLoopback } from '../../src/agent-run/ca-fetch.ts';
import { childEnvironment, formatVariables, proxyVariables } from '../../src/agent-run/environment.ts';

const run = promisify(execFile);
const PROXY = 'http://reins:credential@127.0.0.1:40000';

describe('proxyVariables', () => {
  it('points both cases of HTTP(S)_PROXY at the proxy, empties NO_PROXY, and opts Node in', () => {
    expect(proxyVariables(PROXY, undefined)).toEqual({
      HTTP_PROXY: PROXY,
      HTTPS_PROXY: PROXY,
      http_proxy: PROXY,
      https_proxy: PROXY,
      NO_PROXY: '',
      no_proxy: '',
      NODE_USE_ENV_PROXY: '1',
    });
  });

  it('adds the CA to Node and the bundle for the tools whose roots it replaces', () => {
    expect(proxyVariables(PROXY, { certificate: '/ca.pem', bundle: '/bundle.pem' })).toMatchObject({
      NODE_EXTRA_CA_CERTS: '/ca.pem',
      SSL_CERT_FILE: '/bundle.pem',
      REQUESTS_CA_BUNDLE: '/bundle.pem',
      CURL_CA_BUNDLE: '/bundle.pem',
    });
  });

  it('never points the replacing variables at the CA alone', () => {
    const vars = proxyVariables(PROXY, { certificate: '/ca.pem' });
    expect(vars.NODE_EXTRA_CA_CERTS).toBe('/ca.pem');
    for (const name of ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'])
      expect(vars[name]).toBeUndefined();
  });
});

describe('childEnvironment', () => {
  it('keeps the caller’s variables, sets the proxy ones, and removes the no-proxy lists', () => {
    const env = childEnvironment(
      { PATH: '/bin', HTTP_PROXY: 'http://old', NO_PROXY: 'api.test', no_proxy: '*', GONE: undefined },
      proxyVariables(PROXY, undefined),
    );
    expect(env).toEqual({
      PATH: '/bin',
      HTTP_PROXY: PROXY,
      HTTPS_PROXY: PROXY,
      http_proxy: PROXY,
      https_proxy: PROXY,
      NODE_USE_ENV_PROXY: '1',
    });
  });
});

describe('what the command is not given', () => {
  it('withholds the admin credential, the database URL, the key secret and the agent’s own secret variable', () => {
    const env = childEnvironment(
      {
        PATH: '/bin',
        REINS_ADMIN_TOKEN: 'a'.repeat(40),
        REINS_SERVER: 'http://127.0.0.1:9464',
        DATABASE_URL: 'postgres://u:p@db/reins',
        REINS_SECRET_KEY: 'k',
        BILLING_SECRET: 's',
        OTHER: 'kept',
      },
      proxyVariables(PROXY, undefined),
      ['BILLING_SECRET'],
    );
    for (const name of [
      'REINS_ADMIN_TOKEN',
      'REINS_SERVER',
      'DATABASE_URL',
      'REINS_SECRET_KEY',
      'BILLING_SECRET',
    ]) {
      expect(env[name], name).toBeUndefined();
    }
    expect(env).toMatchObject({ PATH: '/bin', OTHER: 'kept', HTTP_PROXY: PROXY });
  });
});

describe('formatVariables', () => {
  const vars = { HTTP_PROXY: PROXY, NO_PROXY: '', ODD: 'it\'s $HOME and `x` \\ "q"' };

  it('writes shell exports that a shell reads back exactly', async () => {
    const text = formatVariables(vars, 'shell');
    expect(text.split('\n')[0]).toBe(`export HTTP_PROXY='${PROXY}'`);
    const { stdout } = await run('sh', ['-c', `${text}printf '%s|%s|%s' "$HTTP_PROXY" "$NO_PROXY" "$ODD"`]);
    expect(stdout).toBe(`${PROXY}||${vars.ODD}`);
  });

  it('writes dotenv lines unquoted, as docker --env-file reads them', () => {
    expect(formatVariables({ HTTP_PROXY: PROXY, NO_PROXY: '' }, 'dotenv')).toBe(
      `HTTP_PROXY=${PROXY}\nNO_PROXY=\n`,
    );
  });

  it('writes one JSON object', () => {
    expect(JSON.parse(formatVariables(vars, 'json'))).toEqual(vars);
  });
});

describe('the CA files', () => {
  let dir: string;
  let caPem: string;
  let otherPem: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'reins-ca-test-'));
    caPem = await makeCert(join(dir, 'ca.pem'), 'reins test CA');
    otherPem = await makeCert(join(dir, 'internal.pem'), 'internal CA');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the certificates of a PEM file, ignoring what surrounds them', async () => {
    const file = join(dir, 'with-text.pem');
    await writeFile(file, `subject=CN = reins test CA\n${caPem}`);
    const ca = await readCa(file);
    expect(ca).toEqual({ path: file, pem: caPem });
  });

  it.each([
    ['a missing file', 'missing.pem', undefined, 'ca_unreadable'],
    [
      'a file without a certificate',
      'key.pem',
      '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n',
      'ca_invalid',
    ],
    [
      'a damaged certificate',
      'bad.pem',
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
      'ca_invalid',
    ],
  ])('refuses %s', async (_name, name, text, code) => {
    if (text !== undefined) await writeFile(join(dir, name), text);
    await expect(readCa(join(dir, name))).rejects.toMatchObject({ code });
  });

  it('bundles Node’s roots, the bundles the caller named, and the CA last', async () => {
    const text = await bundleText(caPem, {
      SSL_CERT_FILE: join(dir, 'internal.pem'),
      CURL_CA_BUNDLE: '/no/such/file',
    });
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    expect(blocks).toHaveLength(rootCertificates.length + 2);
    expect(blocks.at(-2)).toBe(otherPem.trim());
    expect(blocks.at(-1)).toBe(caPem.trim());
  });

  it('writes the bundle to a private directory that remove() deletes; NODE_EXTRA_CA_CERTS is the CA', async () => {
    const files = await temporaryCaFiles(await readCa(join(dir, 'ca.pem')), {});
    expect(files.certificate).toBe(join(dir, 'ca.pem'));
    expect(await readFile(String(files.bundle), 'utf8')).toContain(caPem.trim());
    await files.remove();
    expect(existsSync(String(files.bundle))).toBe(false);
  });

  it('keeps the caller’s NODE_EXTRA_CA_CERTS beside the CA', async () => {
    const files = await temporaryCaFiles(await readCa(join(dir, 'ca.pem')), {
      NODE_EXTRA_CA_CERTS: join(dir, 'internal.pem'),
    });
    expect(files.certificate).not.toBe(join(dir, 'ca.pem'));
    expect(await readFile(files.certificate, 'utf8')).toBe(`${otherPem.trim()}\n${caPem.trim()}\n`);
    await files.remove();
    expect(existsSync(files.certificate)).toBe(false);
  });

  it('writes a CA fetched from the issuer (no file of its own) beside the bundle, and removes both', async () => {
    const files = await temporaryCaFiles({ pem: caPem }, {});
    expect(files.certificate.startsWith(tmpdir())).toBe(true);
    expect(await readFile(files.certificate, 'utf8')).toBe(caPem);
    expect((await stat(files.certificate)).mode & 0o777).toBe(0o600);
    await files.remove();
    expect(existsSync(files.certificate)).toBe(false);
    expect(existsSync(String(files.bundle))).toBe(false);
  });

  it('keeps a CA `reins env` fetched under XDG_CACHE_HOME, one file per issuer, replaced whole', async () => {
    const cache = join(dir, 'cache');
    const first = await saveFetchedCa('http://127.0.0.1:3000', otherPem, { XDG_CACHE_HOME: cache });
    expect(first).toBe(join(cache, 'reins', 'interception-ca-127.0.0.1_3000.pem'));
    const again = await saveFetchedCa('http://127.0.0.1:3000/', caPem, { XDG_CACHE_HOME: cache });
    expect(again).toBe(first);
    expect(await readFile(first, 'utf8')).toBe(caPem);
    expect((await stat(first)).mode & 0o777).toBe(0o644);
    const other = await saveFetchedCa('https://auth.example.com', caPem, { XDG_CACHE_HOME: cache });
    expect(other).toBe(join(cache, 'reins', 'interception-ca-auth.example.com.pem'));
  });
});

describe('plainHttpOffLoopback', () => {
  it.each([
    ['http://127.0.0.1:3000/ca.pem', false],
    ['http://127.9.9.9/ca.pem', false],
    ['http://localhost:3000/ca.pem', false],
    ['http://reins.localhost/ca.pem', false],
    ['http://[::1]:3000/ca.pem', false],
    ['https://auth.example.com/ca.pem', false],
    ['https://10.0.0.5/ca.pem', false],
    ['http://auth.example.com/ca.pem', true],
    ['http://10.0.0.5:3000/ca.pem', true],
    ['http://127.0.0.1.example.com/ca.pem', true],
    ['http://[::2]/ca.pem', true],
  ])('%s → warn: %s', (url, warn) => {
    expect(plainHttpOffLoopback(url)).toBe(warn);
  });
});

/** A self-signed certificate written to `file`; returns its PEM. */
async function makeCert(file: string, name: string): Promise<string> {
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
    `/CN=${name}`,
    '-days',
    '1',
    '-out',
    file,
  ]);
  return readFile(file, 'utf8');
}
