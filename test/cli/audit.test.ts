// `reins audit tail` and `reins audit query` as an operator runs them: a real process on a
// database seeded through the audit writer (an embedded data directory always; a PostgreSQL
// schema of its own when DATABASE_URL is set), its output and its exit code.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FollowCursor, parseSince } from '../../src/cli/audit.ts';
import { formatLine } from '../../src/cli/audit-lines.ts';
import { type AuditEvent, AuditWriter } from '../../src/gateway/audit.ts';
import type { AuditRecord } from '../../src/gateway/audit-read.ts';
import type { Db } from '../../src/store/db.ts';
import { migrate } from '../../src/store/migrate.ts';
import { openPg } from '../../src/store/pg.ts';
import { openPglite } from '../../src/store/pglite.ts';
import { testDatabaseUrl, uniqueName } from '../support/db.ts';
import { type ReinsRun, runReins } from '../support/run-reins.ts';

const quiet = { info: () => undefined, warn: () => undefined };
const NOW = Date.now();
const minutesAgo = (m: number) => new Date(NOW - m * 60_000);

function event(overrides: Partial<AuditEvent>): AuditEvent {
  return {
    time: minutesAgo(1),
    requestId: 'r',
    tenant: 'acme',
    agent: 'billing-agent',
    subject: 'billing-agent',
    delegationChain: null,
    jti: 'j',
    method: 'GET',
    scheme: 'https',
    host: 'api.stripe.com',
    port: 443,
    path: '/v1/charges',
    decision: 'allowed',
    reason: null,
    matchedRule: 'https://api.stripe.com/v1',
    resolvedAddress: '198.51.100.7',
    inspected: false,
    status: 200,
    bytesIn: 10,
    bytesOut: 5,
    durationMs: 3,
    ...overrides,
  };
}

// Oldest first, as they are written. Twenty fillers, then the events the filters pick out.
const FILLERS = Array.from({ length: 20 }, (_, i) =>
  event({ requestId: `fill-${String(i).padStart(2, '0')}`, time: minutesAgo(300 - i), tenant: 'initech' }),
);
const NAMED = [
  event({
    requestId: 'old-denied',
    time: minutesAgo(180),
    decision: 'denied',
    reason: 'path_not_allowed',
    path: '/v2/refunds',
    status: 403,
    matchedRule: null,
  }),
  event({
    requestId: 'unauthenticated',
    time: minutesAgo(45),
    tenant: null,
    agent: null,
    subject: null,
    jti: null,
    decision: 'denied',
    reason: 'invalid_token',
    status: 407,
    host: 'evil.example',
    path: '/',
    matchedRule: null,
    detail: 'expired',
  }),
  event({
    requestId: 'delegated',
    time: minutesAgo(20),
    agent: 'research-agent',
    subject: 'alice',
    delegationChain: { sub: 'research-agent' },
    path: '/v1/customers?email=alice@acme.example',
  }),
  event({
    requestId: 'recent-denied',
    time: minutesAgo(5),
    decision: 'denied',
    reason: 'forbidden_address',
    host: '10.0.0.8',
    port: 80,
    scheme: 'http',
    path: '/latest/meta-data',
    status: 403,
    matchedRule: null,
    resolvedAddress: '10.0.0.8',
  }),
  event({ requestId: 'escape', time: minutesAgo(1), path: '/x\u001b[2Jy' }),
];

interface Target {
  readonly name: string;
  /** Opens the database the command will read (only while the command is not running). */
  open(): Promise<Db>;
  /** The command's environment and arguments that point it at that database. */
  readonly env: Record<string, string | undefined>;
  readonly args: readonly string[];
  cleanup(): Promise<void>;
}

