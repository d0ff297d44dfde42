// squid from Debian as the peer of bench/gateway: a forward proxy allowing one domain, no cache,
// no access log, run in the foreground with a generated configuration in a temporary directory
// and killed at the end. Installed with apt-get when missing (full runs as root only); in smoke
// mode nothing is installed, and without squid its row is skipped with a note: the benchmark
// never fails for want of it.
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
  stop(): Promise<void>;
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
    ['apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'squid']],
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

/** Starts `squid -N` allowing only `domain`, which its hosts file maps to 127.0.0.1. */
export async function startSquid(path: string, domain: string): Promise<Squid> {
  const dir = mkdtempSync(join(tmpdir(), 'reins-bench-squid-'));
  // Started as root, squid drops to its cache_effective_user (Debian: proxy), which must be able
  // to write its pid file and cache.log here.
  chmodSync(dir, 0o777);
  const port = await freePort();
  writeFileSync(join(dir, 'hosts'), `127.0.0.1 ${domain}\n`);
  const conf = [
    `http_port 127.0.0.1:${port}`,
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
  return { url: `http://127.0.0.1:${port}`, pid: child.pid, version, stop };
}
