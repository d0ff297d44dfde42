// Budgets as counted (SPEC.md, "Monitoring and containment"; docs/monitoring.md, "Budgets"): per
// agent, requests in the current minute and bytes out in the current hour, in fixed windows
// aligned to the epoch. What this process counted and has not yet handed to the database is
// `pending`; what the database said every process had counted at the last sync is `synced`.
// Whether an agent is stopped is decided from both, at once after each event (exact within the
// process) and again after each sync (the other processes' share). Pure: time comes in as `now`.
import type { BudgetMark } from './live-memory.ts';
import type { AgentBudget } from './policy-view.ts';

export type BudgetKind = 'requests' | 'bytes_out';

export const WINDOW_MS: Readonly<Record<BudgetKind, number>> = { requests: 60_000, bytes_out: 3_600_000 };

/** The start (epoch ms) of the window of `kind` that `time` falls in. */
export function windowStart(kind: BudgetKind, time: number): number {
  return Math.floor(time / WINDOW_MS[kind]) * WINDOW_MS[kind];
}

/** One agent's count in one window. */
interface Count {
  readonly tenant: string;
  readonly agent: string;
  readonly kind: BudgetKind;
  readonly window: number;
  synced: number;
  /** Handed to the database by a sync that has not answered yet. */
  inflight: number;
  pending: number;
}

/** A pending amount on its way to the database. */
export interface Delta {
  readonly tenant: string;
  readonly agent: string;
  readonly kind: BudgetKind;
  readonly window: number;
  readonly amount: number;
}

/** What the database holds for an agent's window, every process's counts summed. */
export interface Usage {
  readonly tenant: string;
  readonly agent: string;
  readonly kind: BudgetKind;
  readonly window: number;
  readonly used: number;
}

/** The facts of a finished exchange the counts read (events.ts's ExchangeEvent is one). */
export interface CountedExchange {
  readonly time: Date;
  readonly tenant: string | null;
  readonly agent: string | null;
  readonly decision: 'allowed' | 'denied';
  readonly bytesOut: number;
  /** How long it lasted (ms); it is counted when it ended. */
  readonly durationMs?: number | null;
}

export class BudgetCounts {
  readonly #counts = new Map<string, Count>();

  /**
   * Counts one exchange of an agent with a budget: a request if it went out (a refused one
   * costs the upstream nothing), and its bytes out whatever it was.
   */
  count(event: CountedExchange, budget: AgentBudget): void {
    // Counted when it ended: an exchange that began in a window now over (a long upload, a tunnel
    // open across the hour) must still count against the window its bytes reached.
    const time = event.time.getTime() + Math.max(0, event.durationMs ?? 0);
    if (budget.requestsPerMinute !== null && event.decision === 'allowed') {
      this.#add(budget, 'requests', windowStart('requests', time), 1);
    }
    if (budget.bytesOutPerHour !== null && event.bytesOut > 0) {
      this.#add(budget, 'bytes_out', windowStart('bytes_out', time), event.bytesOut);
    }
  }

  /** Everything counted since the last sync; marked as on its way (taken back by `failed`). */
  take(): Delta[] {
    const deltas: Delta[] = [];
    for (const count of this.#counts.values()) {
      if (count.pending === 0) continue;
      deltas.push({
        tenant: count.tenant,
        agent: count.agent,
        kind: count.kind,
        window: count.window,
        amount: count.pending,
      });
      count.inflight += count.pending;
      count.pending = 0;
    }
    return deltas;
  }

  /** A sync that did not reach the database: its amounts are pending again, for the next. */
  failed(deltas: readonly Delta[]): void {
    for (const delta of deltas) {
      const count = this.#count(delta);
      count.inflight -= delta.amount;
      count.pending += delta.amount;
    }
  }

  /**
   * `deltas` are in the database now (committed): no longer in flight, and counted as synced
   * until the next read of the sums says more. Never handed again, whatever fails after.
   */
  added(deltas: readonly Delta[]): void {
    for (const delta of deltas) {
      const count = this.#count(delta);
      count.inflight -= delta.amount;
      count.synced += delta.amount;
    }
  }

  /** The database's sums: every process's counts, this one's added ones included. */
  synced(usage: readonly Usage[]): void {
    for (const row of usage) {
      const count = this.#count(row);
      // A sum read before this process's last add committed elsewhere cannot be lower than it.
      count.synced = Math.max(count.synced, row.used);
    }
  }

  /** Whether the agent is stopped now, and until when; null when it may go on. */
  stop(budget: AgentBudget, now: number): BudgetMark | null {
    const requests = this.#used(budget, 'requests', now);
    if (budget.requestsPerMinute !== null && requests >= budget.requestsPerMinute) {
      return {
        reason: 'budget_exceeded',
        detail: `agent ${budget.agent} has made its ${budget.requestsPerMinute} requests of this minute (requests_per_minute)`,
        until: windowStart('requests', now) + WINDOW_MS.requests,
      };
    }
    const bytes = this.#used(budget, 'bytes_out', now);
    if (budget.bytesOutPerHour !== null && bytes >= budget.bytesOutPerHour) {
      return {
        reason: 'budget_exceeded',
        detail: `agent ${budget.agent} has sent ${bytes} bytes this hour, its budget is ${budget.bytesOutPerHour} (bytes_out_per_hour)`,
        until: windowStart('bytes_out', now) + WINDOW_MS.bytes_out,
      };
    }
    return null;
  }

  /**
   * Whether the agent has used at least half of a budget in the current window: from there the
   * other processes' counts matter soon, and the meter reconciles without waiting for its tick.
   */
  near(budget: AgentBudget, now: number): boolean {
    return (
      (budget.requestsPerMinute !== null &&
        2 * this.#used(budget, 'requests', now) >= budget.requestsPerMinute) ||
      (budget.bytesOutPerHour !== null && 2 * this.#used(budget, 'bytes_out', now) >= budget.bytesOutPerHour)
    );
  }

  /** Forgets windows that have ended. */
  prune(now: number): void {
    for (const [key, count] of this.#counts) {
      if (count.window + WINDOW_MS[count.kind] <= now && count.pending === 0 && count.inflight === 0)
        this.#counts.delete(key);
    }
  }

  #used(budget: AgentBudget, kind: BudgetKind, now: number): number {
    const count = this.#counts.get(keyOf(budget.tenant, budget.agent, kind, windowStart(kind, now)));
    return count === undefined ? 0 : count.synced + count.inflight + count.pending;
  }

  #add(budget: AgentBudget, kind: BudgetKind, window: number, amount: number): void {
    this.#count({ tenant: budget.tenant, agent: budget.agent, kind, window }).pending += amount;
  }

  #count(of: { tenant: string; agent: string; kind: BudgetKind; window: number }): Count {
    const key = keyOf(of.tenant, of.agent, of.kind, of.window);
    let count = this.#counts.get(key);
    if (count === undefined) {
      count = {
        tenant: of.tenant,
        agent: of.agent,
        kind: of.kind,
        window: of.window,
        synced: 0,
        inflight: 0,
        pending: 0,
      };
      this.#counts.set(key, count);
    }
    return count;
  }
}

function keyOf(tenant: string, agent: string, kind: BudgetKind, window: number): string {
  return `${tenant}\0${agent}\0${kind}\0${window}`;
}
