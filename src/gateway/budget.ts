// The budget meter (SPEC.md, "Monitoring and containment"; docs/monitoring.md, "Budgets"): counts
// every exchange of an agent with a budget as it is published on the process's event stream,
// reconciles the counts with every other gateway process through the database a few times a
// second, and puts a stop on an agent whose budget is spent — in the live state, which every
// gateway thread follows — until its window ends. No request waits for the database.
//
// Threat: budgets limit what a manipulated agent can carry out at volume through destinations it
// may reach. So they fail closed: a gateway that has not reached the database for longer than
// `unaccountedAfterMs` cannot know what the other processes counted, and stops every agent with
// a budget (`budget_unaccounted`) until it can again.
//
// Tolerance: within one process an agent is stopped by the event that spends its budget (its
// requests in flight at that moment still finish). Across processes, each may let through what
// it admits in one sync interval before it hears of the others' counts: an agent at R requests
// a second spread over P processes can overshoot by about R × syncMs (250 ms) in total.
import type { Db } from '../store/db.ts';
import { BudgetCounts, type Delta, type Usage, WINDOW_MS, windowStart } from './budget-counts.ts';
import type { ExchangeEvent, ExchangeStream } from './events.ts';
import type { BudgetMark, LiveState } from './live-state.ts';

export interface BudgetMeterOptions {
  /** How often counts are reconciled through the database; default 250 ms. */
  readonly syncMs?: number;
  /** Without a successful sync for this long, agents with a budget are stopped; default 1 s. */
  readonly unaccountedAfterMs?: number;
  readonly onError?: (err: unknown) => void;
  readonly now?: () => number;
}

/** Near a limit, syncs come at most this often. */
const NEAR_SYNC_MS = 20;

/** Rows of ended windows are deleted this often. */
const PRUNE_MS = 60_000;

export class BudgetMeter {
  readonly #db: Db;
  readonly #live: LiveState;
  readonly #counts = new BudgetCounts();
  readonly #syncMs: number;
  readonly #unaccountedAfterMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #now: () => number;
  /** Agents this meter has put a stop on (so a budget removed by a policy apply lifts it). */
  readonly #stopped = new Set<string>();
  #lastSync: number;
  #lastPrune = 0;
  /** When the last sync started, and whether one is running (syncs never overlap). */
  #lastStart = 0;
  #syncing = false;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();

  constructor(db: Db, live: LiveState, options: BudgetMeterOptions = {}) {
    this.#db = db;
    this.#live = live;
    this.#syncMs = options.syncMs ?? 250;
    this.#unaccountedAfterMs = options.unaccountedAfterMs ?? 1_000;
    this.#onError = options.onError ?? (() => undefined);
    this.#now = options.now ?? Date.now;
    this.#lastSync = this.#now();
  }

  start(): void {
    this.#timer = setInterval(() => {
      // The stops are judged on every tick, whether or not the last sync has come back: a
      // database that hangs (no error, no answer) must still end in budget_unaccounted.
      this.#refresh(this.#now());
      if (!this.#syncing) this.#running = this.#running.then(() => this.sync());
    }, this.#syncMs);
    this.#timer.unref();
  }

