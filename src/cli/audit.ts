// `reins audit tail` and `reins audit query`: the operator's view of the gateway's audit trail
// (audit_events, written by src/gateway/audit.ts). Read only, apart from applying pending
// migrations as every database command does.
import { Command, Option } from 'commander';
import { FollowCursor } from '../gateway/audit-follow.ts';
import { type AuditFilter, type AuditRecord, lastAuditId, selectAudit } from '../gateway/audit-read.ts';
import {
  type AdminTarget,
  addServerOption,
  adminCall,
  onServerOrDatabase,
  type ServerOptions,
} from './admin-client.ts';
import { countOption, sinceOption } from './arguments.ts';
import { formatRecords, LINE_HELP } from './audit-lines.ts';
import { addDatabaseOptions, type DatabaseOptions } from './database-options.ts';

export { FollowCursor } from '../gateway/audit-follow.ts';
export type { AuditRecord } from '../gateway/audit-read.ts';
export { parseSince } from './arguments.ts';
export { formatLine } from './audit-lines.ts';

/**
 * Where the rows come from: the database, opened by this command, or a running server's admin
 * API (admin-client.ts) — the same queries either way (src/gateway/audit-read.ts).
 */
interface AuditSource {
  select(filter: AuditFilter): Promise<AuditRecord[]>;
  last(): Promise<number>;
}

