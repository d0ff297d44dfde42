// Monitoring at run time (SPEC.md, "Monitoring and containment"; docs/monitoring.md): the audit
// trail in, alerts and responses out. The pure core (src/monitor) learns and detects; this loop
// feeds it and carries out what it finds.
//
// It reads the audit trail rather than listening to this process's gateway: every gateway
// process of a deployment writes the same table, so one watcher sees all of an agent's traffic
// (a burst spread over two gateways is one burst) and nothing is added to a request's path — the
// gateway already writes the row. One `reins serve` process holds the watch (src/monitor/lease.ts);
// the others stand by and take over when its lease lapses.
//
// Each tick: read the rows after the cursor, learn each, and for every finding store the alert
// (with its webhook delivery) and carry out its response — revoke the tokens involved
// (cascading), or quarantine the agent. A response that fails (the database away) is retried on
// the next tick, in order, before anything new is read. Every few seconds a checkpoint writes the
// baselines that changed and the cursor, in one transaction, and renews the lease.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { FollowCursor } from '../gateway/audit-follow.ts';
import { type AuditRecord, selectAudit } from '../gateway/audit-read.ts';
import { type AlertOutcome, recordAlert, recordOutcome } from '../monitor/alerts-store.ts';
import { loadBaselines, saveBaselines } from '../monitor/baselines-store.ts';
import { type Finding, Monitor, type MonitoredEvent, type SubjectKey } from '../monitor/index.ts';
import { acquireLease, checkpointLease, holdsLease, releaseLease } from '../monitor/lease.ts';
import type { MonitoringModel, PolicyModel } from '../policy/model.ts';
import { readAppliedPolicy, readLatestVersion } from '../policy/store-read.ts';
import { revokeTree } from '../server/provider/ledger.ts';
import { quarantineAgent } from '../server/provider/quarantine.ts';
import type { Db } from '../store/db.ts';
import type { Logger } from './logger.ts';
import type { WebhookOutbox } from './webhooks.ts';

export interface MonitoringOptions {
  readonly db: Db;
  readonly log: Logger;
  /** Who holds the watch, as the lease names it; default host/pid/random. */
  readonly holder?: string;
  /** How often the audit trail is read; default 200 ms. */
  readonly tickMs?: number;
  /** How long a lease lasts without renewal; default 10 s. */
  readonly leaseMs?: number;
  /** How often baselines and the cursor are written; default 3 s (well within the lease). */
  readonly checkpointMs?: number;
  /** Sends the alerts of tenants with a webhook, while this process holds the watch. */
  readonly webhooks?: WebhookOutbox;
}

/** Rows read per query; a backlog is read in a loop of these without waiting for the next tick. */
const BATCH = 1_000;

/** A finding on its way out: stored (alertId set) and, once done, responded to. */
interface Outgoing {
  readonly finding: Finding;
  alertId: number | null;
  /** How many times its response failed. */
  failures: number;
}

/** A response failing this many times in a row is given up and the alert says so. */
const MAX_RESPONSE_FAILURES = 5;

/** The state of a holder of the watch; dropped whole when the lease is lost. */
interface Watch {
  readonly monitor: Monitor;
  readonly cursor: FollowCursor;
  /** Subjects learnt from since the last checkpoint, by subject id. */
  readonly dirty: Map<string, SubjectKey>;
  readonly outgoing: Outgoing[];
  lastCheckpoint: number;
}

export class MonitoringWatcher {
  readonly #db: Db;
  readonly #log: Logger;
  readonly #holder: string;
  readonly #tickMs: number;
  readonly #leaseMs: number;
  readonly #checkpointMs: number;
  readonly #webhooks: WebhookOutbox | undefined;
  #watch: Watch | null = null;
  #policyVersion: number | null = null;
  #policies = new Map<string, MonitoringModel>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #stopped = false;
  #lastAttempt = 0;

  constructor(options: MonitoringOptions) {
    this.#db = options.db;
    this.#log = options.log;
    this.#holder = options.holder ?? `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
    this.#tickMs = options.tickMs ?? 200;
    this.#leaseMs = options.leaseMs ?? 10_000;
    this.#checkpointMs = options.checkpointMs ?? 3_000;
    this.#webhooks = options.webhooks;
  }

  /** Whether this process holds the watch now. */
  get watching(): boolean {
    return this.#watch !== null;
  }

