// The token source's timing, on a fake clock: when tokens are obtained, what is handed out
// meanwhile, how failures are retried — without sleeping.
import { describe, expect, it } from 'vitest';
import { AgentRunError } from '../../src/agent-run/errors.ts';
import {
  type ObtainedToken,
  type Timers,
  TokenSource,
  type TokenSourceEvent,
} from '../../src/agent-run/token-source.ts';

const S = 1000;

/** A clock that moves only when told, running the timers that fall due on the way. */
class FakeTimers implements Timers {
  time = 0;
  private readonly queue = new Set<{ at: number; fn: () => void }>();

  now(): number {
    return this.time;
  }

  schedule(fn: () => void, ms: number): () => void {
    const entry = { at: this.time + ms, fn };
    this.queue.add(entry);
    return () => this.queue.delete(entry);
  }

  /** Moves the clock `ms` forward, running each timer at its own time. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await settle();
      const due = [...this.queue].filter((e) => e.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.queue.delete(due);
      this.time = Math.max(this.time, due.at);
      due.fn();
    }
    this.time = end;
    await settle();
  }

  /** Moves the clock without running timers: the machine slept. */
  async jump(ms: number): Promise<void> {
    this.time += ms;
    await settle();
  }

  get planned(): number[] {
    return [...this.queue].map((e) => e.at).sort((a, b) => a - b);
  }
}

/** Lets promise callbacks run (no time passes on the fake clock). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A token endpoint on the fake clock: numbered tokens of `lifetimeMs`, or failures when told. */
function fakeIssuer(timers: FakeTimers, lifetimeMs = 300 * S) {
  let issued = 0;
  const issuer = {
    calls: [] as number[],
    failWith: undefined as Error | undefined,
    lifetimeMs,
    obtain: async (): Promise<ObtainedToken> => {
      issuer.calls.push(timers.now());
      if (issuer.failWith !== undefined) throw issuer.failWith;
      issued++;
      return { token: `token-${issued}`, expiresAt: timers.now() + issuer.lifetimeMs };
    },
  };
  return issuer;
}

function setup(lifetimeMs?: number) {
  const timers = new FakeTimers();
  const issuer = fakeIssuer(timers, lifetimeMs);
  const events: TokenSourceEvent[] = [];
  const source = new TokenSource(issuer.obtain, {
    timers,
    random: () => 0,
    onEvent: (e) => events.push(e),
  });
  return { timers, issuer, events, source };
}

/** Watches a promise from now on; `now()` says how it stands, without waiting for it. */
function track<T>(promise: Promise<T>): { now(): { value?: T; error?: unknown; pending: boolean } } {
  let result: { value?: T; error?: unknown; pending: boolean } = { pending: true };
  promise.then(
    (value) => {
      result = { value, pending: false };
    },
    (error: unknown) => {
      result = { error, pending: false };
    },
  );
  return { now: () => result };
}

