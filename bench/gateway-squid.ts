// squid from Debian as the peer of bench/gateway: a forward proxy allowing one domain, no cache,
// no access log, run in the foreground with a generated configuration in a temporary directory
// and killed at the end. Installed with apt-get when missing (full runs as root only; Debian's
// squid-openssl, which also does ssl_bump); in smoke mode nothing is installed, and without squid
// its row is skipped with a note: the benchmark never fails for want of it.
//
// With `bump`, squid intercepts TLS as the inspected tunnels of reins do: it peeks at the
// ClientHello, then terminates it with a certificate generated for the host (security_file_certgen,
// signed by a throwaway CA made here with openssl) and talks TLS to the upstream itself, verifying
// it against the given CA.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, chmodSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface Squid {
  readonly url: string;
  readonly pid: number | undefined;
  /** `squid -v`'s first line. */
  readonly version: string;
  /** With `bump`: the CA of the certificates squid makes for intercepted hosts. */
  readonly caPem?: string;
  stop(): Promise<void>;
}

export interface SquidOptions {
  /** Intercept CONNECT tunnels (ssl_bump), verifying the upstream against this CA. */
  readonly bump?: { readonly upstreamCaPem: string };
}

/** Where squid is, installing it when allowed; null (and why) when it cannot be had. */
export function findSquid(install: boolean): { path: string } | { path: null; why: string } {
  const found = onPath('squid');
  if (found !== null) return { path: found };
  if (!install) return { path: null, why: 'squid is not installed (smoke mode installs nothing)' };
  if (process.getuid?.() !== 0) return { path: null, why: 'squid is not installed and this is not root' };
  console.log('bench/gateway: squid not found; installing it with apt-get (Debian)…');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const steps = [
    ['apt-get', ['update', '-qq']],
    ['apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'squid-openssl']],
  ] as const;
  for (const [command, args] of steps) {
    const result = spawnSync(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
    if (result.status !== 0) {
      const why = result.error?.message ?? result.stderr?.toString().trim().split('\n').pop() ?? '';
      return { path: null, why: `${command} ${args.join(' ')} failed: ${why}` };
    }
  }
  const installed = onPath('squid');
  return installed === null
    ? { path: null, why: 'squid still not found after apt-get install' }
    : { path: installed };
}

/** Why this squid cannot ssl_bump, or null when it can (built with OpenSSL, certgen helper present). */
export function whyNoBump(path: string): string | null {
  const configure = spawnSync(path, ['-v'], { encoding: 'utf8' }).stdout ?? '';
  if (!configure.includes('--with-openssl'))
    return 'this squid is built without OpenSSL (Debian: squid-openssl)';
  try {
    accessSync(CERTGEN, constants.X_OK);
  } catch {
    return `${CERTGEN} is missing`;
  }
  if (onPath('openssl') === null) return 'openssl (to make the bump CA) is not installed';
  return null;
}

const CERTGEN = '/usr/lib/squid/security_file_certgen';

function onPath(name: string): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin']);
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return null;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The ssl_bump part of squid.conf, its CA and certificate store made in `dir`. */
function bumpConfig(dir: string, port: number, upstreamCaPem: string): { lines: string[]; caPem: string } {
  const cert = join(dir, 'bump-ca.pem');
  const key = join(dir, 'bump-ca.key');
  const db = join(dir, 'ssl_db');
  const run = (command: string, args: string[]) => {
    const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    if (result.status !== 0) {
      throw new Error(
        `${command} ${args[0]} failed: ${result.stderr?.toString().trim().split('\n').pop() ?? ''}`,
      );
    }
  };
  run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=reins bench squid bump CA',
    '-keyout',
    key,
    '-out',
    cert,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  run(CERTGEN, ['-c', '-s', db, '-M', '4MB']);
  writeFileSync(join(dir, 'upstream-ca.pem'), upstreamCaPem);
  // squid (as proxy, when started as root) reads the CA and writes the certificate store.
  run('chmod', ['-R', 'a+rwX', dir]);
  return {
    caPem: readFileSync(cert, 'utf8'),
    lines: [
      `http_port 127.0.0.1:${port} ssl-bump tls-cert=${cert} tls-key=${key} generate-host-certificates=on dynamic_cert_mem_cache_size=4MB`,
      `sslcrtd_program ${CERTGEN} -s ${db} -M 4MB`,
      'sslcrtd_children 2 startup=1 idle=1',
      'acl step1 at_step SslBump1',
      'ssl_bump peek step1',
      'ssl_bump bump all',
      `tls_outgoing_options cafile=${join(dir, 'upstream-ca.pem')}`,
    ],
  };
}

/** Starts `squid -N` allowing only `domain`, which its hosts file maps to 127.0.0.1. */
export async function startSquid(path: string, domain: string, options: SquidOptions = {}): Promise<Squid> {
  const dir = mkdtempSync(join(tmpdir(), 'reins-bench-squid-'));
  // Started as root, squid drops to its cache_effective_user (Debian: proxy), which must be able
  // to write its pid file and cache.log here.
  chmodSync(dir, 0o777);
  const port = await freePort();
  writeFileSync(join(dir, 'hosts'), `127.0.0.1 ${domain}\n`);
  let bump: { lines: string[]; caPem: string } | undefined;
  try {
    bump = options.bump && bumpConfig(dir, port, options.bump.upstreamCaPem);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const conf = [
    ...(bump ? bump.lines : [`http_port 127.0.0.1:${port}`]),
    // -n: no reverse lookup, so an IP literal is never taken for the allowed name.
    `acl allowed dstdomain -n ${domain}`,
    'http_access allow allowed',
    'http_access deny all',
    `hosts_file ${join(dir, 'hosts')}`,
    'cache deny all',
    'cache_mem 0 MB',
    'access_log none',
    'cache_store_log none',
    `cache_log ${join(dir, 'cache.log')}`,
    `pid_filename ${join(dir, 'squid.pid')}`,
    `coredump_dir ${dir}`,
    'logfile_rotate 0',
    'shutdown_lifetime 0 seconds',
    'visible_hostname reins-bench',
    '',
  ].join('\n');
  writeFileSync(join(dir, 'squid.conf'), conf);
  const version = spawnSync(path, ['-v'], { encoding: 'utf8' }).stdout?.split('\n')[0]?.trim() ?? 'squid';
  const child: ChildProcess = spawn(path, ['-N', '-f', join(dir, 'squid.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  let exited = false;
  const exit = once(child, 'exit').then(() => {
    exited = true;
  });
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exit;
      clearTimeout(timer);
    }
    cleanup();
  };
  for (let waited = 0; !(await canConnect(port)); waited += 50) {
    if (exited || waited > 15_000) {
      let log = '';
      try {
        log = readFileSync(join(dir, 'cache.log'), 'utf8');
      } catch {}
      await stop();
      const last = `${stderr}\n${log}`.trim().split('\n').slice(-3).join(' / ');
      throw new Error(`squid did not start: ${last}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `http://127.0.0.1:${port}`, pid: child.pid, version, caPem: bump?.caPem, stop };
}
