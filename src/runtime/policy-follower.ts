// REINS_POLICIES, followed: applied at start when it differs from what the database holds,
// re-read on SIGHUP (service.ts calls reload) and, with `serve --watch`, when its files change.
// A valid change is applied and its plan logged; an invalid one is refused with every
// `file:line:column` error and the last good version stays applied — a typo saved in an editor
// must never take a running gateway's policy away.
import { type FSWatcher, watch } from 'node:fs';
import { type ExampleCredential, exampleCredentials } from '../policy/examples.ts';
import {
  type Diagnostic,
  formatDiagnostic,
  loadPolicyDir,
  type PolicyModel,
  readAppliedPolicy,
} from '../policy/index.ts';
import { applyReport, checkSources } from '../policy/operations.ts';
import type { Db } from '../store/db.ts';
import type { Logger } from './logger.ts';
import { StartError } from './start-error.ts';

export type ReloadOutcome =
  | { readonly status: 'applied' | 'unchanged'; readonly version: number }
  | { readonly status: 'refused'; readonly diagnostics: readonly Diagnostic[]; readonly message: string };

export interface PolicyFollower {
  /** The version applied by this process at start or since (the database may hold a newer one). */
  version(): number;
  /** The model of the files this process last applied (or found applied). */
  model(): PolicyModel;
  /** The example credentials of the files last applied (examples.ts): what `serve` prints uses them. */
  examples(): readonly ExampleCredential[];
  /** How the start went, in one line for the operator. */
  readonly startLine: string;
  reload(cause: string): Promise<ReloadOutcome>;
  close(): Promise<void>;
}

// Editors save in bursts (write, rename, chmod): one reload after the burst, not one per event.
const WATCH_SETTLE_MS = 200;

export async function startPolicyFollower(
  db: Db,
  dir: string,
  log: Logger,
  options: { watch: boolean },
): Promise<PolicyFollower> {
  const current = await readAppliedPolicy(db);
  let version = current.version?.version ?? 0;
  let model = current.model;
  let examples: readonly ExampleCredential[] = [];
  /** The content hash this process last applied or found applied: another apply shows as a change. */
  let followed: string | null = null;

  const first = await applyDir(db, dir);
  if (first.status === 'refused') {
    throw new StartError('policy_invalid', first.message, first.diagnostics);
  }
  for (const d of first.warnings) log.warn({ diagnostic: formatDiagnostic(d) }, 'policy warning');
  const previous = version;
  version = first.version;
  model = first.model;
  examples = first.examples;
  followed = first.contentHash;
  const startLine =
    first.status === 'unchanged'
      ? `policies: ${dir} is already applied (version ${version}); nothing changed`
      : previous === 0
        ? `policies: applied ${dir} as version ${version}`
        : `policies: ${dir} differs from the applied version ${previous}; applied it as version ${version}`;
  log.info({ status: first.status, version }, startLine);

  // One reload at a time: a SIGHUP during a reload queues behind it.
  let queue: Promise<unknown> = Promise.resolve();
  const reload = (cause: string): Promise<ReloadOutcome> => {
    const run = queue.then(async (): Promise<ReloadOutcome> => {
      // `reins policy apply` of other files since: say that this reload replaces them, so an
      // apply undone by a HUP (logrotate, a deploy) is never a silent surprise.
      const latest = (await readAppliedPolicy(db).catch(() => null))?.version;
      if (latest && followed !== null && latest.contentHash !== followed) {
        log.warn(
          { cause, replacing: latest.version, files: latest.files },
          `policy reload: version ${latest.version} was applied from elsewhere (reins policy apply); ${dir} replaces it if valid`,
        );
      }
      const outcome = await applyDir(db, dir).catch((err: unknown) => ({
        status: 'refused' as const,
        diagnostics: [],
        warnings: [],
        message: err instanceof Error ? err.message : String(err),
      }));
      if (outcome.status === 'refused') {
        log.error(
          { cause, errors: outcome.diagnostics.map(formatDiagnostic), keptVersion: version },
          `policy reload refused: ${outcome.message}; version ${version} stays applied`,
        );
        return { status: 'refused', diagnostics: outcome.diagnostics, message: outcome.message };
      }
      for (const d of outcome.warnings) log.warn({ diagnostic: formatDiagnostic(d) }, 'policy warning');
      version = outcome.version;
      model = outcome.model;
      examples = outcome.examples;
      followed = outcome.contentHash;
      if (outcome.status === 'applied') {
        log.info({ cause, version, plan: outcome.text }, `policy reloaded: applied version ${version}`);
      } else {
        log.info({ cause, version }, 'policy reload: nothing changed');
      }
      return { status: outcome.status, version };
    });
    queue = run.catch(() => {});
    return run;
  };

  let watcher: FSWatcher | undefined;
  let settle: NodeJS.Timeout | undefined;
  if (options.watch) {
    watcher = watch(dir, { recursive: true }, () => {
      clearTimeout(settle);
      settle = setTimeout(() => void reload('files changed'), WATCH_SETTLE_MS);
    });
    watcher.on('error', (err) => log.warn({ err }, 'cannot watch the policy directory'));
  }

  return {
    version: () => version,
    model: () => model,
    examples: () => examples,
    startLine,
    reload,
    async close() {
      clearTimeout(settle);
      watcher?.close();
      await queue;
    },
  };
}

type DirOutcome =
  | {
      readonly status: 'applied' | 'unchanged';
      readonly version: number;
      readonly model: PolicyModel;
      readonly text: string;
      readonly warnings: readonly Diagnostic[];
      readonly examples: readonly ExampleCredential[];
      readonly contentHash: string;
    }
  | {
      readonly status: 'refused';
      readonly diagnostics: readonly Diagnostic[];
      readonly warnings: readonly Diagnostic[];
      readonly message: string;
    };

async function applyDir(db: Db, dir: string): Promise<DirOutcome> {
  const checked = checkSources(await loadPolicyDir(dir));
  if (!checked.ok) {
    return {
      status: 'refused',
      diagnostics: checked.diagnostics,
      warnings: [],
      message: `the policies in ${dir} have errors`,
    };
  }
  const report = await applyReport(db, checked.checked);
  return {
    status: report.status,
    version: report.version,
    model: checked.checked.model,
    text: report.text,
    warnings: checked.diagnostics,
    examples: exampleCredentials(checked.checked.sources),
    contentHash: checked.checked.contentHash,
  };
}
