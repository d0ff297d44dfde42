// The upstream shares (src/gateway/upstream-share.ts): a token, a tenant and a pool each hold at
// most their cap of a pool's slots; what is beyond waits in its own token's queue, is served in
// turn, and is refused when its wait is up. Time is an injected clock, moved by hand.
import http from 'node:http';
import https from 'node:https';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Admission,
  type Claim,
  createUpstreamShare,
  defaultShareLimits,
  type Lease,
  poolKey,
  type ShareLimits,
  type UpstreamShare,
  type Waiting,
} from '../../src/gateway/upstream-share.ts';

const LIMITS: ShareLimits = { perToken: 2, perTenant: 3, perPool: 4, waitMs: 1_000 };

function setup(limits: ShareLimits = LIMITS) {
  let time = 0;
  const share = createUpstreamShare(limits, { now: () => time });
  return {
    share,
    advance(ms: number) {
      time += ms;
      share.expire();
    },
  };
}

function claim(token: string, tenant = 'acme', pool = 'http://127.0.0.1:80'): Claim {
  return { pool, tenant, token };
}

/** Slots taken at once; fails if one was not free. */
function take(share: UpstreamShare, c: Claim, n: number): Lease[] {
  return Array.from({ length: n }, () => {
    const lease = share.tryAcquire(c);
    if (lease === undefined) throw new Error(`no free slot for ${c.token}`);
    return lease;
  });
}

/** What a waiter has been told so far (undefined: still waiting), read once microtasks ran. */
function observe(waiting: Waiting): () => Admission | undefined {
  let seen: Admission | undefined;
  void waiting.admission.then((admission) => {
    seen = admission;
  });
  return () => seen;
}

async function settle(): Promise<void> {
  await Promise.resolve();
  await Promise.resolve();
}

describe('taking a slot within the share', () => {
  it('is synchronous while the token, its tenant and the pool are under their caps', () => {
    const { share } = setup();
    const lease = share.tryAcquire(claim('a'));
    expect(lease?.released).toBe(false);
    expect(share.waiting).toBe(0);
  });

  it('stops at the token’s cap while another token of the same tenant still gets a slot', () => {
    const { share } = setup();
    take(share, claim('a'), 2);
    expect(share.tryAcquire(claim('a'))).toBeUndefined();
    expect(share.tryAcquire(claim('b'))).toBeDefined();
  });

  it('stops at the tenant’s cap for all its tokens while another tenant still gets a slot', () => {
    const { share } = setup();
    take(share, claim('a'), 2);
    take(share, claim('b'), 1);
    expect(share.tryAcquire(claim('c'))).toBeUndefined();
    expect(share.tryAcquire(claim('x', 'globex'))).toBeDefined();
  });

  it('stops at the pool’s cap for everyone, and counts each pool apart', () => {
    const { share } = setup();
    take(share, claim('a'), 2);
    take(share, claim('b'), 1);
    take(share, claim('x', 'globex'), 1);
    expect(share.tryAcquire(claim('y', 'initech'))).toBeUndefined();
    expect(share.tryAcquire(claim('y', 'initech', 'https://127.0.0.1:443/api.test'))).toBeDefined();
  });

  it('gives a slot back once however often it is released', () => {
    const { share } = setup();
    const [first] = take(share, claim('a'), 2);
    first?.release();
    first?.release();
    expect(first?.released).toBe(true);
    expect(share.tryAcquire(claim('a'))).toBeDefined();
    expect(share.tryAcquire(claim('a'))).toBeUndefined();
  });
});

