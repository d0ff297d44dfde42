// The live state held in memory: revoked jtis, quarantined agents and the applied policy's view,
// with the listeners told of each change. Two things feed it: LiveState (live-state.ts), which
// follows the database, and each gateway thread's copy, which follows LiveState through messages
// (src/runtime/gateway-workers.ts). Both hold the same data and answer the same questions, so a
// gateway thread checks a request exactly as a gateway beside the database would.
//
// Every change is also an update (LiveUpdate): what another copy needs to apply it (the policy's
// model, a revoked token's expiry). A copy starts from a snapshot and applies updates in order;
// since each update is idempotent and a revocation is final, a copy that applies one twice is
// still right.
import type { PolicyModel } from '../policy/model.ts';
import type { BudgetStop } from './decide.ts';
import { buildPolicyView, type GatewayPolicyView } from './policy-view.ts';

export type GatewayChange =
  | { readonly kind: 'revoked'; readonly jti: string }
  | { readonly kind: 'quarantined'; readonly tenant: string; readonly agent: string }
  | { readonly kind: 'released'; readonly tenant: string; readonly agent: string }
  | { readonly kind: 'policy'; readonly version: number | null };

/** The applied policy as a copy rebuilds its view from it; `key` says which version and content. */
export interface PolicySource {
  readonly model: PolicyModel;
  readonly version: number | null;
  readonly key: string;
}

export type LiveUpdate =
  /** `until`: when the token expires anyway (epoch ms, Infinity when unknown); 0: already has. */
  | { readonly kind: 'revoked'; readonly jti: string; readonly until: number }
  | { readonly kind: 'quarantined'; readonly tenant: string; readonly agent: string }
  | { readonly kind: 'released'; readonly tenant: string; readonly agent: string }
  | { readonly kind: 'policy'; readonly source: PolicySource }
  /** An agent's budget stops it until `mark.until` (epoch ms); null: it may go on. */
  | {
      readonly kind: 'budget';
      readonly tenant: string;
      readonly agent: string;
      readonly mark: BudgetMark | null;
    };

/** Why and until when an agent's budget stops it (the budget meter's word, budget.ts). */
export interface BudgetMark extends BudgetStop {
  /** Epoch ms: the end of the window that is spent (or of the grace for an unaccounted one). */
  readonly until: number;
}

export interface LiveSnapshot {
  readonly revoked: readonly (readonly [jti: string, until: number])[];
  readonly quarantined: readonly (readonly [tenant: string, agent: string])[];
  readonly policy: PolicySource | null;
  readonly budgets?: readonly (readonly [tenant: string, agent: string, mark: BudgetMark])[];
}

export class LiveMemory {
  /** Revoked jti → when the token expires anyway (epoch ms; Infinity when the row says nothing). */
  readonly #revoked = new Map<string, number>();
  /** The earliest expiry in #revoked: nothing is pruned before it. */
  #nextExpiry = Number.POSITIVE_INFINITY;
  /** tenant → its quarantined agents. */
  #quarantined = new Map<string, Set<string>>();
  /** `tenant\0agent` → the budget stop in force for it. */
  readonly #budgets = new Map<
    string,
    { readonly tenant: string; readonly agent: string; readonly mark: BudgetMark }
  >();
  #policy: GatewayPolicyView = buildPolicyView({ tenants: [] }, null);
  #source: PolicySource | null = null;
  readonly #changeListeners = new Set<(change: GatewayChange) => void>();
  readonly #updateListeners = new Set<(update: LiveUpdate) => void>();

  constructor(private readonly report: (err: unknown) => void = () => undefined) {}

  /** A copy of `snapshot`, announcing nothing (nobody listens yet). */
  static from(snapshot: LiveSnapshot, now: number, report?: (err: unknown) => void): LiveMemory {
    const memory = new LiveMemory(report);
    for (const [jti, until] of snapshot.revoked) memory.#keep(jti, until, now);
    for (const [tenant, agent] of snapshot.quarantined) memory.#add(tenant, agent);
    if (snapshot.policy !== null) memory.setPolicy(snapshot.policy);
    for (const [tenant, agent, mark] of snapshot.budgets ?? []) memory.setBudget(tenant, agent, mark);
    return memory;
  }

  isRevoked(jti: string): boolean {
    return this.#revoked.has(jti);
  }

  isQuarantined(tenant: string, agent: string): boolean {
    return this.#quarantined.get(tenant)?.has(agent) === true;
  }

  get policy(): GatewayPolicyView {
    return this.#policy;
  }

