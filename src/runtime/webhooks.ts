// Sending alerts to the tenants' webhooks (SPEC.md, "Monitoring and containment") from the
// outbox (alert_deliveries, migrations/009_monitoring.sql), retried with backoff until the
// receiver answers 2xx. It runs beside the monitoring watcher, in the process that holds the
// monitoring lease, never on a gateway thread: a receiver that is down or slow delays only
// its own deliveries.
//
// Threat: the webhook URL is written in a policy file, and a policy author is not necessarily
// trusted with the network the server sits in. The URL gets the gateway's address refusals —
// loopback, private, link-local, metadata … are refused unless REINS_GATEWAY_ALLOW_PRIVATE opens
// them — and the request goes to the address that was checked (no second lookup, so no DNS
// rebinding), never following a redirect.
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import tls from 'node:tls';
import { classifyAddress, isOpened, type Opening, parseAddress } from '../egress/index.ts';
import type { Resolver } from '../gateway/check.ts';
import { type AlertRecord, selectAlerts } from '../monitor/alerts-store.ts';
import { retryDelayMs, webhookBody, webhookSignature } from '../monitor/webhook.ts';
import type { WebhookModel } from '../policy/model.ts';
import type { Db } from '../store/db.ts';
import type { Logger } from './logger.ts';

export interface WebhookOptions {
  readonly db: Db;
  readonly log: Logger;
  /** REINS_GATEWAY_ALLOW_PRIVATE: what the webhook may reach although it is not public. */
  readonly openings: readonly Opening[];
  readonly resolve: Resolver;
  /** REINS_GATEWAY_UPSTREAM_CA: more certificates to trust for https receivers. */
  readonly ca?: string | undefined;
  /** Environment the secrets are read from (`secret_env`); default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** How long one delivery may take; default 10 s. */
  readonly timeoutMs?: number;
  /** When to try again after `attempts` failures; default retryDelayMs (1 s doubling to 5 min). */
  readonly retryDelayMs?: (attempts: number) => number;
}

/** Deliveries looked at per pass. */
const BATCH = 50;

interface Due {
  readonly alert_id: number;
  readonly attempts: number;
}

export class WebhookOutbox {
  readonly #options: WebhookOptions;
  readonly #abort = new AbortController();
  #pass: Promise<void> | null = null;

  constructor(options: WebhookOptions) {
    this.#options = options;
  }

