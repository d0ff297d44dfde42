// Monitoring end to end (issue 14's acceptance): real traffic through the gateway, its audit rows
// read by the monitoring watcher (src/runtime/monitoring.ts), findings stored as alerts, and the
// responses carried out — quarantine reaching the gateway (live token refused, open tunnel
// closed) and the token endpoint, release letting the agent back, revoke cascading to tokens
// exchanged from the one involved.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseOpening } from '../../src/egress/index.ts';
import { tableResolver } from '../../src/gateway/resolve.ts';
import { selectAlerts } from '../../src/monitor/alerts-store.ts';
import { loadBaselines } from '../../src/monitor/baselines-store.ts';
import { MonitoringWatcher } from '../../src/runtime/monitoring.ts';
import { WebhookOutbox } from '../../src/runtime/webhooks.ts';
import { readLedgerEntry, recordIssued } from '../../src/server/provider/ledger.ts';
import {
  isQuarantined,
  quarantineAgent,
  releaseAgent,
  setQuarantine,
} from '../../src/server/provider/quarantine.ts';
import { gatewayPolicy, type Harness, startHarness, WORKER_SECRET, within } from '../gateway/support.ts';
import { basic, requestToken } from '../server/provider/support.ts';
import { testBackends } from '../support/db.ts';

const silent = pino({ level: 'silent' });

interface Answer {
  readonly status: number;
  readonly reason: string | undefined;
}

