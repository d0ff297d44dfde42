// LiveState: revocations, quarantines and policy applies reach the gateway within one second of
// commit (SPEC.md, "The gateway"), with or without NOTIFY, on every database backend.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { matchRules, normaliseTarget } from '../../src/egress/index.ts';
import { type GatewayChange, LiveState, type LiveStateOptions } from '../../src/gateway/live-state.ts';
import { insertIssued, revokeTree } from '../../src/server/provider/ledger.ts';
import type { Db } from '../../src/store/db.ts';
import { exampleSources } from '../policy/support.ts';
import { applySources } from '../server/provider/support.ts';
import { openMigratedDb, testBackends } from '../support/db.ts';
import { quarantineAgent, releaseAgent } from '../support/quarantine.ts';

/** The promise under test: a committed change is in force at the gateway within this. */
const ONE_SECOND = 1_000;

/** Resolves as soon as `check()` holds; fails the test if it does not within `ms`. */
async function within(ms: number, what: string, check: () => boolean): Promise<void> {
  const start = performance.now();
  while (!check()) {
    if (performance.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let nextJti = 0;
/** Records a token in the ledger; `parent` makes it one exchanged from that token. */
async function issue(db: Db, options: { parent?: string; expiresIn?: number } = {}): Promise<string> {
  const jti = `jti-${process.pid}-${++nextJti}`;
  const now = Math.floor(Date.now() / 1000);
  await insertIssued(db, [
    {
      jti,
      tenant: 'acme',
      clientId: 'billing-agent',
      sub: 'billing-agent',
      agent: 'billing-agent',
      parentJti: options.parent ?? null,
      kind: options.parent ? 'token_exchange' : 'client_credentials',
      kid: null,
      iat: now,
      exp: now + (options.expiresIn ?? 300),
    },
  ]);
  return jti;
}

/** The example policies with billing-agent no longer allowed acme's invoices. */
function withoutInvoices() {
  return exampleSources().map((source) => {
    if (source.name !== 'acme.yaml') return source;
    const text = source.text.replace(
      'egress: [payments, "GET https://acme.api.saas.example/invoices/"]',
      'egress: [payments]',
    );
    if (text === source.text) throw new Error('acme.yaml no longer has the line this test edits');
    return { ...source, text };
  });
}

function billingMayReadInvoices(live: LiveState): boolean {
  const grant = live.policy.registration('acme', 'billing-agent');
  const target = normaliseTarget({
    method: 'GET',
    scheme: 'https',
    host: 'acme.api.saas.example',
    path: '/invoices/42',
  });
  if (!grant || !target.ok) throw new Error('billing-agent has no registration');
  return matchRules(grant, target.target);
}

/** `db` with every query failing while `broken.now` is set, and listen calls counted. */
function faulty(db: Db, options: { deliver?: boolean } = {}) {
  const state = {
    broken: false,
    queries: 0,
    listening: new Map<string, (payload: string) => void>(),
    unlistened: [] as string[],
  };
  const check = () => {
    state.queries++;
    if (state.broken) throw new Error('database unreachable (test)');
  };
  const wrapped: Db = {
    backend: db.backend,
    query: async (sql, params) => {
      check();
      return db.query(sql, params);
    },
    transaction: async (work) => {
      check();
      return db.transaction(work);
    },
    listen: async (channel, onNotify) => {
      state.listening.set(channel, onNotify);
      const unlisten = options.deliver ? await db.listen(channel, onNotify) : async () => undefined;
      return async () => {
        state.unlistened.push(channel);
        await unlisten();
      };
    },
    notify: (channel, payload) => db.notify(channel, payload),
    close: async () => undefined,
  };
  return { db: wrapped, state };
}

/** Releases every agent whose latest feed event is a quarantine. */
async function releaseEveryAgent(db: Db): Promise<void> {
  const { rows } = await db.query<{ tenant: string; agent: string; kind: string }>(
    `select distinct on (tenant, agent) tenant, agent, kind from revocations
      where kind in ('agent_quarantined', 'agent_released') order by tenant, agent, seq desc`,
  );
  for (const row of rows) {
    if (row.kind === 'agent_quarantined') await releaseAgent(db, row.tenant, row.agent, 'test cleanup');
  }
}

async function lastSeq(db: Db): Promise<number> {
  const { rows } = await db.query<{ seq: string | number }>(
    'select coalesce(max(seq), 0) as seq from revocations',
  );
  return Number(rows[0]?.seq);
}

describe.each(testBackends())('LiveState on $name', (backend) => {
  let db: Db;
  let live: LiveState | undefined;
  let changes: GatewayChange[];
  let errors: unknown[];
  let version1: number;

  async function open(target: Db = db, options: LiveStateOptions = {}): Promise<LiveState> {
    live = await LiveState.open(target, { onError: (err) => errors.push(err), ...options });
    live.onChange((change) => changes.push(change));
    return live;
  }

  // One database for the file (opening and migrating one costs seconds); each test starts from
  // the example policy in force and no agent quarantined.
  beforeAll(async () => {
    db = await openMigratedDb(backend);
  });
  afterAll(() => db.close());
  beforeEach(async () => {
    version1 = await applySources(db, exampleSources());
    changes = [];
    errors = [];
  });
  afterEach(async () => {
    await live?.close();
    live = undefined;
    await releaseEveryAgent(db);
  });

  it('refuses a revoked token and every token exchanged from it within a second, and announces each', async () => {
    const parent = await issue(db);
    const child = await issue(db, { parent });
    const grandchild = await issue(db, { parent: child });
    const bystander = await issue(db);
    const state = await open();
    expect(state.isRevoked(parent)).toBe(false);

    await revokeTree(db, parent, 'test');
    await within(ONE_SECOND, 'the chain revoked', () =>
      [parent, child, grandchild].every((jti) => state.isRevoked(jti)),
    );
    expect(state.isRevoked(bystander)).toBe(false);
    expect(changes).toEqual(
      expect.arrayContaining([parent, child, grandchild].map((jti) => ({ kind: 'revoked', jti }))),
    );
    expect(state.seq).toBe(await lastSeq(db));
    expect(state.healthy).toBe(true);
    expect(errors).toEqual([]);
  });

  it('sees an agent quarantined and released within a second, and announces both', async () => {
    const state = await open();
    const event = await quarantineAgent(db, 'acme', 'billing-agent', 'exfiltration suspected');
    expect(event).toMatchObject({ kind: 'agent_quarantined', tenant: 'acme', agent: 'billing-agent' });
    await within(ONE_SECOND, 'quarantined', () => state.isQuarantined('acme', 'billing-agent'));
    expect(state.isQuarantined('acme', 'research-agent')).toBe(false);
    expect(state.isQuarantined('globex', 'billing-agent')).toBe(false);
    expect(changes).toContainEqual({ kind: 'quarantined', tenant: 'acme', agent: 'billing-agent' });

    await releaseAgent(db, 'acme', 'billing-agent', 'false alarm');
    await within(ONE_SECOND, 'released', () => !state.isQuarantined('acme', 'billing-agent'));
    expect(changes.at(-1)).toEqual({ kind: 'released', tenant: 'acme', agent: 'billing-agent' });
  });

  it("narrows an agent's registration within a second of a policy apply, and announces the version", async () => {
    const state = await open();
    expect(state.policy.version).toBe(version1);
    expect(billingMayReadInvoices(state)).toBe(true);

    const version2 = await applySources(db, withoutInvoices());
    await within(ONE_SECOND, 'the new policy in force', () => state.policy.version === version2);
    expect(billingMayReadInvoices(state)).toBe(false);
    expect(changes).toEqual([{ kind: 'policy', version: version2 }]);
  });

  it('delivers every kind of change within a second by polling alone when NOTIFY never arrives', async () => {
    const silent = faulty(db);
    const state = await open(silent.db);
    expect([...silent.state.listening.keys()].sort()).toEqual(['reins_policy', 'reins_revocations']);
    const jti = await issue(db);

    await revokeTree(db, jti, 'test');
    await within(ONE_SECOND, 'revoked', () => state.isRevoked(jti));
    await quarantineAgent(db, 'acme', 'research-agent', 'test');
    await within(ONE_SECOND, 'quarantined', () => state.isQuarantined('acme', 'research-agent'));
    const version2 = await applySources(db, withoutInvoices());
    await within(ONE_SECOND, 'policy applied', () => state.policy.version === version2);
    expect(billingMayReadInvoices(state)).toBe(false);
    expect(changes).toEqual([
      { kind: 'revoked', jti },
      { kind: 'quarantined', tenant: 'acme', agent: 'research-agent' },
      { kind: 'policy', version: version2 },
    ]);
  });

  it('loads what was committed before it opened: revocations, and each agent’s latest quarantine state', async () => {
    const parent = await issue(db);
    const child = await issue(db, { parent });
    await revokeTree(db, parent, 'test');
    await quarantineAgent(db, 'acme', 'billing-agent', 'test');
    await quarantineAgent(db, 'globex', 'shipping-agent', 'test');
    await releaseAgent(db, 'globex', 'shipping-agent', 'test');

    const state = await open();
    expect(state.isRevoked(parent)).toBe(true);
    expect(state.isRevoked(child)).toBe(true);
    expect(state.isQuarantined('acme', 'billing-agent')).toBe(true);
    expect(state.isQuarantined('globex', 'shipping-agent')).toBe(false);
    expect(state.seq).toBe(await lastSeq(db));
    expect(state.policy.version).toBe(version1);
  });

  it('neither loads nor keeps revocations of expired tokens', async () => {
    let clock = Date.now();
    const expired = await issue(db, { expiresIn: -60 });
    const longLived = await issue(db, { expiresIn: 60 });
    await revokeTree(db, expired, 'test');
    await revokeTree(db, longLived, 'test');
    const state = await open(db, { now: () => new Date(clock) });
    expect(state.isRevoked(expired)).toBe(false);
    expect(state.isRevoked(longLived)).toBe(true);

    const shortLived = await issue(db, { expiresIn: 30 });
    const deadOnArrival = await issue(db, { expiresIn: -1 });
    await revokeTree(db, shortLived, 'test');
    await revokeTree(db, deadOnArrival, 'test');
    await within(ONE_SECOND, 'revoked', () => state.isRevoked(shortLived));
    // Announced (a tunnel it opened may still be up) but not kept: it fails verification anyway.
    await within(ONE_SECOND, 'announced', () =>
      changes.some((c) => c.kind === 'revoked' && c.jti === deadOnArrival),
    );
    expect(state.isRevoked(deadOnArrival)).toBe(false);

    clock += 45_000;
    await within(ONE_SECOND, 'pruned', () => !state.isRevoked(shortLived));
    expect(state.isRevoked(longLived)).toBe(true);
    clock += 30_000;
    await within(ONE_SECOND, 'pruned', () => !state.isRevoked(longLived));
  });

  it('keeps the last known state while the database fails, reports each failure, and catches up after', async () => {
    const flaky = faulty(db, { deliver: true });
    const state = await open(flaky.db, { pollMs: 50 });
    const before = await issue(db);
    await revokeTree(db, before, 'test');
    await quarantineAgent(db, 'acme', 'billing-agent', 'test');
    await within(
      ONE_SECOND,
      'caught up',
      () => state.isRevoked(before) && state.isQuarantined('acme', 'billing-agent'),
    );
    expect(state.healthy).toBe(true);

    flaky.state.broken = true;
    const during = await issue(db);
    await revokeTree(db, during, 'test');
    await releaseAgent(db, 'acme', 'billing-agent', 'test');
    const version2 = await applySources(db, withoutInvoices());
    await within(ONE_SECOND, 'failures reported', () => errors.length >= 3);
    expect(errors[0]).toMatchObject({ message: 'database unreachable (test)' });
    expect(state.healthy).toBe(false);
    expect(state.isRevoked(before)).toBe(true);
    expect(state.isRevoked(during)).toBe(false);
    expect(state.isQuarantined('acme', 'billing-agent')).toBe(true);
    expect(state.policy.version).toBe(version1);
    expect(billingMayReadInvoices(state)).toBe(true);

    flaky.state.broken = false;
    await within(ONE_SECOND, 'recovered', () => state.healthy);
    expect(state.isRevoked(during)).toBe(true);
    expect(state.isQuarantined('acme', 'billing-agent')).toBe(false);
    expect(state.policy.version).toBe(version2);
  });

  it('re-reads everything when the listener reconnects, announcing what it missed', async () => {
    const jti = await issue(db);
    await quarantineAgent(db, 'acme', 'billing-agent', 'test');
    // No poll within the test: only the reconnect can bring the changes.
    const quiet = faulty(db);
    const state = await open(quiet.db, { pollMs: 60_000 });
    expect(state.isQuarantined('acme', 'billing-agent')).toBe(true);

    await revokeTree(db, jti, 'test');
    await releaseAgent(db, 'acme', 'billing-agent', 'test');
    await quarantineAgent(db, 'acme', 'report-agent', 'test');
    quiet.state.listening.get('reins_revocations')?.('');
    await within(ONE_SECOND, 'resynchronised', () => state.isRevoked(jti));
    expect(state.isQuarantined('acme', 'billing-agent')).toBe(false);
    expect(state.isQuarantined('acme', 'report-agent')).toBe(true);
    expect(changes).toEqual(
      expect.arrayContaining([
        { kind: 'revoked', jti },
        { kind: 'released', tenant: 'acme', agent: 'billing-agent' },
        { kind: 'quarantined', tenant: 'acme', agent: 'report-agent' },
      ]),
    );
    expect(changes).toHaveLength(3);
  });

  it('refuses to open when the first load fails, and stops listening', async () => {
    const down = faulty(db);
    down.state.broken = true;
    await expect(LiveState.open(down.db)).rejects.toThrow('database unreachable (test)');
    expect(down.state.unlistened.sort()).toEqual(['reins_policy', 'reins_revocations']);
  });

  it('a listener that throws is reported and does not keep others from the change', async () => {
    const state = await open();
    state.onChange(() => {
      throw new Error('listener bug');
    });
    const seen: GatewayChange[] = [];
    const unsubscribe = state.onChange((change) => seen.push(change));
    await quarantineAgent(db, 'acme', 'billing-agent', 'test');
    await within(ONE_SECOND, 'delivered', () => seen.length === 1);
    expect(errors).toContainEqual(expect.objectContaining({ message: 'listener bug' }));
    unsubscribe();
    await releaseAgent(db, 'acme', 'billing-agent', 'test');
    await within(ONE_SECOND, 'released', () => !state.isQuarantined('acme', 'billing-agent'));
    expect(seen).toHaveLength(1);
  });

  it('close stops listening and polling', async () => {
    const counted = faulty(db, { deliver: true });
    const state = await open(counted.db, { pollMs: 10 });
    await state.close();
    live = undefined;
    const queries = counted.state.queries;
    expect(counted.state.unlistened.sort()).toEqual(['reins_policy', 'reins_revocations']);
    await quarantineAgent(db, 'acme', 'billing-agent', 'test');
    await sleep(100);
    expect(counted.state.queries).toBe(queries);
    expect(state.healthy).toBe(false);
  });
});