  start(): void {
    this.#schedule(0);
  }

  /** Stops reading, writes a last checkpoint and lets the lease go, so another takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    await this.#webhooks?.stop();
    const watch = this.#watch;
    if (watch === null) return;
    try {
      await this.#send(watch).catch(() => undefined);
      // A finding not yet acted on must not be checkpointed past: without this checkpoint, the
      // next holder learns its rows again (from the last one) and finds it again.
      if (watch.outgoing.length === 0) await this.#checkpoint(watch);
      await releaseLease(this.#db, this.#holder);
    } catch (err) {
      this.#log.warn(
        { err },
        'monitoring could not write its last checkpoint; the next holder re-learns since the one before',
      );
    }
    this.#watch = null;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#tick().finally(() => this.#schedule(this.#tickMs));
    }, ms);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    try {
      const watch = this.#watch ?? (await this.#acquire());
      if (watch === null) return;
      await this.#refreshPolicies();
      await this.#send(watch);
      const started = Date.now();
      for (let more = true; more && watch.outgoing.length === 0 && !this.#stopped; ) {
        more = await this.#learn(watch);
        // A backlog (after an outage) is read in one tick, but the lease is renewed as it goes:
        // a lease lapsing under a long read would let a second process learn the same rows.
        if (Date.now() - watch.lastCheckpoint >= this.#checkpointMs) await this.#checkpoint(watch);
        if (this.#watch !== watch || Date.now() - started > this.#leaseMs / 2) break;
      }
      if (this.#watch === watch && Date.now() - watch.lastCheckpoint >= this.#checkpointMs) {
        await this.#checkpoint(watch);
      }
      this.#webhooks?.kick((tenant) => this.#policies.get(tenant)?.webhook ?? null);
    } catch (err) {
      // The database away, most likely: what was learnt stays, unsent findings wait in order.
      this.#log.warn({ err }, 'monitoring could not read the audit trail or act on a finding; retrying');
    }
  }

  /** Takes the watch when the lease is free (tried every quarter lease while another holds it). */
  async #acquire(): Promise<Watch | null> {
    const now = Date.now();
    if (this.#lastAttempt !== 0 && now - this.#lastAttempt < this.#leaseMs / 4) return null;
    this.#lastAttempt = now;
    const cursor = await acquireLease(this.#db, this.#holder, this.#leaseMs);
    if (cursor === null) return null;
    const monitor = new Monitor((tenant) => this.#policies.get(tenant));
    for (const stored of await loadBaselines(this.#db)) monitor.restore(stored.key, stored.snapshot);
    this.#watch = {
      monitor,
      cursor: new FollowCursor(cursor.afterId, cursor.pending),
      dirty: new Map(),
      outgoing: [],
      lastCheckpoint: now,
    };
    this.#log.info({ holder: this.#holder, after: cursor.afterId }, 'monitoring the audit trail');
    return this.#watch;
  }

  /** Reloads the tenants' monitoring policies when a new policy version was applied (anywhere). */
  async #refreshPolicies(): Promise<void> {
    const latest = await readLatestVersion(this.#db);
    const version = latest?.version ?? null;
    if (version === this.#policyVersion) return;
    const applied = await readAppliedPolicy(this.#db);
    this.#policies = policiesOf(applied.model);
    this.#policyVersion = applied.version?.version ?? null;
  }

  /** Learns the next batch of rows; true when there may be more. */
  async #learn(watch: Watch): Promise<boolean> {
    const rows = await selectAudit(this.#db, {
      after: watch.cursor.after,
      ids: watch.cursor.missing,
      order: 'oldest',
      limit: BATCH,
    });
    const now = Date.now();
    for (const row of rows) {
      const event = eventOf(row);
      for (const finding of watch.monitor.observe(event))
        watch.outgoing.push({ finding, alertId: null, failures: 0 });
      if (row.tenant !== null && row.agent !== null) {
        const keys: SubjectKey[] = [{ tenant: row.tenant, agent: row.agent, user: null }];
        if (row.subject !== null && row.subject !== row.agent) {
          keys.push({ tenant: row.tenant, agent: row.agent, user: row.subject });
        }
        for (const key of keys) watch.dirty.set(`${key.tenant}\0${key.agent}\0${key.user ?? ''}`, key);
      }
    }
    watch.cursor.saw(
      rows.map((row) => row.id),
      now,
    );
    await this.#send(watch);
    return rows.length === BATCH;
  }

  /** Stores and responds to every waiting finding, in order; stops at the first failure. */
  async #send(watch: Watch): Promise<void> {
    // Fencing: only the holder acts. A process that lost its lease (the database was away longer
    // than the lease) finds so here, before it revokes or quarantines anything twice.
    if (watch.outgoing.length > 0 && !(await holdsLease(this.#db, this.#holder))) {
      this.#log.warn({ holder: this.#holder }, 'monitoring lost its lease to another process; standing by');
      this.#watch = null;
      return;
    }
    while (watch.outgoing.length > 0) {
      const next = watch.outgoing[0] as Outgoing;
      const { finding } = next;
      const policy = this.#policies.get(finding.subject.tenant);
      if (next.alertId === null) next.alertId = await recordAlert(this.#db, finding, policy?.webhook != null);
      let outcome: AlertOutcome;
      try {
        outcome = await this.#respond(finding, next.alertId);
      } catch (err) {
        // A response that keeps failing is given up after a few tries, said in the alert (an
        // operator must act): it must not stop monitoring for every tenant.
        next.failures += 1;
        if (next.failures < MAX_RESPONSE_FAILURES) throw err;
        outcome = {
          error: `the ${finding.response} failed ${next.failures} times: ${err instanceof Error ? err.message : String(err)}`,
        };
      }
      await recordOutcome(this.#db, next.alertId, outcome);
      watch.outgoing.shift();
      this.#log.warn(
        {
          event: {
            kind: 'alert',
            category: ['intrusion_detection'],
            action: finding.response,
            id: String(next.alertId),
          },
          rule: { name: finding.detection },
          organization: { id: finding.subject.tenant },
          user: finding.subject.user === null ? undefined : { id: finding.subject.user },
          agent_id: finding.subject.agent,
          evidence: finding.evidence,
          outcome,
        },
        finding.summary,
      );
    }
  }

  /**
   * What the response does beyond the stored alert. Quarantine does not revoke: the agent's
   * tokens stay valid for when it is released, and every gateway refuses them meanwhile with
   * `agent_quarantined`, which tells the operator why.
   */
  async #respond(finding: Finding, alertId: number): Promise<AlertOutcome> {
    const reason = `monitoring: ${finding.detection} (alert ${alertId})`;
    switch (finding.response) {
      case 'alert':
        return {};
      case 'revoke': {
        const revoked: string[] = [];
        for (const jti of finding.evidence.jtis) revoked.push(...(await revokeTree(this.#db, jti, reason)));
        return { revoked };
      }
      case 'quarantine': {
        const { tenant, agent } = finding.subject;
        return { quarantined: await quarantineAgent(this.#db, tenant, agent, reason) };
      }
    }
  }

  /** Writes the changed baselines and the cursor, and renews the lease; on losing it, lets go. */
  async #checkpoint(watch: Watch): Promise<void> {
    const changed = [...watch.dirty.values()].flatMap((key) => {
      const baseline = watch.monitor.baseline(key);
      return baseline === undefined ? [] : [{ key, snapshot: baseline.snapshot() }];
    });
    const cursor = { afterId: watch.cursor.after, pending: watch.cursor.pending };
    const kept = await this.#db.transaction(async (tx) => {
      if (!(await checkpointLease(tx, this.#holder, this.#leaseMs, cursor))) return false;
      await saveBaselines(tx, changed);
      return true;
    });
    if (!kept) {
      this.#log.warn({ holder: this.#holder }, 'monitoring lost its lease to another process; standing by');
      this.#watch = null;
      return;
    }
    watch.dirty.clear();
    watch.lastCheckpoint = Date.now();
  }
}

function policiesOf(model: PolicyModel): Map<string, MonitoringModel> {
  const policies = new Map<string, MonitoringModel>();
  for (const tenant of model.tenants)
    if (tenant.monitoring !== null) policies.set(tenant.id, tenant.monitoring);
  return policies;
}

function eventOf(row: AuditRecord): MonitoredEvent {
  return {
    time: new Date(row.time),
    tenant: row.tenant,
    agent: row.agent,
    subject: row.subject,
    requestId: row.request_id,
    jti: row.jti,
    method: row.method,
    host: row.host,
    decision: row.decision,
    reason: row.reason,
    matchedRule: row.matched_rule,
    bytesOut: row.bytes_out,
  };
}
