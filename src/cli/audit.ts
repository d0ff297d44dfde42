// `reins audit tail` and `reins audit query`: the operator's view of the gateway's audit trail
// (audit_events, written by src/gateway/audit.ts). Read only, apart from applying pending
// migrations as every database command does.
import { Command, Option } from 'commander';
import type { Db, Queryable } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import {
  addDatabaseOptions,
  type DatabaseOptions,
  openDatabaseFromOptions,
  toCliError,
} from './database-options.ts';
import { CliError, EXIT } from './failure.ts';

/** One audit_events row as the commands print it. */
export interface AuditRecord {
  readonly id: number;
  readonly time: string;
  readonly request_id: string;
  readonly tenant: string | null;
  readonly agent: string | null;
  readonly subject: string | null;
  readonly delegation_chain: unknown;
  readonly jti: string | null;
  readonly method: string | null;
  readonly scheme: string | null;
  readonly host: string | null;
  readonly port: number | null;
  readonly path: string | null;
  readonly decision: 'allowed' | 'denied';
  readonly reason: string | null;
  readonly matched_rule: string | null;
  readonly resolved_address: string | null;
  readonly inspected: boolean;
  readonly status: number | null;
  readonly bytes_in: number;
  readonly bytes_out: number;
  readonly duration_ms: number | null;
}

// bigint columns as numbers (both backends would otherwise differ: pg returns them as strings).
const SELECT = `select id::float8 as id, time, request_id, tenant, agent, subject, delegation_chain, jti,
  method, scheme, host, port, path, decision, reason, matched_rule, resolved_address, inspected, status,
  bytes_in::float8 as bytes_in, bytes_out::float8 as bytes_out, duration_ms
  from audit_events`;

type Fetched = Omit<AuditRecord, 'time'> & { time: Date };

async function select(db: Queryable, where: string, tail: string, params: unknown[]): Promise<AuditRecord[]> {
  const { rows } = await db.query<Fetched>(`${SELECT} ${where} ${tail}`, params);
  return rows.map((row) => ({ ...row, time: new Date(row.time).toISOString() }));
}

// ---------------------------------------------------------------------------------------------
// Arguments

const UNITS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d{1,9})([smhd])$/;
// A calendar date, optionally with a time of day and an offset (RFC 3339 / ISO 8601 extended).
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

/** `--since`: a duration back from `now` (30m, 1h, 2d) or an ISO 8601 time; undefined if neither. */
export function parseSince(text: string, now: Date): Date | undefined {
  const duration = DURATION.exec(text);
  if (duration) {
    const [, amount = '0', unit = 's'] = duration;
    const since = new Date(now.getTime() - Number(amount) * UNITS[unit as keyof typeof UNITS]);
    return Number.isNaN(since.getTime()) ? undefined : since;
  }
  if (!ISO_TIME.test(text)) return undefined;
  const since = new Date(text);
  return Number.isNaN(since.getTime()) ? undefined : since;
}

function sinceOption(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const since = parseSince(text, new Date());
  if (since === undefined) {
    throw new CliError(
      `--since ${JSON.stringify(text)}: give a duration back from now (90s, 30m, 1h, 2d) or an ISO 8601 time (2025-06-01T12:00:00Z)`,
      EXIT.usage,
    );
  }
  return since;
}

function countOption(name: string, text: string, min: number): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < min) {
    throw new CliError(`${name} ${JSON.stringify(text)}: give a whole number, at least ${min}`, EXIT.usage);
  }
  return Number(text);
}

// ---------------------------------------------------------------------------------------------
// Output

// Threat: the host, path and names come from agents' requests. Printed raw, a control character
// (an ANSI escape, a carriage return) could rewrite the operator's terminal or forge a line.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters escaped.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function safe(value: string | number | null): string {
  if (value === null) return '-';
  return String(value).replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function destination(record: AuditRecord): string {
  if (record.host === null) return '-';
  const host = record.host.includes(':') && !record.host.startsWith('[') ? `[${record.host}]` : record.host;
  const port = record.port === null ? '' : `:${record.port}`;
  return `${record.scheme ?? '-'}://${host}${port}${record.path ?? ''}`;
}

/** One line: time, decision, reason, tenant, agent, method, destination, status. */
export function formatLine(record: AuditRecord): string {
  return [
    record.time,
    record.decision.padEnd(7),
    record.reason,
    record.tenant,
    record.agent,
    record.method,
    destination(record),
    record.status,
  ]
    .map((value) => safe(value))
    .join('  ');
}