describe('waiting for a slot', () => {
  it('grants at once when a slot is free', async () => {
    const { share } = setup();
    const got = await share.wait(claim('a')).admission;
    expect(got.ok).toBe(true);
    expect(share.waiting).toBe(0);
  });

  it('hands a released slot to the token’s waiters in the order they came', async () => {
    const { share } = setup();
    const [first, second] = take(share, claim('a'), 2);
    const early = observe(share.wait(claim('a')));
    const late = observe(share.wait(claim('a')));
    expect(share.waiting).toBe(2);
    first?.release();
    await settle();
    expect(early()?.ok).toBe(true);
    expect(late()).toBeUndefined();
    second?.release();
    await settle();
    expect(late()?.ok).toBe(true);
    expect(share.waiting).toBe(0);
  });

  it('keeps a token’s excess out of the way of other tokens, which never wait behind it', () => {
    const { share } = setup();
    take(share, claim('flood'), 2);
    for (let i = 0; i < 50; i++) share.wait(claim('flood'));
    expect(share.tryAcquire(claim('other'))).toBeDefined();
    expect(share.tryAcquire(claim('elsewhere', 'globex'))).toBeDefined();
  });

  it('serves the tenant’s waiting tokens in turn when the tenant’s cap held them', async () => {
    const { share } = setup();
    const held = take(share, claim('a'), 2).concat(take(share, claim('b'), 1));
    const fromA = observe(share.wait(claim('a')));
    const fromC = observe(share.wait(claim('c')));
    // b's slot frees the tenant's cap only; a is still at its own cap, so c is next.
    held[2]?.release();
    await settle();
    expect(fromC()?.ok).toBe(true);
    expect(fromA()).toBeUndefined();
  });

  it('does not hand a slot another tenant freed to a waiter its own tenant’s cap holds', async () => {
    const { share } = setup();
    take(share, claim('a'), 2);
    take(share, claim('b'), 1);
    const [globex] = take(share, claim('x', 'globex'), 1);
    const capped = observe(share.wait(claim('c')));
    globex?.release();
    await settle();
    expect(capped()).toBeUndefined();
    expect(share.tryAcquire(claim('y', 'initech'))).toBeDefined();
  });

  it('serves the waiting tenants in turn when the pool is full', async () => {
    const { share } = setup({ perToken: 4, perTenant: 4, perPool: 4, waitMs: 1_000 });
    const held = take(share, claim('a'), 4);
    const acme = [observe(share.wait(claim('a'))), observe(share.wait(claim('a')))];
    const globex = observe(share.wait(claim('x', 'globex')));
    held[0]?.release();
    await settle();
    expect(acme[0]?.()?.ok).toBe(true);
    expect(globex()).toBeUndefined();
    held[1]?.release();
    await settle();
    // acme was served last, so globex goes before acme's second waiter although it came later.
    expect(globex()?.ok).toBe(true);
    expect(acme[1]?.()).toBeUndefined();
  });

  it('never lets a new request overtake a waiter: a free slot goes to the queue first', async () => {
    const { share } = setup();
    const [first] = take(share, claim('a'), 2);
    const waiter = observe(share.wait(claim('a')));
    first?.release();
    expect(share.tryAcquire(claim('a'))).toBeUndefined();
    await settle();
    expect(waiter()?.ok).toBe(true);
  });

  it('refuses a waiter whose wait is up, naming the cap that held it', async () => {
    const { share, advance } = setup();
    take(share, claim('a'), 2);
    const tokenCapped = observe(share.wait(claim('a')));
    advance(400);
    take(share, claim('b'), 1);
    const tenantCapped = observe(share.wait(claim('c')));
    advance(599);
    await settle();
    expect(tokenCapped()).toBeUndefined();
    advance(1);
    await settle();
    expect(tokenCapped()).toEqual({ ok: false, reason: 'timeout', cap: 'token' });
    expect(tenantCapped()).toBeUndefined();
    advance(400);
    await settle();
    expect(tenantCapped()).toEqual({ ok: false, reason: 'timeout', cap: 'tenant' });
    expect(share.waiting).toBe(0);
  });

  it('takes a cancelled waiter out of the queue, so a freed slot goes to the next', async () => {
    const { share } = setup();
    const [first] = take(share, claim('a'), 2);
    const gone = share.wait(claim('a'));
    const left = observe(gone);
    const next = observe(share.wait(claim('a')));
    gone.cancel();
    await settle();
    expect(left()).toEqual({ ok: false, reason: 'cancelled', cap: 'token' });
    expect(share.waiting).toBe(1);
    first?.release();
    await settle();
    expect(next()?.ok).toBe(true);
  });

  it('does nothing when a waiter that was granted is cancelled: the lease stays held', async () => {
    const { share } = setup({ ...LIMITS, perToken: 1 });
    const [first] = take(share, claim('a'), 1);
    const waiting = share.wait(claim('a'));
    first?.release();
    const got = await waiting.admission;
    waiting.cancel();
    expect(got.ok && !got.lease.released).toBe(true);
    expect(share.tryAcquire(claim('a'))).toBeUndefined();
  });
});