describe('TokenSource', () => {
  it('obtains the first token at start and hands it out without asking again', async () => {
    const { source, issuer } = setup();
    await source.start();
    expect(await source.current()).toBe('token-1');
    expect(await source.current()).toBe('token-1');
    expect(issuer.calls).toEqual([0]);
  });

  it('refreshes a 300 s token at 240 s, and hands out the new one from then on', async () => {
    const { source, issuer, timers } = setup();
    await source.start();
    await timers.advance(239 * S);
    expect(issuer.calls).toEqual([0]);
    expect(await source.current()).toBe('token-1');
    await timers.advance(1 * S);
    expect(issuer.calls).toEqual([0, 240 * S]);
    expect(await source.current()).toBe('token-2');
    expect(timers.planned).toEqual([480 * S]);
  });

  it('keeps refreshing every 240 s for as long as it runs', async () => {
    const { source, issuer, timers } = setup();
    await source.start();
    await timers.advance(3600 * S);
    expect(issuer.calls).toEqual(Array.from({ length: 16 }, (_, i) => i * 240 * S));
    expect(await source.current()).toBe('token-16');
  });

  it('retries a failed refresh with backoff while handing out the old token', async () => {
    const { source, issuer, timers, events } = setup();
    await source.start();
    issuer.failWith = new Error('the issuer is down');
    await timers.advance(250 * S);
    // 240 s, then 0.5 s, 1 s, 2 s, 4 s later (random 0: half of 1, 2, 4, 8 s).
    expect(issuer.calls).toEqual([0, 240 * S, 240.5 * S, 241.5 * S, 243.5 * S, 247.5 * S]);
    expect(await source.current()).toBe('token-1');
    expect(events.filter((e) => e.type === 'refresh_failed').map((e) => e.retryInMs)).toEqual([
      500, 1000, 2000, 4000, 8000,
    ]);
    issuer.failWith = undefined;
    await timers.advance(6 * S);
    expect(issuer.calls.at(-1)).toBe(255.5 * S);
    expect(await source.current()).toBe('token-2');
  });

  it('never hands out a token in its last 5 s: callers wait for the next one', async () => {
    const { source, issuer, timers } = setup();
    await source.start();
    issuer.failWith = new Error('the issuer is down');
    await timers.advance(294 * S);
    expect(await source.current()).toBe('token-1');
    await timers.advance(1 * S);
    const waiting = track(source.current());
    await settle();
    expect(waiting.now().pending).toBe(true);
    issuer.failWith = undefined;
    // The next retry is already planned; it brings the token the caller waits for.
    await timers.advance(30 * S);
    expect(waiting.now()).toEqual({ value: 'token-2', pending: false });
  });

  it('refuses a waiting caller after the wait, naming the last failure', async () => {
    const { source, issuer, timers } = setup();
    await source.start();
    issuer.failWith = new Error('invalid_client');
    await timers.advance(296 * S);
    const waiting = track(source.current(30 * S));
    await timers.advance(30 * S);
    const { error } = waiting.now();
    expect(error).toBeInstanceOf(AgentRunError);
    expect(error).toMatchObject({
      code: 'token_unavailable',
      message: expect.stringContaining('invalid_client'),
    });
  });

  it('starts a late refresh at once when the planned one did not run (the machine slept)', async () => {
    const { source, issuer, timers } = setup();
    await source.start();
    await timers.jump(600 * S);
    const waiting = track(source.current());
    await settle();
    expect(issuer.calls).toEqual([0, 600 * S]);
    expect(waiting.now()).toEqual({ value: 'token-2', pending: false });
  });

  it('lets callers wait for the first token when none was obtained yet', async () => {
    const { source, issuer } = setup();
    const first = source.current();
    expect(await first).toBe('token-1');
    expect(issuer.calls).toEqual([0]);
  });

  it('fails start with the issuer’s error, and plans nothing', async () => {
    const { source, issuer, timers } = setup();
    issuer.failWith = new AgentRunError('token_refused', 'invalid_client');
    await expect(source.start()).rejects.toMatchObject({ code: 'token_refused' });
    expect(timers.planned).toEqual([]);
  });

  it('counts a token that arrives with under a second to live as a failure', async () => {
    const { source, issuer, timers, events } = setup(900);
    await expect(source.start()).rejects.toMatchObject({ code: 'token_response_invalid' });
    issuer.lifetimeMs = 300 * S;
    await source.start();
    issuer.lifetimeMs = 900;
    await timers.advance(240 * S);
    expect(events.at(-1)).toMatchObject({
      type: 'refresh_failed',
      message: expect.stringContaining('within a second'),
    });
    // token-1 lived 0.9 s and was refused at start; token-3 lived 0.9 s too.
    expect(await source.current()).toBe('token-2');
  });

  it('refreshes a 10 s token at 5 s and hands it out until 7.5 s', async () => {
    const { source, issuer, timers } = setup(10 * S);
    await source.start();
    issuer.failWith = new Error('down');
    await timers.advance(7.4 * S);
    expect(issuer.calls[1]).toBe(5 * S);
    expect(await source.current()).toBe('token-1');
    await timers.advance(0.1 * S);
    const waiting = track(source.current());
    await settle();
    expect(waiting.now().pending).toBe(true);
    source.stop();
  });

  it('stops: waiting callers are refused and nothing more is planned', async () => {
    const { source, issuer, timers } = setup();
    await source.start();
    issuer.failWith = new Error('down');
    await timers.advance(296 * S);
    const waiting = track(source.current());
    source.stop();
    await settle();
    expect(waiting.now().error).toMatchObject({ code: 'token_unavailable' });
    expect(timers.planned).toEqual([]);
    await expect(source.current()).rejects.toMatchObject({ code: 'token_unavailable' });
  });

  it('tells observers when, never which token', async () => {
    const { source, issuer, timers, events } = setup();
    await source.start();
    issuer.failWith = new Error('down');
    await timers.advance(241 * S);
    expect(events[0]).toEqual({ type: 'obtained', expiresAt: 300 * S, refreshAt: 240 * S });
    expect(events[1]).toMatchObject({ type: 'refresh_failed', message: 'down', failures: 1 });
    expect(JSON.stringify(events)).not.toContain('token-');
  });
});
