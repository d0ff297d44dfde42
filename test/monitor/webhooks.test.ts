// Alerts sent to a tenant's webhook (SPEC.md, "Monitoring and containment"): from the durable
// outbox, signed with HMAC-SHA256 (X-Reins-Signature), retried until a 2xx — so a receiver that
// is down for a while receives every alert once it is back — to an address the gateway's
// refusals allow, and never in the way of the gateway.
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseOpening } from '../../src/egress/index.ts';
import { tableResolver } from '../../src/gateway/resolve.ts';
import { recordAlert } from '../../src/monitor/alerts-store.ts';
import type { Finding } from '../../src/monitor/index.ts';
import { retryDelayMs, webhookSignature } from '../../src/monitor/webhook.ts';
import type { WebhookModel } from '../../src/policy/model.ts';
import { WebhookOutbox } from '../../src/runtime/webhooks.ts';
import type { Db } from '../../src/store/db.ts';
import { within } from '../gateway/support.ts';
import { openMigratedDb, testBackends } from '../support/db.ts';

const SECRET = 'webhook-test-secret';
const silent = pino({ level: 'silent' });

function finding(host: string, tenant = 'acme'): Finding {
  return {
    detection: 'new_destination',
    response: 'alert',
    subject: { tenant, agent: 'worker', user: null },
    time: Date.now(),
    summary: `agent worker contacted ${host} for the first time since its learning period ended`,
    evidence: { hosts: [host], count: 1, threshold: null, windowMs: null, requestIds: ['r1'], jtis: ['j1'] },
  };
}

interface Received {
  readonly body: string;
  readonly signature: string | undefined;
  readonly alertId: string | undefined;
}

/** A receiver on 127.0.0.1 that records what reaches it and answers `status()`. */
async function receiver(
  status: () => number,
): Promise<{ port: number; received: Received[]; server: http.Server }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      received.push({
        body,
        signature: req.headers['x-reins-signature'] as string | undefined,
        alertId: req.headers['x-reins-alert-id'] as string | undefined,
      });
      res.statusCode = status();
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, received, server };
}