describe('the default shares', () => {
  it('give a token an eighth and a tenant half of a pool of 256 sockets', () => {
    expect(defaultShareLimits(256)).toEqual({ perToken: 32, perTenant: 128, perPool: 256, waitMs: 10_000 });
  });

  it('never fall below one slot for a tiny pool', () => {
    expect(defaultShareLimits(1)).toMatchObject({ perToken: 1, perTenant: 1, perPool: 1 });
  });
});

describe('pool keys', () => {
  it('are equal exactly when Node’s agents would pool the connections together', () => {
    const cases = [
      { tls: false, host: '127.0.0.1', port: 80, servername: undefined },
      { tls: false, host: '127.0.0.1', port: 8080, servername: undefined },
      { tls: false, host: '10.0.0.1', port: 80, servername: undefined },
      { tls: true, host: '127.0.0.1', port: 443, servername: 'a.test' },
      { tls: true, host: '127.0.0.1', port: 443, servername: 'b.test' },
      { tls: true, host: '127.0.0.1', port: 80, servername: 'a.test' },
      { tls: true, host: '::1', port: 443, servername: 'a.test' },
    ];
    const agents = { http: new http.Agent(), https: new https.Agent() };
    const name = (c: (typeof cases)[number]) => {
      const options = { host: c.host, port: c.port, servername: c.servername };
      return `${c.tls}|${(c.tls ? agents.https : agents.http).getName(options)}`;
    };
    for (const a of cases) {
      for (const b of cases) {
        const sameKey =
          poolKey(a.tls, a.host, a.port, a.servername) === poolKey(b.tls, b.host, b.port, b.servername);
        expect(sameKey).toBe(name(a) === name(b));
      }
    }
  });
});