/** An absolute-form GET through the gateway, as an agent's HTTP client sends it. */
function get(h: Harness, token: string, url: string): Promise<Answer> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: h.gateway.port,
        path: url,
        agent: false,
        headers: { host: target.host, 'proxy-authorization': `Bearer ${token}` },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            reason: res.headers['x-reins-reason'] as string | undefined,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function opening(text: string) {
  const parsed = parseOpening(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.opening;
}

function jtiOf(token: string): string {
  return JSON.parse(Buffer.from(String(token.split('.')[1]), 'base64url').toString()).jti;
}

/** acme's policy (gateway/support.ts) with a `monitoring:` section. */
function monitoredPolicy(port: number, monitoring: readonly string[]): Record<string, string> {
  const files = gatewayPolicy(port);
  return {
    ...files,
    'acme.yaml': `${files['acme.yaml']}monitoring:\n${monitoring.map((l) => `  ${l}\n`).join('')}`,
  };
}

/** Sends GETs to the hosts the agent knows until its learning period (`ms`) is over. */
async function learn(h: Harness, token: string, ms: number): Promise<void> {
  const port = h.upstream.port;
  const until = Date.now() + ms + 50;
  while (Date.now() < until) {
    expect((await get(h, token, `http://api.test:${port}/v1/learn`)).status).toBe(200);
    expect((await get(h, token, `http://whole.test:${port}/learn`)).status).toBe(200);
  }
}

describe.each(testBackends())('monitoring and containment on $name', (backend) => {
  let h: Harness;
  let watcher: MonitoringWatcher;

  beforeAll(async () => {
    h = await startHarness(backend);
  });
  afterEach(async () => {
    await watcher?.stop();
  });
  afterAll(async () => {
    await h?.close();
  });

  async function watch(monitoring: readonly string[], webhooks?: WebhookOutbox): Promise<void> {
    await h.applyPolicy(monitoredPolicy(h.upstream.port, monitoring));
    // Each case starts from nothing learnt: another tenant's history must not leak in.
    await h.auth.db.query('delete from monitor_baselines');
    await h.auth.db.query('delete from monitor_lease');
    watcher = new MonitoringWatcher({ db: h.auth.db, log: silent, tickMs: 50, checkpointMs: 200, webhooks });
    watcher.start();
    await within(2_000, () => watcher.watching);
  }

  it('quarantines an agent whose destinations burst, refusing its live token and tunnel and new tokens, until released', async () => {
    await watch([
      'learning_period: 1s',
      'detections:',
      '  destination_burst: { new_hosts: 5, within: 1m, response: quarantine }',
    ]);
    const port = h.upstream.port;
    const token = await h.workerToken();
    await learn(h, token, 1_000);

    // An open, whole-origin tunnel: quarantine must close it too.
    const tunnel = net.connect(h.gateway.port, '127.0.0.1');
    await new Promise<void>((resolve) => tunnel.once('connect', () => resolve()));
    tunnel.write(
      `CONNECT whole.test:${port} HTTP/1.1\r\nHost: whole.test:${port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
    );
    expect(await new Promise<string>((resolve) => tunnel.once('data', (d) => resolve(d.toString())))).toMatch(
      /^HTTP\/1\.1 200/,
    );
    const closed = new Promise<number>((resolve) => tunnel.once('close', () => resolve(Date.now())));

    const burst = ['n1.test', 'n2.test', 'n3.test', 'n4.test', 'n5.test'];
    for (const host of burst) {
      expect(await get(h, token, `http://${host}:${port}/x`)).toEqual({
        status: 403,
        reason: 'no_matching_rule',
      });
    }

    const alert = await within(
      5_000,
      async () => (await selectAlerts(h.auth.db, { tenant: 'acme', limit: 10 }))[0],
    );
    expect(alert).toMatchObject({
      tenant: 'acme',
      agent: 'worker',
      user: null,
      detection: 'destination_burst',
      response: 'quarantine',
    });
    expect([...alert.evidence.hosts].sort()).toEqual(burst);
    expect(alert.evidence.jtis).toEqual([jtiOf(token)]);
    const quarantined = await within(2_000, async () => {
      const { rows } = await h.auth.db.query<{ occurred_at: Date }>(
        `select occurred_at from revocations where kind = 'agent_quarantined' and tenant = 'acme' and agent = 'worker' order by seq desc limit 1`,
      );
      return rows[0] === undefined ? undefined : Date.now();
    });
    // Within a second of the quarantine's commit: the live token is refused, the tunnel closed.
    // A request in flight when the quarantine lands is cut (the gateway's sweep): ask again.
    await within(1_000, async () => {
      const answer = await get(h, token, `http://api.test:${port}/v1/after`).catch(() => undefined);
      return answer?.status === 403 && answer.reason === 'agent_quarantined';
    });
    expect((await closed) - quarantined).toBeLessThan(1_000);
    expect((await selectAlerts(h.auth.db, { ids: [alert.id], limit: 1 }))[0]?.outcome).toEqual({
      quarantined: true,
    });

    // No new token while quarantined.
    const refused = await requestToken(
      h.auth,
      { grant_type: 'client_credentials' },
      basic('worker', WORKER_SECRET),
    );
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ error: 'unauthorized_client' });
    expect(String(refused.body.error_description)).toContain('quarantined');

    // One incident, one alert: more new hosts while quarantined raise nothing new.
    await get(h, token, `http://n6.test:${port}/x`);
    expect(await setQuarantine(h.auth.db, 'acme', 'worker', false, 'test: released')).toBe('released');
    await within(
      1_000,
      async () => (await get(h, token, `http://api.test:${port}/v1/released`)).status === 200,
    );
    expect(await isQuarantined(h.auth.db, 'acme', 'worker')).toBe(false);
    expect(typeof (await h.workerToken())).toBe('string');
    await watcher.stop();
    expect(await selectAlerts(h.auth.db, { tenant: 'acme', limit: 10 })).toHaveLength(1);
    await h.auth.db.query('delete from alerts');
  });

  it('raises new_destination once per new host after the learning period, and never during it', async () => {
    await watch(['learning_period: 1s', 'detections:', '  new_destination: { response: alert }']);
    const port = h.upstream.port;
    const token = await h.workerToken();
    // During learning a host never seen before is learnt, not reported.
    expect((await get(h, token, `http://early.test:${port}/x`)).status).toBe(403);
    await learn(h, token, 1_000);
    for (const host of ['late1.test', 'late1.test', 'late2.test', 'late1.test']) {
      expect((await get(h, token, `http://${host}:${port}/x`)).status).toBe(403);
    }
    // A marker after them: once it is learnt, everything before it was.
    expect((await get(h, token, `http://api.test:${port}/v1/marker`)).status).toBe(200);
    await within(5_000, async () => {
      const baseline = (await loadBaselines(h.auth.db, { tenant: 'acme', agent: 'worker' }))[0];
      return baseline !== undefined && baseline.snapshot.hosts['late2.test'] !== undefined;
    });
    const alerts = await selectAlerts(h.auth.db, { tenant: 'acme', limit: 10 });
    expect(alerts.map((alert) => [alert.detection, alert.evidence.hosts])).toEqual([
      ['new_destination', ['late2.test']],
      ['new_destination', ['late1.test']],
    ]);
    expect(alerts.every((alert) => alert.response === 'alert' && alert.user === null)).toBe(true);
    await h.auth.db.query('delete from alerts');
  });

  it('revokes the tokens of a denial spike, and every token exchanged from them', async () => {
    await watch([
      'learning_period: 1h',
      'detections:',
      '  denial_spike: { denials: 3, within: 1m, response: revoke }',
    ]);
    const port = h.upstream.port;
    const token = await h.workerToken();
    const jti = jtiOf(token);
    // A token exchanged from it (RFC 8693): the ledger row is how the cascade finds it.
    const child = `child-of-${jti}`;
    const now = Math.floor(Date.now() / 1000);
    await recordIssued(h.auth.db, {
      jti: child,
      tenant: 'acme',
      clientId: 'worker',
      sub: 'alice@acme.test',
      agent: 'worker',
      parentJti: jti,
      kind: 'token_exchange',
      kid: null,
      iat: now,
      exp: now + 300,
    });
    for (let i = 0; i < 3; i++) {
      expect((await get(h, token, `http://api.test:${port}/v2/denied-${i}`)).reason).toBe('path_not_allowed');
    }
    const alert = await within(5_000, async () => {
      const [found] = await selectAlerts(h.auth.db, { tenant: 'acme', limit: 1 });
      return found?.outcome.revoked === undefined ? undefined : found;
    });
    expect(alert).toMatchObject({ detection: 'denial_spike', response: 'revoke' });
    expect([...(alert.outcome.revoked ?? [])].sort()).toEqual([child, jti].sort());
    expect((await readLedgerEntry(h.auth.db, jti))?.revoked_at).not.toBeNull();
    expect((await readLedgerEntry(h.auth.db, child))?.revoked_at).not.toBeNull();
    await within(
      1_000,
      async () =>
        (await get(h, token, `http://api.test:${port}/v1/x`).catch(() => undefined))?.status === 407,
    );
    await h.auth.db.query('delete from alerts');
  });

  it('sends an alert to the webhook, and a receiver that does not answer holds up no request', async () => {
    // A receiver that takes each delivery and answers none of them until told to.
    const held: http.ServerResponse[] = [];
    let answering = false;
    const bodies: string[] = [];
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (chunk: string) => {
        body += chunk;
      });
      req.on('end', () => {
        bodies.push(body);
        if (answering) res.end();
        else held.push(res);
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hookPort = (receiver.address() as AddressInfo).port;
    process.env.ACME_HOOK_SECRET = 'containment-hook-secret';
    const outbox = new WebhookOutbox({
      db: h.auth.db,
      log: silent,
      openings: [opening(`127.0.0.1/32:${hookPort}`)],
      resolve: tableResolver({}),
      timeoutMs: 60_000,
      retryDelayMs: () => 50,
    });
    await watch(
      [
        'learning_period: 1s',
        'detections:',
        '  new_destination: { response: alert }',
        'alerts:',
        `  webhook: { url: "http://127.0.0.1:${hookPort}/reins", secret_env: ACME_HOOK_SECRET }`,
      ],
      outbox,
    );
    const port = h.upstream.port;
    const token = await h.workerToken();
    await learn(h, token, 1_000);
    expect((await get(h, token, `http://drop.test:${port}/x`)).status).toBe(403);
    await within(5_000, () => held.length === 1 || undefined);
    // The delivery hangs: the gateway answers as before, request after request.
    for (let i = 0; i < 20; i++)
      expect((await get(h, token, `http://api.test:${port}/v1/while-${i}`)).status).toBe(200);
    expect(held).toHaveLength(1);
    answering = true;
    for (const res of held.splice(0)) res.end();
    const [alert] = await selectAlerts(h.auth.db, { tenant: 'acme', limit: 1 });
    await within(5_000, async () => {
      const { rows } = await h.auth.db.query(
        `select 1 from alert_deliveries where alert_id = $1 and delivered_at is not null`,
        [alert?.id],
      );
      return rows.length === 1;
    });
    expect(JSON.parse(bodies[0] as string)).toMatchObject({
      id: alert?.id,
      detection: 'new_destination',
      evidence: { hosts: ['drop.test'] },
    });
    await watcher.stop();
    receiver.close();
    await h.auth.db.query('delete from alerts');
  });

  it('refuses a delegated token when an agent earlier in its chain is quarantined', async () => {
    const port = h.upstream.port;
    // worker acting, delegated onwards from an agent's own token: sub and the earlier actor are agents.
    const chained = await h.forgedToken({
      sub: 'origin-agent',
      act: { sub: 'worker', act: { sub: 'middle-agent' } },
    });
    expect((await get(h, chained, `http://api.test:${port}/v1/chain`)).status).toBe(200);
    // A request in flight when the quarantine lands has its connection cut (the gateway's sweep
    // of tokens that lost their standing): that is the quarantine biting too, so a probe that
    // meets it asks again.
    const probe = () => get(h, chained, `http://api.test:${port}/v1/chain`).catch(() => undefined);
    for (const agent of ['middle-agent', 'origin-agent']) {
      await quarantineAgent(h.auth.db, 'acme', agent, 'test: earlier in the chain');
      await within(1_000, async () => (await probe())?.reason === 'agent_quarantined');
      await releaseAgent(h.auth.db, 'acme', agent, 'test');
      await within(1_000, async () => (await probe())?.status === 200);
    }
  });
});