function opening(text: string) {
  const parsed = parseOpening(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.opening;
}

function verifies(received: Received): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(received.body).digest('hex')}`);
  const given = Buffer.from(received.signature ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function deliveries(db: Db) {
  const { rows } = await db.query<{
    alert_id: number;
    attempts: number;
    delivered: boolean;
    last_error: string | null;
  }>(
    `select alert_id::float8 as alert_id, attempts, delivered_at is not null as delivered, last_error
       from alert_deliveries order by alert_id`,
  );
  return rows;
}

describe('the webhook signature and retry schedule', () => {
  it('signs the exact body with HMAC-SHA256 as sha256=<hex>', () => {
    const body = '{"id":1}';
    expect(webhookSignature(body, 'k')).toBe(
      `sha256=${createHmac('sha256', 'k').update(body).digest('hex')}`,
    );
  });

  it('retries after a second, doubling, at most every five minutes', () => {
    expect([1, 2, 3, 4].map(retryDelayMs)).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(retryDelayMs(12)).toBe(300_000);
    expect(retryDelayMs(1_000)).toBe(300_000);
  });
});

describe.each(testBackends())('the alert outbox on $name', (backend) => {
  let db: Db;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
  });
  afterAll(async () => {
    await db?.close();
  });

  async function fresh(): Promise<void> {
    await db.query('delete from alerts');
  }

  /** Kicks passes until `done` holds (each pass sends what is due). */
  async function drive(
    outbox: WebhookOutbox,
    webhook: WebhookModel,
    done: () => Promise<boolean>,
  ): Promise<void> {
    await within(10_000, async () => {
      outbox.kick(() => webhook);
      return done();
    });
  }

  it('delivers every alert once, signed, after the receiver was down for a while', async () => {
    await fresh();
    let up = false;
    const target = await receiver(() => (up ? 204 : 503));
    const webhook = { url: `http://127.0.0.1:${target.port}/hooks/reins`, secretEnv: 'ACME_HOOK_SECRET' };
    const outbox = new WebhookOutbox({
      db,
      log: silent,
      openings: [opening(`127.0.0.1/32:${target.port}`)],
      resolve: tableResolver({}),
      env: { ACME_HOOK_SECRET: SECRET },
      retryDelayMs: () => 50,
    });
    const ids: number[] = [];
    for (const host of ['a.test', 'b.test', 'c.test']) ids.push(await recordAlert(db, finding(host), true));
    // Down: the oldest alert is tried again and again, the others wait with it; nothing is lost.
    await drive(outbox, webhook, async () => ((await deliveries(db))[0]?.attempts ?? 0) >= 3);
    const waiting = await deliveries(db);
    expect(waiting.every((row) => !row.delivered)).toBe(true);
    expect(waiting[0]?.last_error).toBe('the receiver answered 503');
    expect(target.received.every((r) => Number(r.alertId) === ids[0])).toBe(true);
    target.received.length = 0;
    up = true;
    await drive(outbox, webhook, async () => (await deliveries(db)).every((row) => row.delivered));
    await outbox.stop();
    expect(target.received.map((r) => Number(r.alertId)).sort()).toEqual(ids.sort());
    expect(target.received.every(verifies)).toBe(true);
    const bodies = target.received.map((r) => JSON.parse(r.body));
    expect(bodies.map((b) => b.evidence.hosts[0]).sort()).toEqual(['a.test', 'b.test', 'c.test']);
    expect(bodies[0]).toMatchObject({
      tenant: 'acme',
      agent: 'worker',
      detection: 'new_destination',
      response: 'alert',
    });
    target.server.close();
  });

  it('keeps one tenant’s dead receiver from holding up another tenant’s alerts', async () => {
    await fresh();
    const target = await receiver(() => 204);
    const webhooks: Record<string, WebhookModel> = {
      // Nothing listens on the port after the receiver's: refused at once, every time.
      acme: { url: `http://127.0.0.1:${target.port + 1}/down`, secretEnv: 'ACME_HOOK_SECRET' },
      globex: { url: `http://127.0.0.1:${target.port}/up`, secretEnv: 'ACME_HOOK_SECRET' },
    };
    const outbox = new WebhookOutbox({
      db,
      log: silent,
      openings: [opening('127.0.0.1/32')],
      resolve: tableResolver({}),
      env: { ACME_HOOK_SECRET: SECRET },
      retryDelayMs: () => 60_000,
    });
    // More of acme's alerts than a pass looks at, all older than globex's one.
    for (let i = 0; i < 60; i++) await recordAlert(db, finding(`a${i}.test`), true);
    const globex = await recordAlert(db, finding('g.test', 'globex'), true);
    await within(10_000, async () => {
      outbox.kick((tenant) => webhooks[tenant] ?? null);
      return target.received.some((r) => Number(r.alertId) === globex);
    });
    await outbox.stop();
    const rows = await deliveries(db);
    // acme's first alert failed once; the others wait with it rather than being tried in turn.
    expect(rows.filter((row) => row.attempts > 0 && !row.delivered)).toHaveLength(1);
    expect(rows.find((row) => row.alert_id === globex)?.delivered).toBe(true);
    target.server.close();
  });

  it('refuses a secret_env that names one of the server’s own settings', async () => {
    await fresh();
    const target = await receiver(() => 200);
    const outbox = new WebhookOutbox({
      db,
      log: silent,
      openings: [opening(`127.0.0.1/32:${target.port}`)],
      resolve: tableResolver({}),
      env: { REINS_ADMIN_TOKEN: 'the-admin-credential' },
      retryDelayMs: () => 50,
    });
    await recordAlert(db, finding('a.test'), true);
    const webhook = { url: `http://127.0.0.1:${target.port}/`, secretEnv: 'REINS_ADMIN_TOKEN' };
    await drive(outbox, webhook, async () => ((await deliveries(db))[0]?.attempts ?? 0) >= 1);
    await outbox.stop();
    expect((await deliveries(db))[0]?.last_error).toBe(
      "secret_env REINS_ADMIN_TOKEN names one of the server's own settings: give the webhook a variable of its own",
    );
    expect(target.received).toEqual([]);
    target.server.close();
  });

  it('does not send while the secret is missing, and says which variable to set', async () => {
    await fresh();
    const target = await receiver(() => 200);
    const webhook = { url: `http://127.0.0.1:${target.port}/`, secretEnv: 'UNSET_HOOK_SECRET' };
    const outbox = new WebhookOutbox({
      db,
      log: silent,
      openings: [opening(`127.0.0.1/32:${target.port}`)],
      resolve: tableResolver({}),
      env: {},
      retryDelayMs: () => 50,
    });
    await recordAlert(db, finding('a.test'), true);
    await drive(outbox, webhook, async () => ((await deliveries(db))[0]?.attempts ?? 0) >= 1);
    await outbox.stop();
    expect((await deliveries(db))[0]).toMatchObject({
      delivered: false,
      last_error: "the webhook's secret is not set: set UNSET_HOOK_SECRET in the server's environment",
    });
    expect(target.received).toEqual([]);
    target.server.close();
  });

  it.each([
    ['loopback not opened', 'http://127.0.0.1:PORT/', {}, 'resolves to 127.0.0.1 (loopback)'],
    ['the metadata address', 'http://169.254.169.254/latest', {}, 'resolves to 169.254.169.254 (metadata)'],
    [
      'a name resolving privately',
      'http://hooks.internal.test:PORT/',
      { 'hooks.internal.test': ['10.0.0.5'] },
      'resolves to 10.0.0.5 (private)',
    ],
    [
      'a name with one private answer among public ones',
      'http://mixed.test:PORT/',
      { 'mixed.test': ['93.184.215.14', '127.0.0.1'] },
      'resolves to 127.0.0.1 (loopback)',
    ],
  ])('refuses a webhook URL to %s, and dials nothing', async (_name, url, hosts, why) => {
    await fresh();
    const target = await receiver(() => 200);
    const webhook = { url: url.replace('PORT', String(target.port)), secretEnv: 'ACME_HOOK_SECRET' };
    const outbox = new WebhookOutbox({
      db,
      log: silent,
      // Opened: another port of loopback only, so the receiver's own stays refused.
      openings: [opening(`127.0.0.1/32:${target.port + 1}`)],
      resolve: tableResolver(hosts),
      env: { ACME_HOOK_SECRET: SECRET },
      retryDelayMs: () => 50,
    });
    await recordAlert(db, finding('a.test'), true);
    await drive(outbox, webhook, async () => ((await deliveries(db))[0]?.attempts ?? 0) >= 1);
    await outbox.stop();
    const [row] = await deliveries(db);
    expect(row?.delivered).toBe(false);
    expect(row?.last_error).toContain(why);
    expect(row?.last_error).toContain('REINS_GATEWAY_ALLOW_PRIVATE');
    expect(target.received).toEqual([]);
    target.server.close();
  });
});
