// What changes while tokens live, as one gateway sees it: revoked jtis, quarantined agents and
// the applied policy. A token is checked against this on every request, so revoking it,
// quarantining its agent or applying a policy that narrows its agent takes effect at every
// gateway within one second of the commit, not when the token expires (SPEC.md, "The gateway").
//
// The database is the source of truth; this is a cache of it, kept current three ways:
// - LISTEN reins_revocations / reins_policy: a wake-up hint only. A NOTIFY sent while the
//   listener was disconnected is never replayed;
// - a poll every `pollMs` (250 ms): the hint is lost, the change still arrives in time;
// - a full reload when the listener reconnects (pg-listen.ts calls with an empty payload).
// Every wake-up runs the same refresh: read the revocation feed after the last sequence number
// seen (numbers become visible in commit order, migrations/001_foundation.sql, so "seq > last"
// never skips a row), then compare the latest policy version with the one in force and reload
// it when it differs. Refreshes never overlap; wake-ups during one are coalesced into one more.
//
// Threat: a gateway cut off from its database cannot learn of a revocation. Failing closed is not
// possible here (nothing could be checked at all), so the last known state stays in force, every
// failure goes to `onError`, and `healthy` turns false so that /readyz takes the gateway out of
// rotation until a refresh succeeds again.
import { POLICY_CHANNEL, readAppliedPolicy } from '../policy/index.ts';
import { readLatestVersion } from '../policy/store-read.ts';
import type { Db } from '../store/db.ts';
import {
  type BudgetMark,
  type GatewayChange,
  LiveMemory,
  type LiveSnapshot,
  type LiveUpdate,
} from './live-memory.ts';
import type { GatewayPolicyView } from './policy-view.ts';

export type { BudgetMark, GatewayChange, LiveSnapshot, LiveUpdate } from './live-memory.ts';

/** The revocation feed's NOTIFY channel (migrations/001_foundation.sql). */
export const REVOCATIONS_CHANNEL = 'reins_revocations';

export interface LiveStateOptions {
  /** How often the feed and the policy version are polled; default 250 ms. */
  readonly pollMs?: number;
  /** Told of every failed refresh (the previous state stays in force) and of listeners that threw. */
  readonly onError?: (err: unknown) => void;
  /** The clock for expiry and staleness; default the system clock. */
  readonly now?: () => Date;
  /** `healthy` is false once the last successful refresh is older; default max(2 s, 4 polls). */
  readonly staleAfterMs?: number;
}

/** Feed rows read per query; a backlog is read page by page until drained. */
const FEED_PAGE = 1000;

interface FeedRow {
  readonly seq: string | number;
  readonly kind: 'token' | 'agent_quarantined' | 'agent_released';
  readonly tenant: string;
  readonly jti: string | null;
  readonly agent: string | null;
  readonly expires_at: Date | string | null;
}

export class LiveState {
  readonly #memory: LiveMemory;
  #seq = 0;
  #lastRefreshAt: Date | null = null;
  #failing = false;

  readonly #unlisten: (() => Promise<void>)[] = [];
  #timer: NodeJS.Timeout | undefined;
  #opened = false;
  #closed = false;
  #running: Promise<void> | null = null;
  #wanted = false;
  #resyncWanted = false;

  readonly #pollMs: number;
  readonly #staleAfterMs: number;
  readonly #now: () => Date;
  readonly #onError: (err: unknown) => void;

  private constructor(
    private readonly db: Db,
    options: LiveStateOptions,
  ) {
    this.#pollMs = options.pollMs ?? 250;
    this.#staleAfterMs = options.staleAfterMs ?? Math.max(2_000, 4 * this.#pollMs);
    this.#now = options.now ?? (() => new Date());
    this.#onError = options.onError ?? (() => undefined);
    this.#memory = new LiveMemory((err) => this.#report(err));
  }

