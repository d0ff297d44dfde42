// The audit writer (src/gateway/audit.ts) on every database backend, and the ECS form of an
// event (src/gateway/audit-format.ts) as a table, one row per field.
import { appendFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditError,
  type AuditEvent,
  AuditWriter,
  ecsFields,
  observeAudit,
  observeLog,
} from '../../src/gateway/audit.ts';
import { ECS_VERSION } from '../../src/gateway/audit-format.ts';
import { AuditSpool } from '../../src/gateway/audit-spool.ts';
import { type ExchangeEvent, ExchangeStream } from '../../src/gateway/events.ts';
import type { Reason } from '../../src/gateway/reasons.ts';
import { auditLineLogger, createLogger } from '../../src/runtime/logger.ts';
import type { Db, Queryable } from '../../src/store/db.ts';
import { openMigratedDb, testBackends, uniqueName } from '../support/db.ts';

const CHAIN = { sub: 'research-agent', act: { sub: 'chat-app' } };

function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    time: new Date('2026-03-04T05:06:07.089Z'),
    requestId: 'req-1',
    tenant: 'acme',
    agent: 'research-agent',
    subject: 'alice@acme.example',
    delegationChain: CHAIN,
    jti: 'jti-1',
    method: 'POST',
    scheme: 'https',
    host: 'api.example.com',
    port: 443,
    path: '/v1/charges',
    decision: 'allowed',
    reason: null,
    matchedRule: 'POST https://api.example.com/v1',
    resolvedAddress: '93.184.216.34',
    inspected: true,
    status: 201,
    bytesIn: 2048,
    bytesOut: 512,
    durationMs: 12.5,
    detail: null,
    ...overrides,
  };
}

/** The log lines a real reins logger (redaction and all) writes, parsed. */
/** The same facts as event(), as the gateway publishes them. */
function exchanged(overrides: Partial<AuditEvent> = {}): ExchangeEvent {
  const base = event(overrides);
  return {
    ...base,
    reason: base.reason as Reason | null,
    detail: base.detail ?? null,
    durationMs: base.durationMs ?? 0,
    kind: 'request',
    tunnel: null,
    decisionMs: null,
    upstreamMs: null,
  };
}

/** The gateway's audit line logger as the runtime makes it: without redaction (logger.ts). */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const logger = auditLineLogger(
    createLogger('info', {
      write(line: string) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    }),
  );
  return { logger, lines, raw };
}

const quietLogger = { info: () => undefined, warn: () => undefined };

/**
 * `db`, counting the statements sent through it. While `fail` is set every statement fails as a
 * lost connection does; while `hold` is set statements wait for it.
 */