async function pgliteTarget(): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'reins-audit-'));
  const data = join(dir, 'data');
  return {
    name: 'pglite',
    open: () => openPglite(data),
    env: { DATABASE_URL: undefined, REINS_DATA_DIR: undefined },
    args: ['--data-dir', data],
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

// A schema of its own, named to the command through the URL's `options` (search_path).
async function pgTarget(url: string): Promise<Target> {
  const schema = uniqueName('audit_cli');
  const withSchema = `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return {
    name: 'pg',
    open: () => openPg(url, { schema }),
    env: { DATABASE_URL: withSchema, REINS_DATA_DIR: undefined },
    args: [],
    async cleanup() {
      const db = await openPg(url);
      try {
        await db.query(`drop schema if exists "${schema}" cascade`);
      } finally {
        await db.close();
      }
    },
  };
}

function targets(): { name: string; make: () => Promise<Target> }[] {
  const url = testDatabaseUrl();
  const pglite = { name: 'pglite', make: pgliteTarget };
  return url ? [pglite, { name: 'pg', make: () => pgTarget(url) }] : [pglite];
}

async function seed(target: Target, events: readonly AuditEvent[]): Promise<void> {
  const db = await target.open();
  try {
    await migrate(db);
    const writer = new AuditWriter(db, quiet);
    for (const e of events) writer.record(e);
    await writer.drain();
  } finally {
    await db.close();
  }
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY =
  "const { main } = await import('./src/cli/main.ts');" +
  "process.exitCode = await main(['node', 'reins', ...process.argv.slice(1)]);";

/** Starts `reins ...args` and hands back its output so far, a way to wait for text, and SIGINT. */
function startReins(args: readonly string[], env: Record<string, string | undefined>) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', ENTRY, '--', ...args],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const out = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out.stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    out.stderr += chunk;
  });
  const exited = new Promise<ReinsRun>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout: out.stdout, stderr: out.stderr })),
  );
  return {
    out,
    exited,
    interrupt: () => child.kill('SIGINT'),
    async waitFor(text: string, ms = 30_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!out.stdout.includes(text)) {
        if (Date.now() > deadline) {
          child.kill('SIGKILL');
          throw new Error(`no ${JSON.stringify(text)} in ${JSON.stringify(out)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}

const idsOf = (run: ReinsRun) =>
  run.stdout
    .trimEnd()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => (JSON.parse(line) as { request_id: string }).request_id);

describe.each(targets())('reins audit on $name', ({ name, make }) => {
  let target: Target;
  const reins = (args: readonly string[]) => runReins([...args, ...target.args], target.env);

  beforeAll(async () => {
    target = await make();
    await seed(target, [...FILLERS, ...NAMED]);
  }, 60_000);
  afterAll(() => target.cleanup());

  it('tail prints the latest events oldest first, one line each', async () => {
    const run = await reins(['audit', 'tail', '-n', '4']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe(
      `${minutesAgo(45).toISOString()}  denied   invalid_token (expired)  -  -  GET  https://evil.example:443/  407`,
    );
    expect(lines[1]).toBe(
      `${minutesAgo(20).toISOString()}  allowed  -  acme  research-agent (for alice)  GET  https://api.stripe.com:443/v1/customers  200`,
    );
    expect(lines[2]).toBe(
      `${minutesAgo(5).toISOString()}  denied   forbidden_address  acme  billing-agent  GET  http://10.0.0.8:80/latest/meta-data  403`,
    );
    // A control character from a request is shown escaped, never sent to the terminal.
    expect(lines[3]).toContain('/x\\u001b[2Jy');
    expect(run.stdout).not.toContain('\u001b');
    expect(run.stdout).not.toContain('email=');
  }, 60_000);

  it('tail prints twenty by default', async () => {
    const run = await reins(['audit', 'tail']);
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(20);
    expect(lines[0]).toContain(minutesAgo(295).toISOString());
    expect(lines[19]).toContain(minutesAgo(1).toISOString());
  }, 60_000);

  it('tail --follow prints the latest lines and stops on Ctrl-C with exit 0', async () => {
    const follow = startReins(['audit', 'tail', '-n', '1', '--follow', ...target.args], target.env);
    await follow.waitFor('/x\\u001b[2Jy');
    follow.interrupt();
    const run = await follow.exited;
    expect(run.code).toBe(0);
    expect(run.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toBe('');
  }, 60_000);

  it('query prints every event newest first, with --json one object per line', async () => {
    const run = await reins(['audit', 'query', '--json']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(idsOf(run)).toEqual(
      [...FILLERS, ...NAMED].sort((a, b) => b.time.getTime() - a.time.getTime()).map((e) => e.requestId),
    );
    const delegated = run.stdout
      .split('\n')
      .map((line) => (line ? (JSON.parse(line) as Record<string, unknown>) : null))
      .find((row) => row?.request_id === 'delegated');
    expect(delegated).toMatchObject({
      time: minutesAgo(20).toISOString(),
      tenant: 'acme',
      agent: 'research-agent',
      subject: 'alice',
      delegation_chain: { sub: 'research-agent' },
      path: '/v1/customers',
      decision: 'allowed',
      bytes_in: 10,
      bytes_out: 5,
      port: 443,
      detail: null,
    });
    expect(run.stdout).toContain('"request_id":"unauthenticated"');
    expect(run.stdout.split('\n').find((line) => line.includes('"request_id":"unauthenticated"'))).toContain(
      '"detail":"expired"',
    );
  }, 60_000);

  it('query filters by tenant, agent, decision, --since and --limit', async () => {
    const cases: [readonly string[], readonly string[]][] = [
      [
        ['--tenant', 'acme'],
        ['escape', 'recent-denied', 'delegated', 'old-denied'],
      ],
      [['--agent', 'research-agent'], ['delegated']],
      [
        ['--decision', 'denied'],
        ['recent-denied', 'unauthenticated', 'old-denied'],
      ],
      [
        ['--since', '1h'],
        ['escape', 'recent-denied', 'delegated', 'unauthenticated'],
      ],
      [
        ['--since', '30m', '--decision', 'allowed'],
        ['escape', 'delegated'],
      ],
      [
        ['--since', minutesAgo(200).toISOString(), '--tenant', 'acme', '--decision', 'denied'],
        ['recent-denied', 'old-denied'],
      ],
      [
        ['--tenant', 'initech', '--limit', '2'],
        ['fill-19', 'fill-18'],
      ],
      [['--agent', 'nobody'], []],
    ];
    for (const [filters, expected] of cases) {
      const run = await reins(['audit', 'query', '--json', ...filters]);
      expect([filters, run.code, idsOf(run)]).toEqual([filters, 0, expected]);
    }
  }, 120_000);

  it('refuses a bad --since in one line with exit 2 and no stack trace', async () => {
    const run = await reins(['audit', 'query', '--since', 'yesterday']);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^reins: --since "yesterday": give a duration back from now .*\n$/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  }, 60_000);

  // Last: it adds rows. The embedded database admits one process at a time, so only PostgreSQL
  // can take new rows while the command follows.
  it.runIf(name === 'pg')(
    'tail --follow prints rows written while it runs',
    async () => {
      const follow = startReins(['audit', 'tail', '-n', '1', '--follow', ...target.args], target.env);
      await follow.waitFor('/x\\u001b[2Jy');
      await seed(target, [event({ requestId: 'live-1', time: new Date(), path: '/live/1' })]);
      await follow.waitFor('/live/1');
      await seed(target, [event({ requestId: 'live-2', time: new Date(), path: '/live/2' })]);
      await follow.waitFor('/live/2');
      follow.interrupt();
      const run = await follow.exited;
      expect(run.code).toBe(0);
      expect(
        run.stdout
          .trimEnd()
          .split('\n')
          .map((line) => line.split('  ')[6]),
      ).toEqual([
        'https://api.stripe.com:443/x\\u001b[2Jy',
        'https://api.stripe.com:443/live/1',
        'https://api.stripe.com:443/live/2',
      ]);
    },
    60_000,
  );
});

describe('reins audit, without a database', () => {
  it.each([
    ['--since', '5 minutes'],
    ['--since', '2025-13-45'],
    ['--since', '-1h'],
    ['--limit', '0'],
    ['--limit', 'ten'],
  ])(
    'refuses %s %j with exit 2 in one line',
    async (option, value) => {
      const run = await runReins(['audit', 'query', option, value], {
        DATABASE_URL: undefined,
        REINS_DATA_DIR: 'memory',
      });
      expect(run.code).toBe(2);
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(run.stderr).toMatch(new RegExp(`^reins: ${option} `));
    },
    60_000,
  );

  it('explains both commands and every option in --help', async () => {
    const tail = await runReins(['audit', 'tail', '--help']);
    expect(tail.code).toBe(0);
    for (const text of [
      '-n, --lines',
      '--follow',
      'oldest first',
      'DATABASE_URL',
      '--data-dir',
      'Exit codes',
    ]) {
      expect(tail.stdout).toContain(text);
    }
    const query = await runReins(['audit', 'query', '--help']);
    expect(query.code).toBe(0);
    for (const text of [
      '--tenant',
      '--agent',
      '--since',
      '30m',
      'ISO 8601',
      '--decision',
      'allowed',
      '--limit',
      '--json',
      'newest first',
    ]) {
      expect(query.stdout).toContain(text);
    }
    const audit = await runReins(['audit', '--help']);
    expect(audit.stdout).toContain('tail');
    expect(audit.stdout).toContain('query');
  }, 60_000);
});

describe('parseSince', () => {
  const now = new Date('2026-05-01T12:00:00Z');
  it.each([
    ['90s', '2026-05-01T11:58:30.000Z'],
    ['30m', '2026-05-01T11:30:00.000Z'],
    ['1h', '2026-05-01T11:00:00.000Z'],
    ['2d', '2026-04-29T12:00:00.000Z'],
    ['2026-04-30T08:00:00Z', '2026-04-30T08:00:00.000Z'],
    ['2026-04-30T08:00:00+02:00', '2026-04-30T06:00:00.000Z'],
    ['2026-04-30', '2026-04-30T00:00:00.000Z'],
  ])('reads %s', (text, expected) => {
    expect(parseSince(text, now)?.toISOString()).toBe(expected);
  });

  it.each([
    '',
    'yesterday',
    '1 h',
    '1H',
    '-1h',
    '1y',
    '1.5h',
    '2026-02-30T25:00:00Z',
    'T12:00',
    '1714564800',
  ])('refuses %j', (text) => {
    expect(parseSince(text, now)).toBeUndefined();
  });
});

describe('following by id', () => {
  it('watches ids skipped over (rows still committing) and gives them up after a while', () => {
    const cursor = new FollowCursor(10);
    cursor.saw([11, 14], 0);
    expect(cursor.after).toBe(14);
    expect(cursor.missing.sort()).toEqual([12, 13]);
    cursor.saw([13], 1_000);
    expect(cursor.missing).toEqual([12]);
    cursor.saw([15], 60_000);
    expect(cursor.missing).toEqual([]);
    expect(cursor.after).toBe(15);
  });
});

describe('an audit line', () => {
  const record = (overrides: Partial<AuditRecord>): AuditRecord => ({
    id: 1,
    time: '2026-05-01T12:00:00.000Z',
    request_id: 'r',
    tenant: 'acme',
    agent: 'billing-agent',
    subject: 'billing-agent',
    delegation_chain: null,
    jti: 'j',
    method: 'GET',
    scheme: 'https',
    host: 'api.stripe.com',
    port: 443,
    path: '/v1/charges',
    decision: 'allowed',
    reason: null,
    matched_rule: null,
    resolved_address: null,
    inspected: false,
    status: 200,
    bytes_in: 0,
    bytes_out: 0,
    duration_ms: 1,
    detail: null,
    ...overrides,
  });
  const T = '2026-05-01T12:00:00.000Z';

  it.each([
    [
      'a request: scheme://host:port/path',
      record({}),
      `${T}  allowed  -  acme  billing-agent  GET  https://api.stripe.com:443/v1/charges  200`,
    ],
    [
      'a refused CONNECT: CONNECT host:port, not a made-up URL',
      record({ method: 'CONNECT', path: '/', decision: 'denied', reason: 'no_matching_rule', status: 403 }),
      `${T}  denied   no_matching_rule  acme  billing-agent  CONNECT  api.stripe.com:443  403`,
    ],
    [
      'a CONNECT to an IPv6 literal, bracketed',
      record({ method: 'CONNECT', host: '2001:db8::1', path: '/', status: 200 }),
      `${T}  allowed  -  acme  billing-agent  CONNECT  [2001:db8::1]:443  200`,
    ],
    [
      'a delegated request: the agent and the user it acts for',
      record({ agent: 'research-agent', subject: 'alice', delegation_chain: { sub: 'research-agent' } }),
      `${T}  allowed  -  acme  research-agent (for alice)  GET  https://api.stripe.com:443/v1/charges  200`,
    ],
    [
      'a 407: the credential problem and the target',
      record({
        tenant: null,
        agent: null,
        subject: null,
        jti: null,
        method: 'CONNECT',
        path: '/',
        decision: 'denied',
        reason: 'invalid_token',
        status: 407,
        detail: 'revoked',
      }),
      `${T}  denied   invalid_token (revoked)  -  -  CONNECT  api.stripe.com:443  407`,
    ],
    [
      'a 407 written before the problem was recorded',
      record({
        tenant: null,
        agent: null,
        subject: null,
        decision: 'denied',
        reason: 'invalid_token',
        status: 407,
      }),
      `${T}  denied   invalid_token  -  -  GET  https://api.stripe.com:443/v1/charges  407`,
    ],
    [
      'a 400: its reason, not its detail in words',
      record({
        host: null,
        port: null,
        path: null,
        method: null,
        scheme: null,
        decision: 'denied',
        reason: 'missing_host',
        status: 400,
        detail: 'an HTTP/1.1 request needs a Host header',
      }),
      `${T}  denied   missing_host  acme  billing-agent  -  -  400`,
    ],
    [
      'a control character in a delegated user, escaped',
      record({ subject: 'eve\u001b[2J' }),
      `${T}  allowed  -  acme  billing-agent (for eve\\u001b[2J)  GET  https://api.stripe.com:443/v1/charges  200`,
    ],
  ])('shows %s', (_name, input, expected) => {
    expect(formatLine(input)).toBe(expected);
  });
});
