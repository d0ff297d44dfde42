// The monitoring watcher's hand-over (src/runtime/monitoring.ts, src/monitor/lease.ts): one
// process of a deployment watches the audit trail; another stands by and, when the first stops
// or stops renewing its lease, continues from the last checkpoint — every audit row learnt once,
// none skipped, the baseline carried over.
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditEvent, AuditWriter } from '../../src/gateway/audit.ts';
import { loadBaselines } from '../../src/monitor/baselines-store.ts';
import { acquireLease } from '../../src/monitor/lease.ts';
import { MonitoringWatcher } from '../../src/runtime/monitoring.ts';
import type { Db } from '../../src/store/db.ts';
import { within } from '../gateway/support.ts';
import { sourcesOf } from '../policy/support.ts';
import { applySources } from '../server/provider/support.ts';
import { openMigratedDb, testBackends } from '../support/db.ts';

const silent = pino({ level: process.env.DEBUG_MON ? 'info' : 'silent' });

function event(host: string, refused = false): AuditEvent {
  return {
    time: new Date(),
    requestId: randomUUID(),
    tenant: 'acme',
    agent: 'worker',
    subject: 'worker',
    delegationChain: null,
    jti: 'j1',
    method: 'GET',
    scheme: 'https',
    host,
    port: 443,
    path: '/',
    decision: 'allowed',
    reason: null,
    matchedRule: `https://${host}/`,
    resolvedAddress: '198.51.100.7',
    inspected: false,
    status: 200,
    bytesIn: 10,
    bytesOut: 5,
    durationMs: 1,
    ...(refused
      ? { decision: 'denied' as const, reason: 'forbidden_address', status: 403, matchedRule: null }
      : {}),
  };
}

const POLICY = {
  'acme.yaml': [
    'tenant: acme',
    'monitoring:',
    '  learning_period: 1h',
    '  detections:',
    '    new_destination: { response: alert }',
    '    forbidden_address: { response: alert }',
    'agents:',
    '  worker:',
    '    auth: { method: client_secret_basic, secret_env: ACME_WORKER_SECRET }',
    '    egress: ["https://a.test/"]',
    '',
  ].join('\n'),
};

describe.each(testBackends())('the monitoring watch on $name', (backend) => {
  let db: Db;
  const watchers: MonitoringWatcher[] = [];

  beforeAll(async () => {
    db = await openMigratedDb(backend);
    await applySources(db, sourcesOf(POLICY));
  });
  afterAll(async () => {
    for (const watcher of watchers) await watcher.stop();
    await db?.close();
  });

  function watcher(holder: string, checkpointMs = 100): MonitoringWatcher {
    const made = new MonitoringWatcher({ db, log: silent, holder, tickMs: 20, leaseMs: 400, checkpointMs });
    watchers.push(made);
    made.start();
    return made;
  }

  async function requests(): Promise<number> {
    const [own] = await loadBaselines(db, { tenant: 'acme', agent: 'worker' });
    return own?.snapshot.requests ?? 0;
  }

  /** Records the events as a gateway does; a drained writer takes no more, so one per batch. */
  async function send(count: number, host: string, refused = false): Promise<void> {
    const audit = new AuditWriter(db, silent);
    for (let i = 0; i < count; i++) audit.record(event(host, refused));
    await audit.drain();
  }

  it('is held by one process; the other takes over when it stops, and every row is learnt once', async () => {
    const first = watcher('first');
    await within(2_000, () => first.watching);
    const second = watcher('second');
    await send(30, 'a.test');
    await within(5_000, async () => (await requests()) === 30);
    expect(second.watching).toBe(false);

    await first.stop();
    await within(2_000, () => second.watching);
    await send(20, 'b.test');
    await within(5_000, async () => (await requests()) === 50);
    const [own] = await loadBaselines(db, { tenant: 'acme', agent: 'worker' });
    expect(Object.keys(own?.snapshot.hosts ?? {}).sort()).toEqual(['a.test', 'b.test']);
    expect(own?.snapshot.hosts['a.test']?.requests).toBe(30);
    await second.stop();
  });

  it('is taken over once a holder that stopped renewing lets its lease lapse', async () => {
    // A holder that took the lease and died: nothing renews it.
    expect(await acquireLease(db, 'died', 300)).not.toBeNull();
    const next = watcher('next');
    await within(3_000, () => next.watching);
    const before = await requests();
    await send(5, 'a.test');
    await within(5_000, async () => (await requests()) === before + 5);
    await next.stop();
  });

  it('does not act on a finding once another process holds the lease, and stands by', async () => {
    await db.query('delete from monitor_lease');
    // No checkpoint comes (it would find the lease gone too): only the fence can stop it.
    const fenced = watcher('fenced', 600_000);
    await within(2_000, () => fenced.watching);
    // Another process took the lease while this one was cut off (its own renewal not yet failed).
    await db.query(`update monitor_lease set holder = 'usurper', expires_at = now() + interval '1 hour'`);
    await send(1, 'metadata.test', true);
    await within(3_000, () => !fenced.watching);
    const { rows } = await db.query('select 1 from alerts');
    expect(rows).toEqual([]);
    await fenced.stop();
    await db.query('delete from monitor_lease');
  });
});
