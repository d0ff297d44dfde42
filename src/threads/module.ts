// Where a worker thread's module is and how node must run it. A thread's entry module sits beside
// the module that starts it, with that module's own extension: `.ts` when the sources run (vitest,
// `node --import tsx`), `.js` in the build that plain node runs. Sources need tsx in the thread
// too (a devDependency, present wherever sources run); node's own type stripping cannot run them
// (parameter properties).
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ThreadModule {
  readonly url: URL;
  readonly execArgv: string[];
}

/** The module `name` (no extension) beside `importMetaUrl`, the starting module's import.meta.url. */
export function threadModule(name: string, importMetaUrl: string): ThreadModule {
  const extension = extname(fileURLToPath(importMetaUrl));
  return {
    url: new URL(`./${name}${extension}`, importMetaUrl),
    execArgv: [...profiling(), ...(extension === '.ts' ? ['--import', 'tsx'] : [])],
  };
}

/**
 * The process's --cpu-prof flags, so that a profiled process profiles its threads too (the bench's
 * BENCH_GATEWAY_CPU_PROF). Not its --cpu-prof-name: every thread would write the same file; each
 * gets node's default name, which carries its thread id.
 */
function profiling(): string[] {
  return process.execArgv.filter((arg) => arg.startsWith('--cpu-prof') && !arg.startsWith('--cpu-prof-name'));
}
