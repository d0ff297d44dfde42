// Fair shares of the upstream connection pools. The agents in forward.ts keep at most
// `maxSockets` connections per pool (one origin's address, port and TLS name); past that, Node
// queues requests in one FIFO for everyone. Threat: one token — a leaked credential, a
// prompt-injected agent — opens as many exchanges to an origin as the pool holds and keeps them
// busy (a body sent at one byte a second, an answer read as slowly), and every other agent and
// tenant queues behind it. So every forwarded request first takes a slot here: a token holds at
// most `perToken` of a pool's slots, a tenant at most `perTenant`, the pool at most `perPool`
// (its sockets, so Node's own queue stays empty). A request beyond its share waits in its own
// token's queue, never in front of anyone else's; a freed slot goes to the waiting tokens in
// turn, tenant by tenant; and a wait ends after `waitMs` with a refusal the caller answers
// (429 `upstream_busy`), so a flood is turned away rather than parked.
//
// Cost: a free slot is taken synchronously (three map lookups and a small object or two, no
// promise; ~0.1 µs while the token holds a slot, ~0.5 µs for a token's first); only a request
// that must wait allocates a promise, and only pools and tenants with waiters a queue. Time comes in through `now` and a tick
// (`expire()`), so the logic is tested without a clock.

export interface ShareLimits {
  /** Concurrent exchanges one token may have with one pool. */
  readonly perToken: number;
  /** Concurrent exchanges all of one tenant's tokens together may have with one pool. */
  readonly perTenant: number;
  /** Concurrent exchanges with one pool: the agent's maxSockets. */
  readonly perPool: number;
  /** How long a request beyond its share may wait for a slot before it is refused. */
  readonly waitMs: number;
}

/**
 * Shares derived from the pool's size (forward.ts: 256 sockets per pool):
 * - a token gets an eighth (32 of 256). A token is what leaks or goes rogue; an eighth is far
 *   more than one agent's honest parallelism towards one origin (browsers open 6), and leaves
 *   seven eighths to everyone else, the token's own tenant included: it takes eight tokens
 *   flooding at once to fill a pool.
 * - a tenant gets half (128 of 256): one tenant, however many of its agents or tokens misbehave,
 *   always leaves half of an origin's connections to the other tenants of a shared gateway.
 * - a wait of 10 s: long enough to ride out a burst (slots turn over in milliseconds for ordinary
 *   exchanges), short enough that a client is told 429 before its own timeout would fire.
 */
export function defaultShareLimits(socketsPerPool: number): ShareLimits {
  const perToken = Math.max(1, Math.floor(socketsPerPool / 8));
  return {
    perToken,
    perTenant: Math.max(perToken, Math.floor(socketsPerPool / 2)),
    perPool: Math.max(1, socketsPerPool),
    waitMs: 10_000,
  };
}

/**
 * The pool an exchange draws on, spelt as Node's agents pool connections: by address and port,
 * and for TLS by the name verified too (https.Agent keys its pools by servername).
 */
export function poolKey(tls: boolean, address: string, port: number, servername: string | undefined): string {
  return tls ? `https://${address}:${port}/${servername ?? ''}` : `http://${address}:${port}`;
}

/** Who asks for a slot, and of which pool. `token` is the jti: unique, so never shared by tenants. */
export interface Claim {
  readonly pool: string;
  readonly tenant: string;
  readonly token: string;
}

/** Which share a refused request was still waiting for. */
export type ShareCap = 'token' | 'tenant' | 'pool';

/**
 * How a wait ended: a slot (the caller now holds it and must release it), or no slot — `timeout`
 * after `waitMs` (answer 429 `upstream_busy`), `cancelled` when the caller gave up (client gone).
 * A refusal is a value, never a rejected promise: nothing here can be an unhandled rejection.
 */
export type Admission =
  | { readonly ok: true; readonly lease: Lease }
  | { readonly ok: false; readonly reason: 'timeout' | 'cancelled'; readonly cap: ShareCap };

/** One slot held. `release()` gives it back; calling it again does nothing. */
export interface Lease {
  readonly released: boolean;
  release(): void;
}

/** A request waiting for its share. `cancel()` takes it out of the queue (no-op once settled). */
export interface Waiting {
  readonly admission: Promise<Admission>;
  cancel(): void;
}