describe('the shares under any sequence of requests, releases, cancellations and time', () => {
  const TOKENS = [
    { token: 'a1', tenant: 'acme' },
    { token: 'a2', tenant: 'acme' },
    { token: 'g1', tenant: 'globex' },
    { token: 'i1', tenant: 'initech' },
  ];
  const POOLS = ['http://127.0.0.1:80', 'https://127.0.0.1:443/api.test'];
  // Weighted towards requests, so that the caps are reached and queues form.
  const op = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant('request' as const),
        who: fc.nat(TOKENS.length - 1),
        pool: fc.nat(POOLS.length - 1),
      }),
    },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('release' as const), index: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), index: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 600 }) }),
    },
  );

  interface Held {
    readonly claim: Claim;
    readonly lease: Lease;
  }
  interface Queued {
    readonly claim: Claim;
    readonly since: number;
    readonly order: number;
    readonly waiting: Waiting;
    readonly seen: () => Admission | undefined;
  }

  it('never exceed a cap, leave no waiter a free slot, serve each token in order, time out on time and keep nothing idle', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 10, maxLength: 100, size: 'large' }), async (ops) => {
        let time = 0;
        const share = createUpstreamShare(LIMITS, { now: () => time });
        let held: Held[] = [];
        let queued: Queued[] = [];
        const ever: Lease[] = [];
        let order = 0;
        // Slots held per token, tenant and pool (each within its pool), from the leases handed out.
        let counts = new Map<string, number>();
        const tally = () => {
          counts = new Map();
          for (const { claim: c } of held) {
            for (const key of [
              `token ${c.pool} ${c.token}`,
              `tenant ${c.pool} ${c.tenant}`,
              `pool ${c.pool}`,
            ]) {
              counts.set(key, (counts.get(key) ?? 0) + 1);
            }
          }
        };
        const count = (key: string) => counts.get(key) ?? 0;
        const atCap = (c: Claim) =>
          count(`token ${c.pool} ${c.token}`) >= LIMITS.perToken ||
          count(`tenant ${c.pool} ${c.tenant}`) >= LIMITS.perTenant ||
          count(`pool ${c.pool}`) >= LIMITS.perPool;
        for (const step of ops) {
          if (step.kind === 'request') {
            const who = TOKENS[step.who] as (typeof TOKENS)[number];
            const c = claim(who.token, who.tenant, POOLS[step.pool]);
            const lease = share.tryAcquire(c);
            if (lease !== undefined) {
              held.push({ claim: c, lease });
              ever.push(lease);
            } else {
              const waiting = share.wait(c);
              queued.push({ claim: c, since: time, order: order++, waiting, seen: observe(waiting) });
            }
          } else if (step.kind === 'release' && ever.length > 0) {
            // Any lease handed out so far: a second release of one must change nothing.
            ever[step.index % ever.length]?.release();
          } else if (step.kind === 'cancel' && queued.length > 0) {
            queued[step.index % queued.length]?.waiting.cancel();
          } else if (step.kind === 'advance') {
            time += step.ms;
            share.expire();
          }
          await settle();
          const still: Queued[] = [];
          for (const q of queued) {
            const seen = q.seen();
            if (seen === undefined) {
              still.push(q);
              continue;
            }
            if (seen.ok) {
              // FIFO within a token's queue in a pool.
              const earlier = queued.some(
                (o) =>
                  o.order < q.order &&
                  o.seen() === undefined &&
                  o.claim.token === q.claim.token &&
                  o.claim.pool === q.claim.pool,
              );
              expect(earlier).toBe(false);
              held.push({ claim: q.claim, lease: seen.lease });
              ever.push(seen.lease);
            } else if (seen.reason === 'timeout') {
              expect(time - q.since).toBeGreaterThanOrEqual(LIMITS.waitMs);
            }
          }
          queued = still;
          held = held.filter((h) => !h.lease.released);
          tally();
          for (const [key, n] of counts) {
            const cap = key.startsWith('token')
              ? LIMITS.perToken
              : key.startsWith('tenant')
                ? LIMITS.perTenant
                : LIMITS.perPool;
            expect(n, key).toBeLessThanOrEqual(cap);
          }
          // Work-conserving: a request still waiting is held by a cap, never by a free slot.
          for (const q of queued) expect(atCap(q.claim)).toBe(true);
          // And a wait is never longer than waitMs (time moves only with expire() here).
          for (const q of queued) expect(time - q.since).toBeLessThan(LIMITS.waitMs);
          expect(share.waiting).toBe(queued.length);
          // The expiry order keeps no settled waiter past the tick after it settled.
          if (step.kind === 'advance') expect(share.expiring).toBeLessThanOrEqual(2 * queued.length);
          // Kept: what holds or waits, and what waits in the turn orders — nothing else.
          const active = new Set<string>();
          for (const { claim: c } of [...held, ...queued]) {
            active
              .add(`pool ${c.pool}`)
              .add(`tenant ${c.pool} ${c.tenant}`)
              .add(`token ${c.pool} ${c.token}`);
          }
          for (const { claim: c } of queued) {
            active.add(`waiting tenant ${c.pool} ${c.tenant}`).add(`waiting token ${c.pool} ${c.token}`);
          }
          expect(share.tracked).toBe(active.size);
        }
        // Once every slot is back and every waiter gone, nothing is kept for any token.
        for (const q of queued) q.waiting.cancel();
        for (const lease of ever) lease.release();
        await settle();
        for (const q of queued) {
          const seen = q.seen();
          if (seen?.ok) seen.lease.release();
        }
        expect(share.waiting).toBe(0);
        expect(share.tracked).toBe(0);
        share.expire();
        expect(share.expiring).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});