function remoteSource(target: AdminTarget): AuditSource {
  return {
    async select(filter) {
      const query = new URLSearchParams({ order: filter.order, limit: String(filter.limit) });
      if (filter.after !== undefined) query.set('after', String(filter.after));
      if (filter.ids !== undefined && filter.ids.length > 0) query.set('ids', filter.ids.join(','));
      if (filter.tenant !== undefined) query.set('tenant', filter.tenant);
      if (filter.agent !== undefined) query.set('agent', filter.agent);
      if (filter.since !== undefined) query.set('since', filter.since.toISOString());
      if (filter.decision !== undefined) query.set('decision', filter.decision);
      const { body } = await adminCall<{ events: AuditRecord[] }>(target, 'GET', `audit/events?${query}`);
      return body.events;
    },
    async last() {
      return (await adminCall<{ id: number }>(target, 'GET', 'audit/last')).body.id;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Output

function print(records: readonly AuditRecord[], json: boolean): void {
  const text = formatRecords(records, json);
  if (text !== '') process.stdout.write(text);
}

// ---------------------------------------------------------------------------------------------
// Following

const POLL_MS = 500;
const POLL_ROWS = 1_000;

/** Follows on from the rows `tail` printed, or from the newest row when it printed none (-n 0). */
async function startCursor(source: AuditSource, printed: readonly AuditRecord[]): Promise<FollowCursor> {
  const first = printed[0];
  if (first !== undefined) {
    // Gaps between the printed ids may be rows still committing: watch them too.
    const cursor = new FollowCursor(first.id - 1);
    cursor.saw(
      printed.map((row) => row.id),
      Date.now(),
    );
    return cursor;
  }
  return new FollowCursor(await source.last());
}

/** Ctrl-C, SIGTERM or a closed pipe (`… --follow | head`): each ends following, none a crash. */
interface StopSignal {
  readonly stopped: Promise<void>;
  readonly requested: () => boolean;
  dispose(): void;
}

function listenForStop(): StopSignal {
  let requested = false;
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const onStop = () => {
    requested = true;
    stop();
  };
  process.on('SIGINT', onStop);
  process.on('SIGTERM', onStop);
  process.stdout.on('error', onStop);
  return {
    stopped,
    requested: () => requested,
    dispose() {
      process.off('SIGINT', onStop);
      process.off('SIGTERM', onStop);
      process.stdout.off('error', onStop);
    },
  };
}

async function follow(source: AuditSource, cursor: FollowCursor, signal: StopSignal): Promise<void> {
  while (!signal.requested()) {
    const rows = await source.select({
      after: cursor.after,
      ids: cursor.missing,
      order: 'oldest',
      limit: POLL_ROWS,
    });
    print(rows, false);
    cursor.saw(
      rows.map((row) => row.id),
      Date.now(),
    );
    if (rows.length < POLL_ROWS) {
      await Promise.race([signal.stopped, new Promise((resolve) => setTimeout(resolve, POLL_MS))]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

/** Runs `work` on the running server's admin API when there is one to ask, else on the database. */
function useSource(
  options: DatabaseOptions & ServerOptions,
  work: (source: AuditSource) => Promise<void>,
): Promise<void> {
  return onServerOrDatabase(
    options,
    (target) => work(remoteSource(target)),
    (db) => work({ select: (filter) => selectAudit(db, filter), last: () => lastAuditId(db) }),
  );
}

const EXIT_HELP =
  '\nWhile `reins serve` holds the embedded database, the rows come from it through its admin API\n' +
  '(--server URL asks any server; docs/admin-api.md).\n' +
  '\nExit codes: 0 done, 1 the server refused the admin credential, 2 a bad option value,\n' +
  '3 the database or the server is unavailable.\n';

interface TailOptions extends DatabaseOptions, ServerOptions {
  lines: string;
  follow?: boolean;
}

function tailCommand(): Command {
  const cmd = new Command('tail')
    .description('print the latest audit events, oldest first; --follow keeps printing new ones')
    .option('-n, --lines <n>', 'how many of the latest events to print', '20')
    .option('-f, --follow', `keep polling for new events (every ${POLL_MS} ms) until Ctrl-C`)
    .addHelpText('after', LINE_HELP + EXIT_HELP);
  return addServerOption(addDatabaseOptions(cmd)).action(async (options: TailOptions) => {
    const lines = countOption('-n', options.lines, 0);
    // Listen before the first line is printed: a Ctrl-C right after it must stop cleanly too.
    const signal = options.follow ? listenForStop() : undefined;
    try {
      await useSource(options, async (source) => {
        // -n 0 prints nothing: the query is only made for a positive count.
        const latest = lines === 0 ? [] : await source.select({ order: 'newest', limit: lines });
        print(latest.reverse(), false);
        if (signal) await follow(source, await startCursor(source, latest), signal);
      });
    } finally {
      signal?.dispose();
    }
  });
}

interface QueryOptions extends DatabaseOptions, ServerOptions {
  tenant?: string;
  agent?: string;
  since?: string;
  decision?: 'allowed' | 'denied';
  limit: string;
  json?: boolean;
}

function queryCommand(): Command {
  const cmd = new Command('query')
    .description('print the audit events that match the filters, newest first')
    .option('--tenant <tenant>', 'only this tenant')
    .option('--agent <agent>', "only this agent (the acting agent's client id)")
    .option(
      '--since <when>',
      'only events at or after this: a duration back from now (90s, 30m, 1h, 2d) or an ISO 8601 time (2025-06-01T12:00:00Z; without an offset, local time)',
    )
    .addOption(
      new Option('--decision <decision>', 'only allowed or only denied').choices(['allowed', 'denied']),
    )
    .option('--limit <n>', 'at most this many events', '100')
    .option('--json', 'one JSON object per line, with the audit_events column names')
    .addHelpText('after', LINE_HELP + EXIT_HELP);
  return addServerOption(addDatabaseOptions(cmd)).action(async (options: QueryOptions) => {
    const since = sinceOption(options.since);
    const limit = countOption('--limit', options.limit, 1);
    await useSource(options, async (source) => {
      const records = await source.select({
        tenant: options.tenant,
        agent: options.agent,
        since,
        decision: options.decision,
        order: 'recent',
        limit,
      });
      print(records, options.json === true);
    });
  });
}

export function auditCommand(): Command {
  return new Command('audit')
    .description("read the gateway's audit trail: every allowed and denied request (tail, query)")
    .addHelpText(
      'after',
      '\nEvery gateway decision is one row of audit_events and one JSON log line with Elastic Common\n' +
        'Schema field names (docs/cli.md, "reins audit").\n',
    )
    .addCommand(tailCommand())
    .addCommand(queryCommand());
}
