// The audit writer: every gateway decision, allowed or denied, becomes one durable row of
// audit_events written in batches off the request path, and one JSON log line (ECS field names,
// audit-format.ts) at once. Both follow the gateway's event stream (observeAudit, observeLog).
//
// Group commit, as in the token ledger (src/server/provider/ledger-batch.ts), but since nobody
// waits for an audit row (a request is answered without waiting for the database), a row may
// wait a little for others: a batch is written once maxBatch rows are queued or flushDelayMs
// (10 ms) after the first row came or the previous write ended, whichever comes first. One batch
// is in flight at a time; rows arriving meanwhile form the next one. Why wait: every INSERT is a commit, and on PostgreSQL a
// commit waits for its WAL flush; written on the next turn of the event loop, batches held about
// 5 rows at 3,000 requests/s (600 commits/s, more than many disks flush), and after 10 ms 30 to
// 70 (docs/performance.md).
//
// No row is dropped. A failed write keeps its rows at the head of the queue and retries after a
// bounded, doubling backoff (the database may be restarting); onError hears of each failure.
// The queue is bounded: when it is full, record() returns a promise that resolves once a write
// has made room, and the gateway awaits it before taking more work (back-pressure instead of
// unbounded memory or lost rows). drain() writes everything on SIGTERM.
//
// Through a database outage the queue would fill within seconds and hold every request back. With
// a spool (audit-spool.ts), rows go to a bounded local file instead once a write has failed: the
// queue is moved there whole (fsync'd as one group) whenever it holds a batch's worth, so the
// gateway keeps answering for as long as the file has room; once the database answers again the
// file is replayed, in order, before any row recorded after it. drain() during an outage moves
// what is queued to the file and resolves: the next start replays it.
//
// The one exception: a row PostgreSQL refuses for its content (a data, constraint or size error,
// which no retry can fix) would otherwise block every row behind it for ever, and with back-pressure
// the gateway itself. Rows are cleaned before they are queued so that this cannot happen (NUL
// characters, out-of-range numbers); should it happen anyway, the batch is written row by row and
// only the refused row is set aside, reported to onError as `audit_row_rejected`. Its JSON log
// line has been written already.
import type { Queryable } from '../store/db.ts';
import { type AuditEvent, ecsFields, pathWithoutQuery } from './audit-format.ts';
import type { AuditSpool } from './audit-spool.ts';
import type { ExchangeStream } from './events.ts';

export { type AuditDecision, type AuditEvent, ecsFields } from './audit-format.ts';

/** What the writer and the log line need of a logger; a pino Logger is one. */
export interface AuditLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

/**
 * Queues a row for every exchange of `stream`; while the writer's queue is full, the stream holds
 * the gateway back (events.ts, back-pressure). Returns the unsubscribe.
 */
export function observeAudit(stream: ExchangeStream, writer: AuditWriter): () => void {
  return stream.subscribe((event) => writer.record(event));
}

/** Writes the ECS log line of every exchange of `stream`, at once. Returns the unsubscribe. */
export function observeLog(stream: ExchangeStream, logger: Pick<AuditLogger, 'info'>): () => void {
  return stream.subscribe((event) => {
    logger.info(ecsFields(event), `egress ${event.decision}`);
  });
}

export interface AuditWriterOptions {
  /** Rows held before record() asks callers to wait. Default 10,000. */
  readonly maxQueue?: number;
  /** Rows per INSERT at most. Default 500, at most 5,000. */
  readonly maxBatch?: number;
  /**
   * How long a row may wait for others to share its INSERT while fewer than maxBatch are queued.
   * Default 10 ms; 0 writes on the next turn of the event loop. drain() never waits.
   */
  readonly flushDelayMs?: number;
  /** Told of every failed write (the rows are kept and retried). Default: a warning in the log. */
  readonly onError?: (err: unknown) => void;
  /** Where rows wait while the database cannot take them; without one they wait in the queue. */
  readonly spool?: AuditSpool;
}