  /** Starts a pass over the due deliveries unless one is running; never waits for it. */
  kick(webhookOf: (tenant: string) => WebhookModel | null): void {
    if (this.#pass !== null || this.#abort.signal.aborted) return;
    this.#pass = this.#run(webhookOf)
      .catch((err: unknown) => this.#options.log.warn({ err }, 'could not read the alert outbox; retrying'))
      .finally(() => {
        this.#pass = null;
      });
  }

  /** Abandons deliveries in flight (they stay due) and waits for the pass to end. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#pass;
  }

  async #run(webhookOf: (tenant: string) => WebhookModel | null): Promise<void> {
    const { db } = this.#options;
    const { rows } = await db.query<Due>(
      `select alert_id::float8 as alert_id, attempts from alert_deliveries
        where delivered_at is null and next_attempt_at <= now()
        order by alert_id limit $1`,
      [BATCH],
    );
    if (rows.length === 0) return;
    const alerts = new Map(
      (await selectAlerts(db, { ids: rows.map((row) => row.alert_id), limit: BATCH })).map((a) => [a.id, a]),
    );
    // A tenant whose receiver failed once this pass is not tried again for its other alerts, and
    // they wait with the failed one: another tenant's alerts then fill the next pass, so one
    // receiver that is down never holds up the others'.
    const failing = new Set<string>();
    for (const due of rows) {
      if (this.#abort.signal.aborted) return;
      const alert = alerts.get(due.alert_id);
      if (alert === undefined || failing.has(alert.tenant)) continue;
      const webhook = webhookOf(alert.tenant);
      const problem =
        webhook === null
          ? // Kept, not dropped: a webhook removed mid-rotation may be named again.
            "the tenant's policy names no webhook now"
          : await this.#deliver(alert, webhook);
      if (problem === null) {
        await this.#delivered(due);
        continue;
      }
      failing.add(alert.tenant);
      await this.#retryLater(due, alert.tenant, problem);
    }
  }

  async #delivered(due: Due): Promise<void> {
    await this.#options.db.query(
      `update alert_deliveries set delivered_at = now(), attempts = attempts + 1, last_error = null where alert_id = $1`,
      [due.alert_id],
    );
  }

  /** The failed delivery, and every other due one of its tenant, wait for the next attempt. */
  async #retryLater(due: Due, tenant: string, problem: string): Promise<void> {
    const attempts = due.attempts + 1;
    const delayMs = (this.#options.retryDelayMs ?? retryDelayMs)(attempts);
    await this.#options.db.query(
      `update alert_deliveries
          set attempts = $2, last_error = $3, next_attempt_at = now() + $4 * interval '1 millisecond'
        where alert_id = $1`,
      [due.alert_id, attempts, problem, delayMs],
    );
    await this.#options.db.query(
      `update alert_deliveries set next_attempt_at = now() + $3 * interval '1 millisecond'
        where tenant = $1 and alert_id <> $2 and delivered_at is null and next_attempt_at <= now()`,
      [tenant, due.alert_id, delayMs],
    );
    this.#options.log.warn(
      { alert: { id: due.alert_id }, attempts, error: problem },
      'could not deliver an alert to its webhook; it will be sent again',
    );
  }

  /** Sends one alert; null when the receiver acknowledged it (2xx), else what went wrong. */
  async #deliver(alert: AlertRecord, webhook: WebhookModel): Promise<string | null> {
    // Threat: a policy author naming one of the server's own settings (REINS_ADMIN_TOKEN,
    // DATABASE_URL …) as the secret would receive HMACs keyed with it: an offline guessing oracle.
    if (/^REINS_/.test(webhook.secretEnv) || webhook.secretEnv === 'DATABASE_URL') {
      return `secret_env ${webhook.secretEnv} names one of the server's own settings: give the webhook a variable of its own`;
    }
    const secret = (this.#options.env ?? process.env)[webhook.secretEnv];
    if (secret === undefined || secret === '') {
      return `the webhook's secret is not set: set ${webhook.secretEnv} in the server's environment`;
    }
    const url = new URL(webhook.url);
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const address = await this.#checkedAddress(url.hostname, port);
    if (typeof address !== 'object') return address;
    const body = webhookBody(alert);
    const lookup: LookupFunction = (_host, options, callback) => {
      if ((options as { all?: boolean }).all) callback(null, [address]);
      else callback(null, address.address, address.family);
    };
    const client = url.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      const request = client.request(
        url,
        {
          method: 'POST',
          lookup,
          agent: false,
          // An extra CA adds to the system's roots; given alone it would replace them.
          ca: this.#options.ca === undefined ? undefined : [...tls.rootCertificates, this.#options.ca],
          // The whole delivery, not only a quiet socket: a receiver trickling a byte every few
          // seconds must not hold the outbox.
          signal: AbortSignal.any([
            this.#abort.signal,
            AbortSignal.timeout(this.#options.timeoutMs ?? 10_000),
          ]),
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'user-agent': 'reins-alerts',
            'x-reins-alert-id': String(alert.id),
            'x-reins-signature': webhookSignature(body, secret),
          },
        },
        (response) => {
          // The status is the answer; its body, which may never end, is not waited for.
          const status = response.statusCode ?? 0;
          response.destroy();
          resolve(status >= 200 && status <= 299 ? null : `the receiver answered ${status}`);
        },
      );
      request.on('error', (err) => resolve(`could not reach the receiver: ${err.message}`));
      request.end(body);
    });
  }

  /** The address to dial: every answer for the name must be one the gateway would reach. */
  async #checkedAddress(
    hostname: string,
    port: number,
  ): Promise<{ address: string; family: 4 | 6 } | string> {
    const literal = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    const answers = parseAddress(literal) === null ? await this.#options.resolve(literal) : [literal];
    if (answers.length === 0) return `the webhook's host ${hostname} does not resolve`;
    for (const answer of answers) {
      const verdict = classifyAddress(answer);
      if (!verdict.public && !isOpened(this.#options.openings, answer, port)) {
        return `the webhook's host ${hostname} resolves to ${verdict.address} (${verdict.class}), which the gateway refuses; open it with REINS_GATEWAY_ALLOW_PRIVATE if it is yours`;
      }
    }
    // An IPv4-mapped answer is dialled as its IPv4 (it is that host, and was judged as it).
    const first = classifyAddress(answers[0] as string).address.replace(/^::ffff:(?=\d+\.)/i, '');
    return { address: first, family: first.includes(':') ? 6 : 4 };
  }
}
