// The child processes of bench/gateway (bench/gateway-servers.ts forked with a role) and the CPU
// time they spend, read from /proc.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ReinsStats, Role, ServeMessage } from './gateway-wire.ts';

const SERVERS = fileURLToPath(new URL('./gateway-servers.ts', import.meta.url));
/** USER_HZ: the unit of CPU time in /proc/<pid>/stat (100 on every Linux this runs on). */
const CLOCK_TICKS = 100;

export type Ready = Extract<ServeMessage, { kind: 'ready' }>;

export interface Child {
  readonly ready: Ready;
  readonly pid: number | undefined;
  stats(): Promise<ReinsStats>;
  stop(): Promise<void>;
}

/** BENCH_GATEWAY_NODE_FLAGS: extra flags for every server's node, e.g. `--trace-gc-nvp`. */
function nodeFlags(): string[] {
  return (process.env.BENCH_GATEWAY_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
}

export async function startChild(role: Role, name: string, env: Record<string, string> = {}): Promise<Child> {
  const profileDir = process.env.BENCH_GATEWAY_CPU_PROF;
  const profile = profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`]
    : [];
  const child: ChildProcess = fork(SERVERS, [], {
    execArgv: ['--import', 'tsx', ...profile, ...nodeFlags()],
    env: { ...process.env, ...env, BENCH_GATEWAY_SERVE: role },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = once(child, 'exit');
  const [message] = (await Promise.race([once(child, 'message'), exited])) as [ServeMessage | number];
  if (typeof message !== 'object' || message.kind !== 'ready') {
    const why = typeof message === 'object' && message.kind === 'error' ? message.error : `exit ${message}`;
    child.kill();
    throw new Error(`the ${name} server did not start: ${why}`);
  }
  return {
    ready: message,
    pid: child.pid,
    stats() {
      const answer = new Promise<ReinsStats>((resolve) => {
        const onMessage = (m: ServeMessage) => {
          if (m.kind !== 'stats') return;
          child.off('message', onMessage);
          resolve(m.stats);
        };
        child.on('message', onMessage);
      });
      child.send('stats');
      return answer;
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * CPU seconds (user + system, all threads) a process has used so far, from /proc (Linux); NaN
 * elsewhere.
 */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (which may hold spaces) start at field 3, state;
    // utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}