export type AuditErrorCode = 'audit_writer_closed' | 'audit_row_rejected';

export class AuditError extends Error {
  constructor(
    readonly code: AuditErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AuditError';
  }
}

const COLUMNS = [
  'time',
  'request_id',
  'tenant',
  'agent',
  'subject',
  'delegation_chain',
  'jti',
  'method',
  'scheme',
  'host',
  'port',
  'path',
  'decision',
  'reason',
  'matched_rule',
  'resolved_address',
  'inspected',
  'status',
  'bytes_in',
  'bytes_out',
  'duration_ms',
  'detail',
] as const;

type Column = (typeof COLUMNS)[number];

/** As in migrations/001_foundation.sql; the chain is read as text and cast to jsonb. */
const COLUMN_TYPES: Record<Column, string> = {
  time: 'timestamptz',
  request_id: 'text',
  tenant: 'text',
  agent: 'text',
  subject: 'text',
  delegation_chain: 'text',
  jti: 'text',
  method: 'text',
  scheme: 'text',
  host: 'text',
  port: 'integer',
  path: 'text',
  decision: 'text',
  reason: 'text',
  matched_rule: 'text',
  resolved_address: 'text',
  inspected: 'boolean',
  status: 'integer',
  bytes_in: 'bigint',
  bytes_out: 'bigint',
  duration_ms: 'double precision',
  detail: 'text',
};

type Row = readonly unknown[];

/** Rows per INSERT at most: one JSON value of some 500 bytes a row. */
const MAX_BATCH_LIMIT = 5_000;
const DEFAULT_FLUSH_DELAY_MS = 10;
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 5_000;

// PostgreSQL refuses NUL in text and in jsonb strings, and a lone UTF-16 surrogate in JSON
// (the rows travel as one JSON parameter): such a row could never be written.
const NUL = /\0/g;
/** A detail is a word or a sentence; bounded so that no request can grow its row. */
const MAX_DETAIL = 500;
const clean = (value: string): string => value.replace(NUL, '\uFFFD').toWellFormed();
const text = (value: string | null): string | null => (value === null ? null : clean(value));
const integerIn = (value: number | null, min: number, max: number): number | null =>
  Number.isInteger(value) && (value as number) >= min && (value as number) <= max ? value : null;
const count = (value: number): number => (Number.isSafeInteger(value) && value > 0 ? value : 0);

/** Strings and object keys cleaned, at every depth (a cycle overflows the stack: caught below). */
function cleanDeep(value: unknown): unknown {
  if (typeof value === 'string') return clean(value);
  if (Array.isArray(value)) return value.map(cleanDeep);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [clean(key), cleanDeep(inner)]));
  }
  return value;
}

function chainJson(chain: unknown): string | null {
  if (chain === null || chain === undefined) return null;
  try {
    return JSON.stringify(cleanDeep(chain)) ?? null;
  } catch {
    // Not JSON (a cycle, a BigInt): nothing a verified token's claim can be.
    return null;
  }
}

/** The row's values in COLUMNS order, cleaned so that PostgreSQL accepts them. */
function toRow(event: AuditEvent, time: Date): Row {
  return [
    time,
    text(event.requestId) ?? '',
    text(event.tenant),
    text(event.agent),
    text(event.subject),
    chainJson(event.delegationChain),
    text(event.jti),
    text(event.method),
    text(event.scheme),
    text(event.host),
    integerIn(event.port, 0, 65_535),
    text(pathWithoutQuery(event.path)),
    event.decision === 'allowed' ? 'allowed' : 'denied',
    text(event.reason),
    text(event.matchedRule),
    text(event.resolvedAddress),
    event.inspected === true,
    integerIn(event.status, 0, 999),
    count(event.bytesIn),
    count(event.bytesOut),
    typeof event.durationMs === 'number' && Number.isFinite(event.durationMs) ? event.durationMs : null,
    text(event.detail?.slice(0, MAX_DETAIL) ?? null),
  ];
}