export interface UpstreamShare {
  readonly limits: ShareLimits;
  /** Requests waiting for a slot, over all pools (a gauge for metrics). */
  readonly waiting: number;
  /**
   * Entries kept: a pool, tenant or token with a slot held or a request waiting, plus one per
   * tenant and per token in a turn order (those with requests waiting). Each token is a new jti,
   * so anything kept for one that holds and waits for nothing would grow for ever.
   */
  readonly tracked: number;
  /**
   * Waiters the expiry order still holds. A waiter granted or cancelled stays in it until expire()
   * next looks; each holds its lease and promise, so after expire() they are at most as many as
   * those still waiting (a granted one is never kept for the rest of its waitMs).
   */
  readonly expiring: number;
  /**
   * A slot at once if the claim is within its share, else undefined (then call `wait`). Within
   * share means no one waits ahead of it: whoever still waits is held by its own token's,
   * tenant's or pool's cap (a release hands a slot to every waiter it can before it returns), so
   * a request taking this path never overtakes a waiting one.
   */
  tryAcquire(claim: Claim): Lease | undefined;
  /**
   * Waits, FIFO within the token, for a slot (granted at once if one is free). Resolves with a
   * lease, or with a refusal once `waitMs` has passed (seen by `expire()`) or on `cancel()`.
   */
  wait(claim: Claim): Waiting;
  /** Refuses the waiters whose time is up. Call on a coarse tick: the wait holds to within it. */
  expire(): void;
}

export interface UpstreamShareOptions {
  /** Milliseconds on a monotonic clock; performance.now by default. */
  readonly now?: () => number;
}

export function createUpstreamShare(limits: ShareLimits, options: UpstreamShareOptions = {}): UpstreamShare {
  return new Shares(limits, options.now ?? (() => performance.now()));
}

class PoolShare {
  held = 0;
  readonly tenants = new Map<string, TenantShare>();
  /** Tenants with a waiting token, in turn order (a Set iterates in insertion order); null until one waits. */
  waiting: Set<TenantShare> | null = null;
  constructor(readonly key: string) {}
}

class TenantShare {
  held = 0;
  readonly tokens = new Map<string, TokenShare>();
  /** Tokens with a waiting request, in turn order; null until one waits. */
  waiting: Set<TokenShare> | null = null;
  constructor(
    readonly pool: PoolShare,
    readonly key: string,
  ) {}
}

class TokenShare {
  held = 0;
  /** FIFO; null until the token first has to wait (most never do). */
  queue: Waiter[] | null = null;
  constructor(
    readonly tenant: TenantShare,
    readonly key: string,
  ) {}
}

class Slot implements Lease {
  #token: TokenShare | null;
  constructor(
    private readonly shares: Shares,
    token: TokenShare,
  ) {
    this.#token = token;
  }
  get released(): boolean {
    return this.#token === null;
  }
  release(): void {
    const token = this.#token;
    if (token === null) return;
    this.#token = null;
    this.shares.release(token);
  }
}

class Waiter implements Waiting {
  readonly admission: Promise<Admission>;
  queued = true;
  #settle!: (admission: Admission) => void;
  constructor(
    private readonly shares: Shares,
    readonly token: TokenShare,
    readonly deadline: number,
  ) {
    this.admission = new Promise<Admission>((resolve) => {
      this.#settle = resolve;
    });
  }
  cancel(): void {
    if (!this.queued) return;
    const cap = capOf(this.shares.limits, this.token);
    this.shares.dequeue(this);
    this.settle({ ok: false, reason: 'cancelled', cap });
  }
  settle(admission: Admission): void {
    this.queued = false;
    this.#settle(admission);
  }
}

function capOf(limits: ShareLimits, token: TokenShare): ShareCap {
  if (token.held >= limits.perToken) return 'token';
  if (token.tenant.held >= limits.perTenant) return 'tenant';
  return 'pool';
}

class Shares implements UpstreamShare {
  readonly #pools = new Map<string, PoolShare>();
  /** Every waiter in the order it began to wait: with one waitMs, also the order of deadlines. */
  #deadlines: Waiter[] = [];
  #waiting = 0;

  constructor(
    readonly limits: ShareLimits,
    private readonly now: () => number,
  ) {}

  get waiting(): number {
    return this.#waiting;
  }

  get expiring(): number {
    return this.#deadlines.length;
  }

  get tracked(): number {
    let kept = this.#pools.size;
    for (const pool of this.#pools.values()) {
      kept += pool.tenants.size + (pool.waiting?.size ?? 0);
      for (const tenant of pool.tenants.values()) kept += tenant.tokens.size + (tenant.waiting?.size ?? 0);
    }
    return kept;
  }

  tryAcquire(claim: Claim): Lease | undefined {
    const { perToken, perTenant, perPool } = this.limits;
    const pool = this.#pools.get(claim.pool);
    const tenant = pool?.tenants.get(claim.tenant);
    const token = tenant?.tokens.get(claim.token);
    if (
      (pool !== undefined && pool.held >= perPool) ||
      (tenant !== undefined && tenant.held >= perTenant) ||
      (token !== undefined && token.held >= perToken)
    ) {
      return undefined;
    }
    return this.#grant(token ?? this.#tokenShare(claim));
  }