  /** What stops the agent now because of its budget, with Retry-After in seconds; null: nothing. */
  budgetStop(
    tenant: string,
    agent: string,
    now: number,
  ): (BudgetStop & { readonly retryAfter: number }) | null {
    if (this.#budgets.size === 0) return null;
    const stop = this.#budgets.get(`${tenant}\0${agent}`);
    if (stop === undefined || stop.mark.until <= now) return null;
    const { reason, detail, until } = stop.mark;
    return { reason, detail, retryAfter: Math.max(1, Math.ceil((until - now) / 1000)) };
  }

  /** Puts the budget meter's word on the agent in force (null lifts it); announced to copies. */
  setBudget(tenant: string, agent: string, mark: BudgetMark | null): void {
    const key = `${tenant}\0${agent}`;
    const before = this.#budgets.get(key)?.mark;
    if (mark === null) {
      if (before === undefined) return;
      this.#budgets.delete(key);
    } else {
      if (before?.until === mark.until && before.reason === mark.reason) return;
      this.#budgets.set(key, { tenant, agent, mark });
    }
    for (const listener of this.#updateListeners)
      this.#call(listener, { kind: 'budget', tenant, agent, mark });
  }

  /** The key of the policy in force (version and content hash); undefined before the first. */
  get policyKey(): string | undefined {
    return this.#source?.key;
  }

  onChange(listener: (change: GatewayChange) => void): () => void {
    this.#changeListeners.add(listener);
    return () => {
      this.#changeListeners.delete(listener);
    };
  }

  /** Hears every change as an update another copy can apply. Returns the unsubscribe. */
  onUpdate(listener: (update: LiveUpdate) => void): () => void {
    this.#updateListeners.add(listener);
    return () => {
      this.#updateListeners.delete(listener);
    };
  }

  snapshot(): LiveSnapshot {
    const quarantined: [string, string][] = [];
    for (const [tenant, agents] of this.#quarantined)
      for (const agent of agents) quarantined.push([tenant, agent]);
    const budgets = [...this.#budgets.values()].map(
      ({ tenant, agent, mark }) => [tenant, agent, mark] as const,
    );
    return { revoked: [...this.#revoked], quarantined, policy: this.#source, budgets };
  }

  apply(update: LiveUpdate, now: number): void {
    if (update.kind === 'revoked') this.revoke(update.jti, update.until, now);
    else if (update.kind === 'policy') this.setPolicy(update.source);
    else if (update.kind === 'budget') this.setBudget(update.tenant, update.agent, update.mark);
    else this.setQuarantined(update.tenant, update.agent, update.kind === 'quarantined');
  }

  revoke(jti: string, until: number, now: number): void {
    // Announced even when already expired (a tunnel it opened may still be up), but not kept:
    // an expired token fails verification anyway.
    this.#keep(jti, until, now);
    this.#emit({ kind: 'revoked', jti, until: this.#revoked.get(jti) ?? 0 }, { kind: 'revoked', jti });
  }

  setQuarantined(tenant: string, agent: string, quarantined: boolean): void {
    if (quarantined) this.#add(tenant, agent);
    else {
      const agents = this.#quarantined.get(tenant);
      agents?.delete(agent);
      if (agents?.size === 0) this.#quarantined.delete(tenant);
    }
    const change = { kind: quarantined ? 'quarantined' : 'released', tenant, agent } as const;
    this.#emit(change, change);
  }

  /** The database's word on who is quarantined: replaces the set, each difference announced. */
  replaceQuarantined(pairs: Iterable<readonly [tenant: string, agent: string]>): void {
    const before = this.#quarantined;
    this.#quarantined = new Map();
    for (const [tenant, agent] of pairs) this.#add(tenant, agent);
    for (const [tenant, agents] of before) {
      for (const agent of agents) {
        if (!this.isQuarantined(tenant, agent)) {
          const change = { kind: 'released', tenant, agent } as const;
          this.#emit(change, change);
        }
      }
    }
    for (const [tenant, agents] of this.#quarantined) {
      for (const agent of agents) {
        if (before.get(tenant)?.has(agent) !== true) {
          const change = { kind: 'quarantined', tenant, agent } as const;
          this.#emit(change, change);
        }
      }
    }
  }

  /**
   * Puts `source` in force unless it is the one in force already. The view is built before
   * anything is replaced: a model that does not compile throws and leaves the old view in force.
   * The first policy is not announced (nothing was in force that it could narrow).
   */
  setPolicy(source: PolicySource): void {
    if (source.key === this.#source?.key) return;
    const view = buildPolicyView(source.model, source.version);
    const first = this.#source === null;
    this.#policy = view;
    this.#source = source;
    if (!first) this.#emit({ kind: 'policy', source }, { kind: 'policy', version: view.version });
  }

  /** Forgets revoked jtis past their expiry: memory stays bounded by the tokens still alive. */
  prune(now: number): void {
    for (const [key, { mark }] of this.#budgets) if (mark.until <= now) this.#budgets.delete(key);
    if (now < this.#nextExpiry) return;
    let next = Number.POSITIVE_INFINITY;
    for (const [jti, expiresAt] of this.#revoked) {
      if (expiresAt <= now) this.#revoked.delete(jti);
      else next = Math.min(next, expiresAt);
    }
    this.#nextExpiry = next;
  }

  #keep(jti: string, until: number, now: number): void {
    if (until <= now) return;
    this.#revoked.set(jti, until);
    this.#nextExpiry = Math.min(this.#nextExpiry, until);
  }

  #add(tenant: string, agent: string): void {
    let agents = this.#quarantined.get(tenant);
    if (!agents) {
      agents = new Set();
      this.#quarantined.set(tenant, agents);
    }
    agents.add(agent);
  }

  #emit(update: LiveUpdate, change: GatewayChange): void {
    for (const listener of this.#updateListeners) this.#call(listener, update);
    for (const listener of this.#changeListeners) this.#call(listener, change);
  }

  #call<T>(listener: (value: T) => void, value: T): void {
    try {
      listener(value);
    } catch (err) {
      try {
        this.report(err);
      } catch {
        // Nothing left to tell.
      }
    }
  }
}