/** The column list of json_to_recordset: each column's type, the chain as text (cast below). */
const RECORD = COLUMNS.map((name) => `${name} ${COLUMN_TYPES[name]}`).join(', ');
const SELECTED = COLUMNS.map((name) => (name === 'delegation_chain' ? `${name}::jsonb` : name)).join(', ');
// A batch retried after its commit went through unseen (the connection died before the answer)
// finds its rows there already: each exchange's row is written once (migrations/007).
const INSERT = `insert into audit_events (${COLUMNS.join(', ')}) select ${SELECTED} from json_to_recordset($1::json) as r(${RECORD}) on conflict (request_id) do nothing`;

/** A row as one JSON object (the form json_to_recordset reads, and the spool keeps). */
function recordOf(row: Row): string {
  const record: Record<string, unknown> = {};
  COLUMNS.forEach((name, i) => {
    const value = row[i];
    record[name] = value instanceof Date ? value.toISOString() : value;
  });
  return JSON.stringify(record);
}

/**
 * Inserts `records` (recordOf's JSON texts) in one statement: all of them are committed, or none.
 * The rows go as one JSON parameter, so the statement text is the same for every batch and
 * PostgreSQL parses one value instead of 22 per row, whatever the batch size (no 65,535-parameter
 * limit either).
 */
async function insertRecords(db: Queryable, records: readonly string[]): Promise<void> {
  await db.query(INSERT, [`[${records.join(',')}]`]);
}

function requestIdOf(record: string): string {
  try {
    return String((JSON.parse(record) as { request_id?: unknown }).request_id);
  } catch {
    return '(unreadable)';
  }
}

/**
 * SQLSTATE classes 22 (data exception), 23 (integrity constraint) and 54 (program limit
 * exceeded, e.g. an index row too large): the content is the problem, retrying cannot help.
 */
function isRefused(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(?:22|23|54)[0-9A-Z]{3}$/.test(code);
}

export class AuditWriter {
  readonly #db: Queryable;
  readonly #maxQueue: number;
  readonly #maxBatch: number;
  readonly #flushDelayMs: number;
  readonly #onError: (err: unknown) => void;
  // Rows not yet committed, oldest first. The batch being written stays at the head until its
  // statement commits, so a failure leaves it exactly where it was.
  readonly #queue: Row[] = [];
  #roomWaiters: (() => void)[] = [];
  #drainWaiters: (() => void)[] = [];
  #scheduled = false;
  /** The pending flush while it waits out flushDelayMs. */
  #timer: NodeJS.Timeout | undefined;
  #writing = false;
  #closed = false;
  #failures = 0;
  readonly #spool: AuditSpool | undefined;
  /** The last write failed: the database is down (or refusing), rows go to the spool. */
  #down = false;
  /** A statement writing the queue's head is running: the head must not move meanwhile. */
  #inFlight = false;
  /** A move of the queue to the spool, while it runs. */
  #spilling: Promise<void> | null = null;

  constructor(db: Queryable, logger: AuditLogger, options: AuditWriterOptions = {}) {
    this.#db = db;
    this.#maxQueue = Math.max(1, options.maxQueue ?? 10_000);
    this.#maxBatch = Math.max(1, Math.min(options.maxBatch ?? 500, MAX_BATCH_LIMIT));
    this.#flushDelayMs = Math.max(0, options.flushDelayMs ?? DEFAULT_FLUSH_DELAY_MS);
    this.#spool = options.spool;
    // Rows a process before left in the spool (it stopped during an outage, or died) go first.
    if (this.spooled > 0) this.#schedule();
    this.#onError =
      options.onError ??
      ((err) =>
        logger.warn(
          { error: { message: err instanceof Error ? err.message : String(err) } },
          'audit rows not written yet; retrying',
        ));
  }