  wait(claim: Claim): Waiting {
    const lease = this.tryAcquire(claim);
    const token = this.#tokenShare(claim);
    const waiter = new Waiter(this, token, this.now() + this.limits.waitMs);
    if (lease !== undefined) {
      waiter.settle({ ok: true, lease });
      return waiter;
    }
    if (token.queue === null) token.queue = [];
    token.queue.push(waiter);
    if (token.queue.length === 1) {
      const { tenant } = token;
      tenant.waiting ??= new Set();
      tenant.waiting.add(token);
      if (tenant.waiting.size === 1) {
        const { pool } = tenant;
        pool.waiting ??= new Set();
        pool.waiting.add(tenant);
      }
    }
    this.#deadlines.push(waiter);
    this.#waiting++;
    return waiter;
  }

  expire(): void {
    const now = this.now();
    const list = this.#deadlines;
    let next = 0;
    while (next < list.length) {
      const waiter = list[next] as Waiter;
      if (waiter.deadline > now) break;
      next++;
      if (!waiter.queued) continue;
      const cap = capOf(this.limits, waiter.token);
      this.dequeue(waiter);
      waiter.settle({ ok: false, reason: 'timeout', cap });
    }
    // Most waiters are granted long before their deadline: drop them now rather than at it (at
    // thousands of waits a second, 10 s of settled waiters, each holding its lease and promise,
    // is what the young generation would otherwise have to promote). The tick's cost is the
    // list's length, which this keeps within twice the waiters.
    if (next > 0 || list.length > 2 * this.#waiting) {
      this.#deadlines = this.#waiting === 0 ? [] : list.slice(next).filter((waiter) => waiter.queued);
    }
  }

  /** A slot came back: hand out what it frees, then forget shares nobody holds or waits for. */
  release(token: TokenShare): void {
    const { tenant } = token;
    const { pool } = tenant;
    token.held--;
    tenant.held--;
    pool.held--;
    if (pool.waiting !== null && pool.waiting.size > 0) this.#handOut(pool, pool.waiting);
    this.#prune(token);
  }

  /** Takes a waiter out of its token's queue (cancelled, or out of time). */
  dequeue(waiter: Waiter): void {
    const { token } = waiter;
    const queue = token.queue as Waiter[];
    const at = queue.indexOf(waiter);
    if (at < 0) return;
    queue.splice(at, 1);
    this.#waiting--;
    if (queue.length === 0) {
      const { tenant } = token;
      const waiting = tenant.waiting as Set<TokenShare>;
      waiting.delete(token);
      if (waiting.size === 0) tenant.pool.waiting?.delete(tenant);
    }
    this.#prune(token);
  }

  #tokenShare(claim: Claim): TokenShare {
    let pool = this.#pools.get(claim.pool);
    if (pool === undefined) {
      pool = new PoolShare(claim.pool);
      this.#pools.set(claim.pool, pool);
    }
    let tenant = pool.tenants.get(claim.tenant);
    if (tenant === undefined) {
      tenant = new TenantShare(pool, claim.tenant);
      pool.tenants.set(claim.tenant, tenant);
    }
    let token = tenant.tokens.get(claim.token);
    if (token === undefined) {
      token = new TokenShare(tenant, claim.token);
      tenant.tokens.set(claim.token, token);
    }
    return token;
  }

  #grant(token: TokenShare): Lease {
    token.held++;
    token.tenant.held++;
    token.tenant.pool.held++;
    return new Slot(this, token);
  }

  /**
   * Gives free slots to waiters: tenants in turn, and within a tenant its tokens in turn, each
   * skipped while at its own cap; a served token and tenant go to the back of the turn order.
   * The scan is short: a tenant is skipped only at its cap (at most perPool / perTenant of them),
   * and a tenant's tokens only at theirs (at most perTenant / perToken).
   */
  #handOut(pool: PoolShare, tenants: Set<TenantShare>): void {
    const { perToken, perTenant, perPool } = this.limits;
    while (pool.held < perPool) {
      let chosen: TokenShare | undefined;
      for (const tenant of tenants) {
        if (tenant.held >= perTenant) continue;
        for (const token of tenant.waiting as Set<TokenShare>) {
          if (token.held < perToken) {
            chosen = token;
            break;
          }
        }
        if (chosen !== undefined) break;
      }
      if (chosen === undefined) return;
      const queue = chosen.queue as Waiter[];
      const waiter = queue.shift() as Waiter;
      this.#waiting--;
      const { tenant } = chosen;
      const tokens = tenant.waiting as Set<TokenShare>;
      tokens.delete(chosen);
      if (queue.length > 0) tokens.add(chosen);
      tenants.delete(tenant);
      if (tokens.size > 0) tenants.add(tenant);
      waiter.settle({ ok: true, lease: this.#grant(chosen) });
    }
  }

  #prune(token: TokenShare): void {
    if (token.held > 0 || (token.queue !== null && token.queue.length > 0)) return;
    const { tenant } = token;
    tenant.tokens.delete(token.key);
    if (tenant.held > 0 || tenant.tokens.size > 0) return;
    const { pool } = tenant;
    pool.tenants.delete(tenant.key);
    if (pool.held > 0 || pool.tenants.size > 0) return;
    this.#pools.delete(pool.key);
  }
}