  /** Stops syncing after handing the last counts to the database. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
    await this.sync();
  }

  /** Counts one finished exchange; stops its agent at once when that spent its budget. */
  observe(event: ExchangeEvent): void {
    if (event.tenant === null || event.agent === null) return;
    const budgets = this.#live.policy.budgets;
    if (budgets.size === 0) return;
    const budget = budgets.get(`${event.tenant}\0${event.agent}`);
    if (budget === undefined) return;
    this.#counts.count(event, budget);
    const now = this.#now();
    const mark = this.#counts.stop(budget, now);
    if (mark !== null) this.#mark(event.tenant, event.agent, mark);
    else if (this.#counts.near(budget, now)) this.#syncSoon(now);
  }

  /**
   * Near a limit, reconcile now rather than at the next tick (at most every NEAR_SYNC_MS): what
   * the other processes counted in the meantime is what an overshoot is made of.
   */
  #syncSoon(now: number): void {
    if (this.#syncing || now - this.#lastStart < NEAR_SYNC_MS) return;
    this.#running = this.#running.then(() => this.sync());
  }

  /** Hands the counts to the database, reads every process's sums back, and updates the stops. */
  async sync(): Promise<void> {
    const now = this.#now();
    this.#lastStart = now;
    this.#syncing = true;
    const deltas = this.#counts.take();
    try {
      if (deltas.length > 0) {
        try {
          await this.#deadline(this.#add(deltas));
        } catch (err) {
          this.#counts.failed(deltas);
          throw err;
        }
        this.#counts.added(deltas);
      }
      this.#counts.synced(await this.#deadline(this.#usage(now)));
      this.#lastSync = now;
    } catch (err) {
      this.#onError(err);
    }
    if (now - this.#lastPrune >= PRUNE_MS) await this.#prune(now).catch(this.#onError);
    this.#syncing = false;
    this.#counts.prune(now);
    this.#refresh(now);
  }

  #refresh(now: number): void {
    const budgets = this.#live.policy.budgets;
    const unaccounted = now - this.#lastSync > this.#unaccountedAfterMs;
    for (const [key, budget] of budgets) {
      const mark: BudgetMark | null = unaccounted
        ? {
            reason: 'budget_unaccounted',
            detail: `this gateway has not reached the database for ${Math.round((now - this.#lastSync) / 1000)} s and cannot account for agent ${budget.agent}'s budget`,
            until: now + this.#unaccountedAfterMs,
          }
        : this.#counts.stop(budget, now);
      if (mark !== null) this.#mark(budget.tenant, budget.agent, mark);
      else if (this.#stopped.delete(key)) this.#live.setBudget(budget.tenant, budget.agent, null);
    }
    // A budget a policy apply removed: its stop goes with it.
    for (const key of this.#stopped) {
      if (budgets.has(key)) continue;
      this.#stopped.delete(key);
      const [tenant = '', agent = ''] = key.split('\0');
      this.#live.setBudget(tenant, agent, null);
    }
  }

  /**
   * A query that has not answered within the grace is given up (a hung connection answers
   * nothing, ever): the sync fails, and its counts are handed again with the next one. Should
   * the given-up INSERT commit after all, they count twice — an overcount, the side budgets err on.
   */
  #deadline<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the database did not answer within ${this.#unaccountedAfterMs} ms`)),
        this.#unaccountedAfterMs,
      );
    });
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  }

  #mark(tenant: string, agent: string, mark: BudgetMark): void {
    this.#stopped.add(`${tenant}\0${agent}`);
    this.#live.setBudget(tenant, agent, mark);
  }

  async #add(deltas: readonly Delta[]): Promise<void> {
    await this.#db.query(
      `insert into budget_usage (tenant, agent, kind, window_start, used)
       select tenant, agent, kind, to_timestamp(window_ms / 1000.0), amount
         from unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[])
           as d (tenant, agent, kind, window_ms, amount)
       on conflict (tenant, agent, kind, window_start) do update set used = budget_usage.used + excluded.used`,
      [
        deltas.map((d) => d.tenant),
        deltas.map((d) => d.agent),
        deltas.map((d) => d.kind),
        deltas.map((d) => d.window),
        deltas.map((d) => d.amount),
      ],
    );
  }

  /** Every process's sums for the windows running now (this minute, this hour). */
  async #usage(now: number): Promise<Usage[]> {
    const { rows } = await this.#db.query<{
      tenant: string;
      agent: string;
      kind: 'requests' | 'bytes_out';
      window_ms: number;
      used: number;
    }>(
      `select tenant, agent, kind, extract(epoch from window_start)::float8 * 1000 as window_ms, used::float8 as used
         from budget_usage
        where (kind = 'requests' and window_start = to_timestamp($1 / 1000.0))
           or (kind = 'bytes_out' and window_start = to_timestamp($2 / 1000.0))`,
      [windowStart('requests', now), windowStart('bytes_out', now)],
    );
    return rows.map((row) => ({
      tenant: row.tenant,
      agent: row.agent,
      kind: row.kind,
      window: Math.round(Number(row.window_ms)),
      used: Number(row.used),
    }));
  }

  async #prune(now: number): Promise<void> {
    this.#lastPrune = now;
    await this.#db.query(`delete from budget_usage where window_start < to_timestamp($1 / 1000.0)`, [
      now - 2 * WINDOW_MS.bytes_out,
    ]);
  }
}

/** Counts every exchange published on `stream`. Returns the unsubscribe. */
export function observeBudgets(stream: ExchangeStream, meter: BudgetMeter): () => void {
  return stream.subscribe((event) => meter.observe(event));
}