function print(records: readonly AuditRecord[], json: boolean): void {
  if (records.length === 0) return;
  const lines = records.map((record) => (json ? JSON.stringify(record) : formatLine(record)));
  process.stdout.write(`${lines.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------
// Following

const POLL_MS = 500;
const POLL_ROWS = 1_000;
// Ids are drawn at insert but become visible at commit: with several gateways writing, id 41 can
// commit after id 42 was printed. An id skipped over is watched for this long, then given up
// (a rolled-back insert leaves a gap for ever). Gaps wider than GAP_LIMIT are not watched.
const GAP_WATCH_MS = 30_000;
const GAP_LIMIT = 10_000;

/** Which ids `tail --follow` has yet to see. */
export class FollowCursor {
  #last: number;
  readonly #missing = new Map<number, number>();

  constructor(last: number) {
    this.#last = last;
  }

  get after(): number {
    return this.#last;
  }

  /** Ids skipped over and still watched for. */
  get missing(): number[] {
    return [...this.#missing.keys()];
  }

  /** Records the ids of rows just printed, at `nowMs`. */
  saw(ids: readonly number[], nowMs: number): void {
    for (const id of [...ids].sort((a, b) => a - b)) {
      this.#missing.delete(id);
      if (id <= this.#last) continue;
      if (id - this.#last - 1 <= GAP_LIMIT) {
        for (let gap = this.#last + 1; gap < id; gap++) this.#missing.set(gap, nowMs);
      }
      this.#last = id;
    }
    for (const [id, since] of this.#missing) {
      if (nowMs - since > GAP_WATCH_MS) this.#missing.delete(id);
    }
  }
}

/** Follows on from the rows `tail` printed, or from the newest row when it printed none (-n 0). */
async function startCursor(db: Queryable, printed: readonly AuditRecord[]): Promise<FollowCursor> {
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
  const { rows } = await db.query<{ last: number }>(
    'select coalesce(max(id), 0)::float8 as last from audit_events',
  );
  return new FollowCursor(rows[0]?.last ?? 0);
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

async function follow(db: Queryable, cursor: FollowCursor, signal: StopSignal): Promise<void> {
  while (!signal.requested()) {
    const rows = await select(db, 'where id > $1 or id = any($2::bigint[])', 'order by id limit $3', [
      cursor.after,
      cursor.missing,
      POLL_ROWS,
    ]);
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

async function useDatabase(options: DatabaseOptions, work: (db: Db) => Promise<void>): Promise<void> {
  const db = await openDatabaseFromOptions(options);
  try {
    // Like `keys`, apply pending migrations first, so a fresh database answers instead of failing.
    await migrate(db);
    await work(db);
  } catch (err) {
    throw toCliError(err);
  } finally {
    await db.close();
  }
}

const LINE_HELP =
  '\nEach line: time (UTC), decision, reason, tenant, agent, method, scheme://host:port/path, status;\n' +
  '"-" where a value is unknown (a 407 has no tenant). Paths never carry the query string: it is\n' +
  'never stored. Control characters are printed escaped (\\u001b).\n';

const EXIT_HELP =
  '\nExit codes: 0 done, 2 a bad option value, 3 the database is unavailable (or the embedded\n' +
  'database is in use by `reins serve`: use PostgreSQL, DATABASE_URL, to read it while it runs).\n';

interface TailOptions extends DatabaseOptions {
  lines: string;
  follow?: boolean;
}

function tailCommand(): Command {
  const cmd = new Command('tail')
    .description('print the latest audit events, oldest first; --follow keeps printing new ones')
    .option('-n, --lines <n>', 'how many of the latest events to print', '20')
    .option('-f, --follow', `keep polling for new events (every ${POLL_MS} ms) until Ctrl-C`)
    .addHelpText('after', LINE_HELP + EXIT_HELP);
  return addDatabaseOptions(cmd).action(async (options: TailOptions) => {
    const lines = countOption('-n', options.lines, 0);
    // Listen before the first line is printed: a Ctrl-C right after it must stop cleanly too.
    const signal = options.follow ? listenForStop() : undefined;
    try {
      await useDatabase(options, async (db) => {
        const latest = await select(db, '', 'order by id desc limit $1', [lines]);
        print(latest.reverse(), false);
        if (signal) await follow(db, await startCursor(db, latest), signal);
      });
    } finally {
      signal?.dispose();
    }
  });
}

interface QueryOptions extends DatabaseOptions {
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
  return addDatabaseOptions(cmd).action(async (options: QueryOptions) => {
    const since = sinceOption(options.since);
    const limit = countOption('--limit', options.limit, 1);
    const conditions: string[] = [];
    const params: unknown[] = [];
    const where = (column: string, operator: string, value: unknown) => {
      params.push(value);
      conditions.push(`${column} ${operator} $${params.length}`);
    };
    if (options.tenant !== undefined) where('tenant', '=', options.tenant);
    if (options.agent !== undefined) where('agent', '=', options.agent);
    if (since !== undefined) where('time', '>=', since);
    if (options.decision !== undefined) where('decision', '=', options.decision);
    params.push(limit);
    await useDatabase(options, async (db) => {
      const records = await select(
        db,
        conditions.length === 0 ? '' : `where ${conditions.join(' and ')}`,
        `order by time desc, id desc limit $${params.length}`,
        params,
      );
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