  /**
   * Listens first, then loads: a change committed between the load and the LISTEN would
   * otherwise wait for the next poll. Throws when the first load fails: a gateway without a
   * state to check against must not start.
   */
  static async open(db: Db, options: LiveStateOptions = {}): Promise<LiveState> {
    const state = new LiveState(db, options);
    try {
      // An empty payload is the listener's "reconnected: you may have missed something".
      state.#unlisten.push(await db.listen(REVOCATIONS_CHANNEL, (payload) => state.#wake(payload === '')));
      state.#unlisten.push(await db.listen(POLICY_CHANNEL, (payload) => state.#wake(payload === '')));
      await state.#resync();
      await state.#refreshPolicy();
    } catch (err) {
      await state.close();
      throw err;
    }
    state.#lastRefreshAt = state.#now();
    state.#opened = true;
    state.#timer = setInterval(() => state.#wake(false), state.#pollMs);
    state.#timer.unref();
    // Wake-ups that arrived during the load were held back: run them now.
    if (state.#wanted) state.#wake(false);
    return state;
  }

  isRevoked(jti: string): boolean {
    return this.#memory.isRevoked(jti);
  }

  isQuarantined(tenant: string, agent: string): boolean {
    return this.#memory.isQuarantined(tenant, agent);
  }

  budgetStop(tenant: string, agent: string, now: number) {
    return this.#memory.budgetStop(tenant, agent, now);
  }

  /** The budget meter's word on an agent (budget.ts), passed on to the gateway threads. */
  setBudget(tenant: string, agent: string, mark: BudgetMark | null): void {
    this.#memory.setBudget(tenant, agent, mark);
  }

  get policy(): GatewayPolicyView {
    return this.#memory.policy;
  }

  /** The whole state, for a copy that then follows onUpdate (a gateway thread). */
  snapshot(): LiveSnapshot {
    return this.#memory.snapshot();
  }

  /** Every change as an update a copy can apply, in order. Returns the unsubscribe. */
  onUpdate(listener: (update: LiveUpdate) => void): () => void {
    return this.#memory.onUpdate(listener);
  }

  /** Highest revocation feed seq applied. */
  get seq(): number {
    return this.#seq;
  }

  /** When a refresh last succeeded (by the `now` clock); null before the first. */
  get lastRefreshAt(): Date | null {
    return this.#lastRefreshAt;
  }

  /** For /readyz: open, the last refresh succeeded, and not longer ago than `staleAfterMs`. */
  get healthy(): boolean {
    if (this.#closed || this.#failing || this.#lastRefreshAt === null) return false;
    return this.#now().getTime() - this.#lastRefreshAt.getTime() <= this.#staleAfterMs;
  }

  /** Called after each change is in force (e.g. to close the tunnels it ends). Returns the unsubscribe. */
  onChange(listener: (change: GatewayChange) => void): () => void {
    return this.#memory.onChange(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    const unlisten = this.#unlisten.splice(0);
    await Promise.all(unlisten.map((u) => u().catch(() => undefined)));
    await this.#running;
  }

  #wake(resync: boolean): void {
    if (this.#closed) return;
    this.#wanted = true;
    if (resync) this.#resyncWanted = true;
    if (!this.#opened) return;
    this.#running ??= this.#drain().finally(() => {
      this.#running = null;
    });
  }

  /** One refresh after another while wake-ups keep coming; never rejects. */
  async #drain(): Promise<void> {
    while (this.#wanted && !this.#closed) {
      this.#wanted = false;
      const resync = this.#resyncWanted;
      this.#resyncWanted = false;
      let failed = false;
      try {
        await (resync ? this.#resync() : this.#follow());
      } catch (err) {
        failed = true;
        // Retried at the next wake-up: the feed from the last seq applied, or the whole reload.
        if (resync) this.#resyncWanted = true;
        this.#report(err);
      }
      try {
        await this.#refreshPolicy();
      } catch (err) {
        failed = true;
        this.#report(err);
      }
      this.#failing = failed;
      if (!failed) this.#lastRefreshAt = this.#now();
    }
  }

  /** Applies the feed after the last seq seen, page by page until drained. */
  async #follow(): Promise<void> {
    for (;;) {
      const { rows } = await this.db.query<FeedRow>(
        `select seq, kind, tenant, jti, agent, expires_at from revocations
          where seq > $1 order by seq limit ${FEED_PAGE}`,
        [this.#seq],
      );
      const now = this.#now().getTime();
      for (const row of rows) {
        this.#seq = Number(row.seq);
        if (row.kind === 'token' && row.jti !== null) this.#memory.revoke(row.jti, expiryOf(row), now);
        else if (row.agent !== null)
          this.#memory.setQuarantined(row.tenant, row.agent, row.kind === 'agent_quarantined');
      }
      this.#memory.prune(now);
      if (rows.length < FEED_PAGE) return;
    }
  }

  /**
   * Reads the whole state from one snapshot: the feed is a prefix of sequence numbers in any
   * snapshot, so its highest seq is where following resumes. Revoked jtis are merged (revocation
   * is final); quarantine is replaced by the database's word, each difference announced.
   */
  async #resync(): Promise<void> {
    const now = this.#now();
    const snapshot = await this.db.transaction(async (tx) => {
      await tx.query('set transaction isolation level repeatable read, read only');
      const tokens = await tx.query<Pick<FeedRow, 'jti' | 'expires_at'>>(
        `select jti, expires_at from revocations
          where kind = 'token' and (expires_at is null or expires_at > $1)`,
        [now],
      );
      // The latest event per agent decides its state.
      const agents = await tx.query<Pick<FeedRow, 'tenant' | 'agent' | 'kind'>>(
        `select distinct on (tenant, agent) tenant, agent, kind from revocations
          where kind in ('agent_quarantined', 'agent_released')
          order by tenant, agent, seq desc`,
      );
      const last = await tx.query<{ seq: string | number }>(
        'select coalesce(max(seq), 0) as seq from revocations',
      );
      return { tokens: tokens.rows, agents: agents.rows, seq: Number(last.rows[0]?.seq ?? 0) };
    });
    for (const row of snapshot.tokens) {
      if (row.jti !== null && !this.#memory.isRevoked(row.jti))
        this.#memory.revoke(row.jti, expiryOf(row), now.getTime());
    }
    this.#memory.replaceQuarantined(
      snapshot.agents.flatMap((row) =>
        row.agent !== null && row.kind === 'agent_quarantined' ? [[row.tenant, row.agent] as const] : [],
      ),
    );
    // Also when the database's feed is behind ours (restored from a backup): follow it from there.
    this.#seq = snapshot.seq;
    this.#memory.prune(now.getTime());
  }

  /** Reloads the policy when the latest version differs from the one in force (cheap probe first). */
  async #refreshPolicy(): Promise<void> {
    if (this.#memory.policyKey !== undefined) {
      const latest = await readLatestVersion(this.db);
      if (keyOf(latest) === this.#memory.policyKey) return;
    }
    const applied = await readAppliedPolicy(this.db);
    this.#memory.setPolicy({
      model: applied.model,
      version: applied.version?.version ?? null,
      key: keyOf(applied.version),
    });
  }

  /** A throwing onError must not stop the refreshes (nor become an unhandled rejection). */
  #report(err: unknown): void {
    try {
      this.#onError(err);
    } catch {
      // Nothing left to tell.
    }
  }
}

function expiryOf(row: Pick<FeedRow, 'expires_at'>): number {
  return row.expires_at === null ? Number.POSITIVE_INFINITY : new Date(row.expires_at).getTime();
}

function keyOf(version: { version: number; contentHash: string } | null): string {
  return version === null ? 'none' : `${version.version}:${version.contentHash}`;
}