  /**
   * Queues the decision's row. Returns undefined while the queue has room; once it is full, a
   * promise that resolves when a write has made room again: await it before taking more work.
   * The row is queued either way, never dropped.
   *
   * After drain() the writer takes no more rows: an event recorded that late (a bug: the gateway
   * publishes every exchange before its close() resolves) is reported to onError as
   * `audit_writer_closed` instead of being thrown into the request that recorded it; its log line
   * (observeLog) is written all the same.
   */
  record(event: AuditEvent): Promise<void> | undefined {
    // A broken clock value must not make a row PostgreSQL refuses; the time of recording is
    // the closest truth there is.
    const time = event.time instanceof Date && !Number.isNaN(event.time.getTime()) ? event.time : new Date();
    if (this.#closed) {
      this.#report(
        new AuditError(
          'audit_writer_closed',
          `the audit writer was drained: the row of request ${event.requestId} is only in the log`,
        ),
      );
      return undefined;
    }
    this.#queue.push(toRow(event, time));
    this.#schedule();
    // While the database is down, a batch's worth goes to the spool at once rather than after the
    // retry's backoff (seconds, in which the queue would fill); and while the spool is replayed
    // too, since new rows wait behind all of it (a long replay would otherwise fill the queue).
    if ((this.#down || this.spooled > 0) && this.#queue.length >= this.#maxBatch) this.#spillSoon();
    if (this.#queue.length < this.#maxQueue) return undefined;
    return new Promise<void>((resolve) => this.#roomWaiters.push(resolve));
  }

  /** Rows recorded and not yet committed (including the batch being written), spooled ones too. */
  get depth(): number {
    return this.#queue.length + (this.#spool?.rows ?? 0);
  }

  /** Rows waiting in the spool for the database. */
  get spooled(): number {
    return this.#spool?.rows ?? 0;
  }

  /**
   * Stops accepting events and writes every queued row (on SIGTERM: no row is lost). Resolves
   * when the queue is empty; while the database is down it keeps retrying, so it does not
   * resolve before the database is back.
   */
  drain(): Promise<void> {
    this.#closed = true;
    const drained = new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    this.#cancelTimer();
    if (this.#writing) return drained;
    if (this.#queue.length === 0 && this.spooled === 0) this.#wake();
    else void this.#run();
    return drained;
  }

  /** Starts a write: on the next turn when a batch is full (or there is no delay), else later. */
  #schedule(): void {
    if (this.#writing || this.#closed) return;
    const now = this.#queue.length >= this.#maxBatch || this.#flushDelayMs === 0;
    if (this.#scheduled && !(now && this.#timer !== undefined)) return;
    this.#cancelTimer();
    this.#scheduled = true;
    const start = () => {
      this.#timer = undefined;
      this.#scheduled = false;
      if (!this.#writing) void this.#run();
    };
    if (now) setImmediate(start);
    else this.#timer = setTimeout(start, this.#flushDelayMs);
  }

  #cancelTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#scheduled = false;
  }

  async #run(): Promise<void> {
    this.#writing = true;
    try {
      for (;;) {
        if (this.#spilling !== null) await this.#spilling;
        // The spool holds rows older than any queued: they go first.
        const fromSpool = this.spooled > 0;
        if (!fromSpool && this.#queue.length === 0) break;
        const done = fromSpool ? await this.#replay() : await this.#writeHead();
        if (done > 0) {
          this.#down = false;
          this.#failures = 0;
          this.#wake();
          // Less than a full batch left: let it gather for flushDelayMs (drain does not wait).
          if (!fromSpool && !this.#closed && this.#queue.length < this.#maxBatch && this.#flushDelayMs > 0)
            break;
          continue;
        }
        this.#down = true;
        this.#spillSoon();
        if (this.#spilling !== null) await this.#spilling;
        // Stopping during an outage: every row is on disk, and the next start replays them.
        if (this.#closed && this.#queue.length === 0 && this.#spool !== undefined) break;
        await this.#pause();
      }
    } finally {
      this.#writing = false;
      this.#wake();
      if (this.#queue.length > 0 || (this.spooled > 0 && !this.#closed)) this.#schedule();
    }
  }

  /** Writes the head of the queue and takes it off; returns how many rows are done with. */
  async #writeHead(): Promise<number> {
    this.#inFlight = true;
    try {
      const done = await this.#write(this.#queue.slice(0, this.#maxBatch).map(recordOf));
      this.#queue.splice(0, done);
      return done;
    } finally {
      this.#inFlight = false;
    }
  }

  /** Writes the spool's head and moves past it; returns how many rows are done with. */
  async #replay(): Promise<number> {
    const spool = this.#spool as AuditSpool;
    let done = 0;
    try {
      const { records } = await spool.peek(this.#maxBatch);
      done = await this.#write(records);
      if (done > 0) {
        let bytes = 0;
        for (let i = 0; i < done; i++) bytes += Buffer.byteLength(records[i] as string) + 1;
        await spool.advance(done, bytes);
      }
      return done;
    } catch (err) {
      // The file could not be read or its head not moved: retried; a row written twice at worst.
      this.#report(err);
      return 0;
    }
  }

  /** Starts a move of the queue to the spool unless one runs (one at a time: two would copy rows twice). */
  #spillSoon(): void {
    if (this.#spilling !== null || this.#inFlight || this.#spool === undefined) return;
    this.#spilling = this.#spill().finally(() => {
      this.#spilling = null;
    });
  }

  /**
   * Moves the whole queue to the spool, in order, when it has room (else the rows stay and
   * back-pressure holds the gateway). Never while a statement runs: its rows are the queue's head.
   */
  async #spill(): Promise<void> {
    const spool = this.#spool;
    if (spool === undefined || this.#inFlight || this.#queue.length === 0) return;
    const count = this.#queue.length;
    const records = this.#queue.slice(0, count).map(recordOf);
    if (!spool.fits(records)) return;
    try {
      await spool.append(records);
    } catch (err) {
      this.#report(err);
      return;
    }
    this.#queue.splice(0, count);
    this.#wake();
  }

  /** Writes `records` in order; returns how many at the head are done with (0: nothing written). */
  async #write(records: readonly string[]): Promise<number> {
    try {
      await insertRecords(this.#db, records);
      return records.length;
    } catch (err) {
      if (!isRefused(err)) {
        this.#report(err);
        return 0;
      }
      // One refused row fails its whole statement: write them one by one to find it.
      let done = 0;
      for (const record of records) {
        try {
          await insertRecords(this.#db, [record]);
        } catch (rowErr) {
          if (!isRefused(rowErr)) {
            this.#report(rowErr);
            return done;
          }
          this.#report(
            new AuditError(
              'audit_row_rejected',
              `the database refused the audit row of request ${requestIdOf(record)}: ${
                rowErr instanceof Error ? rowErr.message : String(rowErr)
              }`,
              { cause: rowErr },
            ),
          );
        }
        done++;
      }
      return done;
    }
  }

  #report(err: unknown): void {
    try {
      this.#onError(err);
    } catch {
      // A failing error handler must not stop the writer.
    }
  }

  #pause(): Promise<void> {
    const ms = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** this.#failures);
    this.#failures = Math.min(this.#failures + 1, 16);
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  #wake(): void {
    if (this.#queue.length < this.#maxQueue && this.#roomWaiters.length > 0) {
      const waiters = this.#roomWaiters;
      this.#roomWaiters = [];
      for (const resolve of waiters) resolve();
    }
    const settled = this.#queue.length === 0 && (this.spooled === 0 || (this.#closed && this.#down));
    if (settled && !this.#writing && this.#drainWaiters.length > 0) {
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