function wrapped(db: Queryable) {
  const wrapper = {
    statements: 0,
    fail: false,
    hold: undefined as Promise<void> | undefined,
    async query<R>(sql: string, params?: readonly unknown[]) {
      wrapper.statements++;
      if (wrapper.hold) await wrapper.hold;
      if (wrapper.fail) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return db.query<R>(sql, params);
    },
  };
  return wrapper;
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

interface StoredRow {
  time: Date;
  request_id: string;
  tenant: string | null;
  agent: string | null;
  subject: string | null;
  delegation_chain: unknown;
  jti: string | null;
  method: string | null;
  scheme: string | null;
  host: string | null;
  port: number | null;
  path: string | null;
  decision: string;
  reason: string | null;
  matched_rule: string | null;
  resolved_address: string | null;
  inspected: boolean;
  status: number | null;
  bytes_in: number;
  bytes_out: number;
  duration_ms: number | null;
  detail: string | null;
}

async function rowsOf(db: Db, prefix: string): Promise<StoredRow[]> {
  const { rows } = await db.query<StoredRow>(
    `select time, request_id, tenant, agent, subject, delegation_chain, jti, method, scheme, host, port,
       path, decision, reason, matched_rule, resolved_address, inspected, status,
       bytes_in::float8 as bytes_in, bytes_out::float8 as bytes_out, duration_ms, detail
     from audit_events where request_id like $1 order by id`,
    [`${prefix}%`],
  );
  return rows;
}

/** The row an event should become. */
function expectedRow(e: AuditEvent): StoredRow {
  return {
    time: e.time,
    request_id: e.requestId,
    tenant: e.tenant,
    agent: e.agent,
    subject: e.subject,
    delegation_chain: e.delegationChain ?? null,
    jti: e.jti,
    method: e.method,
    scheme: e.scheme,
    host: e.host,
    port: e.port,
    path: e.path,
    decision: e.decision,
    reason: e.reason,
    matched_rule: e.matchedRule,
    resolved_address: e.resolvedAddress,
    inspected: e.inspected,
    status: e.status,
    bytes_in: e.bytesIn,
    bytes_out: e.bytesOut,
    duration_ms: e.durationMs,
    detail: e.detail ?? null,
  };
}

describe.each(testBackends())('the audit writer on $name', (backend) => {
  let db: Db;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
  });
  afterAll(() => db.close());

  it('writes 1,000 events recorded concurrently in a few statements, every one of them', async () => {
    const prefix = uniqueName('many');
    const via = wrapped(db);
    const writer = new AuditWriter(via, quietLogger);
    const results = await Promise.all(
      Array.from({ length: 1_000 }, async (_, i) =>
        writer.record(event({ requestId: `${prefix}-${String(i).padStart(4, '0')}` })),
      ),
    );
    expect(results.every((r) => r === undefined)).toBe(true);
    await until(() => writer.depth === 0);
    const rows = await rowsOf(db, prefix);
    expect(rows.map((r) => r.request_id)).toEqual(
      Array.from({ length: 1_000 }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`),
    );
    // Two batches of 500 (the default maxBatch).
    expect(via.statements).toBe(2);
    await writer.drain();
  });

  it('lets rows recorded over several turns gather for one INSERT, written at once when the batch is full', async () => {
    const prefix = uniqueName('gather');
    const via = wrapped(db);
    // A delay far longer than the test: only a full batch can start the write.
    const writer = new AuditWriter(via, quietLogger, { maxBatch: 6, flushDelayMs: 60_000 });
    for (let i = 0; i < 5; i++) {
      writer.record(event({ requestId: `${prefix}-${i}` }));
      await tick();
    }
    await sleep(20);
    expect(via.statements).toBe(0);
    writer.record(event({ requestId: `${prefix}-5` }));
    await until(() => writer.depth === 0);
    expect(via.statements).toBe(1);
    expect((await rowsOf(db, prefix)).map((r) => r.request_id)).toEqual(
      Array.from({ length: 6 }, (_, i) => `${prefix}-${i}`),
    );
    await writer.drain();
  });

  it('writes a partial batch once its oldest row has waited the flush delay, and drain never waits', async () => {
    const prefix = uniqueName('delay');
    const via = wrapped(db);
    const writer = new AuditWriter(via, quietLogger, { flushDelayMs: 30 });
    writer.record(event({ requestId: `${prefix}-0` }));
    await tick();
    expect(via.statements).toBe(0);
    await until(() => writer.depth === 0);
    expect(via.statements).toBe(1);

    const patient = new AuditWriter(via, quietLogger, { flushDelayMs: 60_000 });
    patient.record(event({ requestId: `${prefix}-1` }));
    await patient.drain();
    expect((await rowsOf(db, prefix)).map((r) => r.request_id)).toEqual([`${prefix}-0`, `${prefix}-1`]);
    await writer.drain();
  });

  it("stores every field of the event in its column: the chain as JSON, a 407's tenant as null", async () => {
    const prefix = uniqueName('fields');
    const allowed = event({ requestId: `${prefix}-allowed` });
    const unauthenticated = event({
      requestId: `${prefix}-407`,
      time: new Date('2026-03-04T05:06:08Z'),
      tenant: null,
      agent: null,
      subject: null,
      delegationChain: null,
      jti: null,
      method: 'GET',
      scheme: 'http',
      host: '2001:db8::7',
      port: 8080,
      path: '/',
      decision: 'denied',
      reason: 'invalid_token',
      matchedRule: null,
      resolvedAddress: null,
      inspected: false,
      status: 407,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: null,
      detail: 'expired',
    });
    const denied = event({
      requestId: `${prefix}-403`,
      decision: 'denied',
      reason: 'path_not_allowed',
      matchedRule: null,
      status: 403,
      host: null,
      port: null,
      path: null,
      method: null,
      scheme: null,
    });
    const writer = new AuditWriter(db, quietLogger);
    for (const e of [allowed, unauthenticated, denied]) writer.record(e);
    await writer.drain();
    expect(await rowsOf(db, prefix)).toEqual([allowed, unauthenticated, denied].map(expectedRow));
  });

  it('never stores the query string, and cleans what PostgreSQL would refuse (NUL, lone surrogates, numbers out of range) instead of losing the row', async () => {
    const prefix = uniqueName('clean');
    const writer = new AuditWriter(db, quietLogger);
    writer.record(event({ requestId: `${prefix}-query`, path: '/v1/charges?api_key=sk_live_123#frag' }));
    writer.record(
      event({
        requestId: `${prefix}-odd`,
        path: '/a\0b\uD800c',
        delegationChain: { sub: 'agent\0x\uDC00', 'k\0ey': ['v\uD800'] },
        port: 70_000,
        status: 1.5,
        bytesIn: -3,
        bytesOut: Number.NaN,
        durationMs: Number.POSITIVE_INFINITY,
        time: new Date(Number.NaN),
      }),
    );
    await writer.drain();
    const [query, odd] = await rowsOf(db, prefix);
    expect(query?.path).toBe('/v1/charges');
    expect(odd).toMatchObject({
      path: '/a\uFFFDb\uFFFDc',
      delegation_chain: { sub: 'agent\uFFFDx\uFFFD', 'k\uFFFDey': ['v\uFFFD'] },
      port: null,
      status: null,
      bytes_in: 0,
      bytes_out: 0,
      duration_ms: null,
    });
    expect(Math.abs((odd?.time.getTime() ?? 0) - Date.now())).toBeLessThan(60_000);
  });

  it('answers a promise once the queue is full, resolves it after a write makes room, and drops nothing', async () => {
    const prefix = uniqueName('full');
    const via = wrapped(db);
    const held = gate();
    via.hold = held.promise;
    const writer = new AuditWriter(via, quietLogger, { maxQueue: 5 });
    const answers = Array.from({ length: 4 }, (_, i) =>
      writer.record(event({ requestId: `${prefix}-${i}` })),
    );
    expect(answers).toEqual([undefined, undefined, undefined, undefined]);
    const full = writer.record(event({ requestId: `${prefix}-4` }));
    expect(full).toBeInstanceOf(Promise);
    // Over the limit still queues: back-pressure asks callers to wait, it never drops.
    const over = writer.record(event({ requestId: `${prefix}-5` }));
    expect(over).toBeInstanceOf(Promise);
    let resolved = false;
    void full?.then(() => {
      resolved = true;
    });
    await tick();
    await sleep(20);
    expect(resolved).toBe(false);
    expect(writer.depth).toBe(6);

    via.hold = undefined;
    held.open();
    await Promise.all([full, over]);
    expect(writer.depth).toBeLessThan(5);
    await writer.drain();
    expect((await rowsOf(db, prefix)).map((r) => r.request_id)).toEqual(
      Array.from({ length: 6 }, (_, i) => `${prefix}-${i}`),
    );
  });

  it('drain writes everything queued, resolves when the queue is empty, then takes no more rows', async () => {
    const prefix = uniqueName('drain');
    const errors: unknown[] = [];
    const { logger, lines } = capturedLogger();
    const writer = new AuditWriter(db, logger, { maxBatch: 7, onError: (err) => errors.push(err) });
    for (let i = 0; i < 50; i++)
      writer.record(event({ requestId: `${prefix}-${String(i).padStart(2, '0')}` }));
    expect(writer.depth).toBe(50);
    await writer.drain();
    expect(writer.depth).toBe(0);
    expect(await rowsOf(db, prefix)).toHaveLength(50);
    await writer.drain();

    // Too late: reported, never thrown into the request, never half-written (its log line is
    // observeLog's, apart from the writer).
    expect(writer.record(event({ requestId: `${prefix}-late` }))).toBeUndefined();
    await sleep(20);
    expect(await rowsOf(db, `${prefix}-late`)).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(AuditError);
    expect((errors[0] as AuditError).code).toBe('audit_writer_closed');
    expect((errors[0] as AuditError).message).toContain(`${prefix}-late`);
    expect(lines).toEqual([]);
  });

  it('keeps the rows while the database is down and writes them once it is back', async () => {
    const prefix = uniqueName('outage');
    const via = wrapped(db);
    via.fail = true;
    const errors: unknown[] = [];
    const writer = new AuditWriter(via, quietLogger, { onError: (err) => errors.push(err) });
    for (let i = 0; i < 10; i++) writer.record(event({ requestId: `${prefix}-${i}` }));
    await until(() => errors.length >= 3);
    expect(writer.depth).toBe(10);
    expect(await rowsOf(db, prefix)).toEqual([]);
    // More rows arrive during the outage; they join the queue behind the first ten.
    for (let i = 10; i < 15; i++) writer.record(event({ requestId: `${prefix}-${i}` }));

    via.fail = false;
    await until(() => writer.depth === 0);
    expect((await rowsOf(db, prefix)).map((r) => r.request_id)).toEqual(
      Array.from({ length: 15 }, (_, i) => `${prefix}-${i}`),
    );
    expect(errors.every((err) => (err as { code?: string }).code === 'ECONNREFUSED')).toBe(true);
    await writer.drain();
  });

  it('drain waits out an outage rather than losing rows', async () => {
    const prefix = uniqueName('drain-outage');
    const via = wrapped(db);
    via.fail = true;
    const writer = new AuditWriter(via, quietLogger, { onError: () => undefined });
    writer.record(event({ requestId: `${prefix}-0` }));
    let drained = false;
    const draining = writer.drain().then(() => {
      drained = true;
    });
    await sleep(120);
    expect(drained).toBe(false);
    via.fail = false;
    await draining;
    expect(await rowsOf(db, prefix)).toHaveLength(1);
  });

  it('sets aside only a row the database refuses for its content; its neighbours are written', async () => {
    const prefix = uniqueName('refused');
    const poison = `${prefix}-poison`;
    // A content error no retry can fix (SQLSTATE 23514, check_violation), for one row only.
    const via = {
      query<R>(sql: string, params?: readonly unknown[]) {
        if (params?.some((param) => String(param).includes(poison))) {
          return Promise.reject(Object.assign(new Error('violates check constraint'), { code: '23514' }));
        }
        return db.query<R>(sql, params);
      },
    };
    const errors: unknown[] = [];
    const writer = new AuditWriter(via, quietLogger, { onError: (err) => errors.push(err) });
    for (const id of ['a', 'b', 'poison', 'c']) writer.record(event({ requestId: `${prefix}-${id}` }));
    await writer.drain();
    expect((await rowsOf(db, prefix)).map((r) => r.request_id)).toEqual(
      ['a', 'b', 'c'].map((id) => `${prefix}-${id}`),
    );
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'audit_row_rejected' });
    expect((errors[0] as Error).message).toContain(poison);
  });

  it('logs one ECS line per decision at once, before the row is written, without the query or the token', async () => {
    const prefix = uniqueName('log');
    const { logger, lines, raw } = capturedLogger();
    const via = wrapped(db);
    const held = gate();
    via.hold = held.promise;
    const writer = new AuditWriter(via, logger);
    const stream = new ExchangeStream();
    observeAudit(stream, writer);
    observeLog(stream, logger);
    stream.publish(exchanged({ requestId: `${prefix}-1`, path: '/v1/x?access_token=eyJhbGciOi.secret' }));
    stream.publish(exchanged({ requestId: `${prefix}-2`, decision: 'denied', reason: 'no_matching_rule' }));
    expect(lines).toHaveLength(2);
    expect(writer.depth).toBe(2);
    expect(lines[0]).toMatchObject({
      msg: 'egress allowed',
      event: { action: 'allowed', outcome: 'success' },
      url: { path: '/v1/x' },
      http: { request: { id: `${prefix}-1` } },
    });
    expect(lines[1]).toMatchObject({
      msg: 'egress denied',
      event: { action: 'denied', outcome: 'failure', reason: 'no_matching_rule' },
    });
    expect(raw.join('')).not.toContain('access_token');
    expect(raw.join('')).not.toContain('eyJhbGciOi');
    held.open();
    via.hold = undefined;
    await writer.drain();
  });
});

describe.each(testBackends())('the audit writer with a spool, on $name', (backend) => {
  let db: Db;
  let parent: string;
  const spools: AuditSpool[] = [];
  beforeAll(async () => {
    db = await openMigratedDb(backend);
    parent = await mkdtemp(join(tmpdir(), 'reins-spool-'));
  });
  afterAll(async () => {
    await Promise.all(spools.map((spool) => spool.close()));
    await db.close();
    await rm(parent, { recursive: true, force: true });
  });

  async function spoolIn(dir: string, maxBytes?: number): Promise<AuditSpool> {
    const spool = await AuditSpool.open(dir, maxBytes === undefined ? {} : { maxBytes });
    spools.push(spool);
    return spool;
  }

  it('keeps taking rows through an outage, moving them to the file, where without one the queue would hold callers back for good', async () => {
    const prefix = uniqueName('spilled');
    const id = (i: number) => `${prefix}-${String(i).padStart(5, '0')}`;
    const via = wrapped(db);
    via.fail = true;
    const spool = await spoolIn(await mkdtemp(join(parent, 'a-')));
    const writer = new AuditWriter(via, quietLogger, {
      maxQueue: 100,
      maxBatch: 20,
      onError: () => undefined,
      spool,
    });
    // As the gateway does: every wait the writer asks for is awaited. Twenty times the queue's
    // bound goes through while the database is still down (without a spool the 101st would wait
    // for the database).
    for (let i = 0; i < 2_000; i++) await writer.record(event({ requestId: id(i) }));
    expect(via.fail).toBe(true);
    expect(writer.depth).toBe(2_000);
    expect(writer.spooled).toBeGreaterThanOrEqual(1_900);
    expect(await rowsOf(db, prefix)).toEqual([]);
    via.fail = false;
    // Rows recorded as the database comes back go after every spooled one.
    for (let i = 2_000; i < 2_100; i++) await writer.record(event({ requestId: id(i) }));
    await until(() => writer.depth === 0, 20_000);
    const written = (await rowsOf(db, prefix)).map((r) => r.request_id);
    expect(written).toEqual(Array.from({ length: 2_100 }, (_, i) => id(i)));
    expect(spool.rows).toBe(0);
    expect(spool.bytes).toBe(0);
    await writer.drain();
  }, 30_000);

  it('on drain during an outage puts what is queued in the file and resolves; the next writer there replays it before its own rows', async () => {
    const prefix = uniqueName('handed-on');
    const dir = await mkdtemp(join(parent, 'b-'));
    const via = wrapped(db);
    via.fail = true;
    const first = await AuditSpool.open(dir);
    const before = new AuditWriter(via, quietLogger, { onError: () => undefined, spool: first });
    for (let i = 0; i < 50; i++)
      before.record(event({ requestId: `${prefix}-a${String(i).padStart(2, '0')}` }));
    await before.drain();
    expect(first.rows).toBe(50);
    await first.close();

    const again = await spoolIn(dir);
    expect(again.dir).toBe(first.dir);
    expect(again.rows).toBe(50);
    const after = new AuditWriter(db, quietLogger, { spool: again });
    for (let i = 0; i < 5; i++) after.record(event({ requestId: `${prefix}-b${i}` }));
    await after.drain();
    const written = (await rowsOf(db, prefix)).map((r) => r.request_id);
    expect(written).toEqual([
      ...Array.from({ length: 50 }, (_, i) => `${prefix}-a${String(i).padStart(2, '0')}`),
      ...Array.from({ length: 5 }, (_, i) => `${prefix}-b${i}`),
    ]);
    expect((await rowsOf(db, prefix))[0]).toEqual(expectedRow(event({ requestId: `${prefix}-a00` })));
  });

  it('while the file is replayed, sends new rows after it rather than making callers wait for the whole replay', async () => {
    const prefix = uniqueName('replaying');
    const id = (i: number) => `${prefix}-${String(i).padStart(5, '0')}`;
    const via = wrapped(db);
    via.fail = true;
    const spool = await spoolIn(await mkdtemp(join(parent, 'r-')));
    const writer = new AuditWriter(via, quietLogger, {
      maxQueue: 100,
      maxBatch: 20,
      onError: () => undefined,
      spool,
    });
    for (let i = 0; i < 3_000; i++) await writer.record(event({ requestId: id(i) }));
    // The database is back, but slow: replaying 3,000 rows 20 at a time takes seconds.
    let slow = gate();
    via.hold = slow.promise;
    via.fail = false;
    const pacer = setInterval(() => {
      slow.open();
      slow = gate();
      via.hold = slow.promise;
    }, 10);
    try {
      // Five times the queue's bound, each wait awaited: done long before the replay is.
      for (let i = 3_000; i < 3_500; i++) await writer.record(event({ requestId: id(i) }));
      expect(spool.rows).toBeGreaterThan(1_000);
    } finally {
      clearInterval(pacer);
      slow.open();
      via.hold = undefined;
    }
    await until(() => writer.depth === 0, 20_000);
    expect((await rowsOf(db, prefix)).map((r) => r.request_id)).toEqual(
      Array.from({ length: 3_500 }, (_, i) => id(i)),
    );
    await writer.drain();
  }, 60_000);

  it('applies back-pressure once the file is full, and still loses nothing', async () => {
    const prefix = uniqueName('full');
    const via = wrapped(db);
    via.fail = true;
    // Room for a few rows only (each is some 600 bytes).
    const spool = await spoolIn(await mkdtemp(join(parent, 'c-')), 3_000);
    const writer = new AuditWriter(via, quietLogger, {
      maxQueue: 10,
      maxBatch: 2,
      onError: () => undefined,
      spool,
    });
    const waits: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      const wait = writer.record(event({ requestId: `${prefix}-${String(i).padStart(2, '0')}` }));
      if (wait !== undefined) waits.push(wait);
      await tick();
    }
    expect(waits.length).toBeGreaterThan(0);
    expect(spool.bytes).toBeLessThanOrEqual(3_000);
    via.fail = false;
    await Promise.all(waits);
    await writer.drain();
    expect((await rowsOf(db, prefix)).map((r) => r.request_id)).toEqual(
      Array.from({ length: 40 }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`),
    );
  });
});

describe('the audit spool file', () => {
  let parent: string;
  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), 'reins-spool-file-'));
  });
  afterAll(() => rm(parent, { recursive: true, force: true }));

  it('cuts off a line torn by a crash mid-append, keeping every complete one', async () => {
    const dir = await mkdtemp(join(parent, 'torn-'));
    const first = await AuditSpool.open(dir);
    await first.append(['{"request_id":"one"}', '{"request_id":"two"}']);
    await first.close();
    await appendFile(join(first.dir, 'rows.jsonl'), '{"request_id":"thr');
    const again = await AuditSpool.open(dir);
    try {
      expect(again.rows).toBe(2);
      await again.append(['{"request_id":"three"}']);
      const { records, bytes } = await again.peek(10);
      expect(records).toEqual(['{"request_id":"one"}', '{"request_id":"two"}', '{"request_id":"three"}']);
      await again.advance(2, Buffer.byteLength('{"request_id":"one"}\n{"request_id":"two"}\n'));
      expect((await again.peek(10)).records).toEqual(['{"request_id":"three"}']);
      expect(bytes).toBe(again.bytes + Buffer.byteLength('{"request_id":"one"}\n{"request_id":"two"}\n'));
    } finally {
      await again.close();
    }
  });

  it('reads back a character split between two reads whole, and moves the head exactly past what it read', async () => {
    const dir = await mkdtemp(join(parent, 'utf8-'));
    const spool = await AuditSpool.open(dir);
    try {
      // The euro sign's three bytes straddle the first 1 MiB read.
      const long = `${'a'.repeat((1 << 20) - 1)}€`;
      await spool.append([long, 'next']);
      const { records, bytes } = await spool.peek(10);
      expect(records).toEqual([long, 'next']);
      expect(bytes).toBe(spool.bytes);
      await spool.advance(1, Buffer.byteLength(long) + 1);
      expect((await spool.peek(10)).records).toEqual(['next']);
    } finally {
      await spool.close();
    }
  });

  it('keeps its directory to the process user alone (rows name agents, users and destinations)', async () => {
    const dir = await mkdtemp(join(parent, 'mode-'));
    const spool = await AuditSpool.open(dir);
    try {
      await spool.append(['{"request_id":"private"}']);
      expect((await stat(spool.dir)).mode & 0o777).toBe(0o700);
      expect((await stat(join(spool.dir, 'rows.jsonl'))).mode & 0o777).toBe(0o600);
    } finally {
      await spool.close();
    }
  });

  it('gives a second spool under the same directory a directory of its own, while the first is held', async () => {
    const dir = await mkdtemp(join(parent, 'two-'));
    const first = await AuditSpool.open(dir);
    const second = await AuditSpool.open(dir);
    try {
      expect(first.dir).toBe(join(dir, 'audit-spool'));
      expect(second.dir).toBe(join(dir, 'audit-spool-2'));
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// ecsFields: pure

function at(fields: Record<string, unknown>, path: string): unknown {
  // '@timestamp' is the one top-level field whose name has no dots to follow.
  if (path === '@timestamp') return fields[path];
  let value: unknown = fields;
  for (const key of path.split('.')) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

interface FieldCase {
  readonly name: string;
  readonly field: keyof AuditEvent;
  readonly event: Partial<AuditEvent>;
  /** ECS path → value; undefined: the field is absent. */
  readonly expect: Record<string, unknown>;
}

const FIELD_CASES: readonly FieldCase[] = [
  {
    name: 'time is @timestamp in ISO 8601',
    field: 'time',
    event: { time: new Date('2026-01-02T03:04:05.678Z') },
    expect: { '@timestamp': '2026-01-02T03:04:05.678Z' },
  },
  {
    name: 'the request id is http.request.id',
    field: 'requestId',
    event: { requestId: 'r-42' },
    expect: { 'http.request.id': 'r-42' },
  },
  {
    name: 'the tenant is organization.id',
    field: 'tenant',
    event: { tenant: 'globex' },
    expect: { 'organization.id': 'globex' },
  },
  {
    name: 'no tenant (a 407) leaves organization out',
    field: 'tenant',
    event: { tenant: null },
    expect: { organization: undefined },
  },
  {
    name: 'the agent is reins.agent',
    field: 'agent',
    event: { agent: 'a-1' },
    expect: { 'reins.agent': 'a-1' },
  },
  {
    name: 'the subject is user.id',
    field: 'subject',
    event: { subject: 'bob' },
    expect: { 'user.id': 'bob' },
  },
  {
    name: 'the delegation chain is reins.delegation_chain, unchanged',
    field: 'delegationChain',
    event: { delegationChain: { sub: 'x', act: { sub: 'y', extra: null } } },
    expect: { 'reins.delegation_chain': { sub: 'x', act: { sub: 'y', extra: null } } },
  },
  { name: 'the jti is reins.jti', field: 'jti', event: { jti: 'j-9' }, expect: { 'reins.jti': 'j-9' } },
  {
    name: 'the method is http.request.method',
    field: 'method',
    event: { method: 'DELETE' },
    expect: { 'http.request.method': 'DELETE' },
  },
  {
    name: 'the scheme is url.scheme',
    field: 'scheme',
    event: { scheme: 'http' },
    expect: { 'url.scheme': 'http' },
  },
  {
    name: 'a host name is destination.domain and url.domain; the resolved address is destination.ip',
    field: 'host',
    event: { host: 'api.example.com', resolvedAddress: '93.184.216.34' },
    expect: {
      'destination.domain': 'api.example.com',
      'url.domain': 'api.example.com',
      'destination.ip': '93.184.216.34',
    },
  },
  {
    name: 'an IPv4 literal host is destination.ip, never a domain',
    field: 'host',
    event: { host: '203.0.113.9', resolvedAddress: '203.0.113.9' },
    expect: { 'destination.ip': '203.0.113.9', 'destination.domain': undefined, 'url.domain': undefined },
  },
  {
    name: 'a bracketed IPv6 literal host is destination.ip without brackets',
    field: 'host',
    event: { host: '[2001:db8::1]', resolvedAddress: null },
    expect: { 'destination.ip': '2001:db8::1', 'destination.domain': undefined },
  },
  {
    name: 'the port is destination.port and url.port',
    field: 'port',
    event: { port: 8443 },
    expect: { 'destination.port': 8443, 'url.port': 8443 },
  },
  { name: 'the path is url.path', field: 'path', event: { path: '/v1/a' }, expect: { 'url.path': '/v1/a' } },
  {
    name: 'a query string or fragment never reaches url.path',
    field: 'path',
    event: { path: '/v1/a?token=abc#frag' },
    expect: { 'url.path': '/v1/a' },
  },
  {
    name: 'allowed is event.action allowed, outcome success',
    field: 'decision',
    event: { decision: 'allowed' },
    expect: {
      'event.action': 'allowed',
      'event.outcome': 'success',
      'event.type': ['connection', 'allowed'],
      'event.category': ['network'],
      'event.kind': 'event',
    },
  },
  {
    name: 'denied is event.action denied, outcome failure',
    field: 'decision',
    event: { decision: 'denied' },
    expect: { 'event.action': 'denied', 'event.outcome': 'failure', 'event.type': ['connection', 'denied'] },
  },
  {
    name: 'the reason is event.reason',
    field: 'reason',
    event: { reason: 'cross_tenant' },
    expect: { 'event.reason': 'cross_tenant' },
  },
  {
    name: 'the matched rule is reins.matched_rule',
    field: 'matchedRule',
    event: { matchedRule: 'GET https://a.example/v1' },
    expect: { 'reins.matched_rule': 'GET https://a.example/v1' },
  },
  {
    name: 'the resolved address is destination.ip',
    field: 'resolvedAddress',
    event: { resolvedAddress: '2001:db8::5' },
    expect: { 'destination.ip': '2001:db8::5' },
  },
  {
    name: 'inspection is reins.inspected',
    field: 'inspected',
    event: { inspected: false },
    expect: { 'reins.inspected': false },
  },
  {
    name: 'the status is http.response.status_code',
    field: 'status',
    event: { status: 403 },
    expect: { 'http.response.status_code': 403 },
  },
  {
    name: 'bytes back from the destination are destination.bytes',
    field: 'bytesIn',
    event: { bytesIn: 300, bytesOut: 20 },
    expect: { 'destination.bytes': 300, 'network.bytes': 320 },
  },
  {
    name: 'bytes sent toward the destination are source.bytes',
    field: 'bytesOut',
    event: { bytesOut: 77 },
    expect: { 'source.bytes': 77 },
  },
  {
    name: 'the duration is event.duration in nanoseconds',
    field: 'durationMs',
    event: { durationMs: 1.25 },
    expect: { 'event.duration': 1_250_000 },
  },
  {
    name: 'what more is known of a refusal (a 407’s credential problem) is reins.detail',
    field: 'detail',
    event: { detail: 'wrong_audience' },
    expect: { 'reins.detail': 'wrong_audience' },
  },
];

describe('ecsFields', () => {
  it.each(FIELD_CASES)('$name', ({ event: overrides, expect: expected }) => {
    const fields = ecsFields(event(overrides));
    for (const [path, value] of Object.entries(expected))
      expect([path, at(fields, path)]).toEqual([path, value]);
  });

  it('has a row for every field of an audit event', () => {
    const covered = new Set(FIELD_CASES.map((c) => c.field));
    expect(Object.keys(event()).filter((field) => !covered.has(field as keyof AuditEvent))).toEqual([]);
  });

  it('maps a whole event to nested ECS objects', () => {
    expect(ecsFields(event())).toEqual({
      '@timestamp': '2026-03-04T05:06:07.089Z',
      ecs: { version: ECS_VERSION },
      event: {
        kind: 'event',
        category: ['network'],
        type: ['connection', 'allowed'],
        dataset: 'reins.audit',
        action: 'allowed',
        outcome: 'success',
        duration: 12_500_000,
      },
      http: { request: { id: 'req-1', method: 'POST' }, response: { status_code: 201 } },
      url: { scheme: 'https', domain: 'api.example.com', port: 443, path: '/v1/charges' },
      destination: { domain: 'api.example.com', ip: '93.184.216.34', port: 443, bytes: 2048 },
      source: { bytes: 512 },
      network: { bytes: 2560 },
      user: { id: 'alice@acme.example' },
      organization: { id: 'acme' },
      reins: {
        agent: 'research-agent',
        jti: 'jti-1',
        delegation_chain: CHAIN,
        matched_rule: 'POST https://api.example.com/v1',
        inspected: true,
      },
    });
  });

  it('leaves out what is unknown rather than writing null (a 407 before any token)', () => {
    const fields = ecsFields(
      event({
        tenant: null,
        agent: null,
        subject: null,
        delegationChain: null,
        jti: null,
        method: null,
        scheme: null,
        host: null,
        port: null,
        path: null,
        decision: 'denied',
        reason: 'invalid_token',
        matchedRule: null,
        resolvedAddress: null,
        inspected: false,
        status: null,
        bytesIn: 0,
        bytesOut: 0,
        durationMs: null,
      }),
    );
    expect(Object.keys(fields).sort()).toEqual(
      ['@timestamp', 'destination', 'ecs', 'event', 'http', 'network', 'reins', 'source'].sort(),
    );
    expect(fields.reins).toEqual({ inspected: false });
    expect(fields.http).toEqual({ request: { id: 'req-1' } });
    expect(JSON.stringify(fields)).not.toContain('null');
  });

  it('never carries a query string, whatever the path', () => {
    fc.assert(
      fc.property(fc.string(), fc.string({ minLength: 1 }), (path, query) => {
        const fields = ecsFields(event({ path: `/${path}?q=${query}` }));
        const urlPath = at(fields, 'url.path') as string;
        expect(urlPath).not.toMatch(/[?#]/);
        expect(`/${path}`.startsWith(urlPath)).toBe(true);
      }),
    );
  });
});
