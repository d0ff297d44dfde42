// The minimum body rate (src/gateway/body-rate.ts): each window of a body streaming upstream must
// bring minBytesPerSecond on average, or the body is cut; a window that ends with the stream
// paused by back-pressure starts again. Time is an injected clock, moved by hand; check() is the
// tick the gateway runs.
import { describe, expect, it } from 'vitest';
import { type BodyRateLimits, createBodyRateGuard, DEFAULT_BODY_RATE } from '../../src/gateway/body-rate.ts';

const LIMITS: BodyRateLimits = { minBytesPerSecond: 100, windowMs: 1_000 };

function setup(limits: BodyRateLimits = LIMITS) {
  let time = 0;
  const guard = createBodyRateGuard(limits, { now: () => time });
  return {
    guard,
    /** Moves the clock, then runs the tick. */
    tick(ms: number) {
      time += ms;
      guard.check();
    },
    /** A body that records when it was found too slow. */
    body(stream = { readableFlowing: true as boolean | null }) {
      let cut = 0;
      const watch = guard.watch(stream, () => cut++);
      return { watch, stream, cuts: () => cut };
    },
  };
}

describe('a body streaming upstream', () => {
  it('is not judged before its first window ends, however little it brought', () => {
    const { tick, body } = setup();
    const b = body();
    tick(999);
    expect(b.cuts()).toBe(0);
  });

  it('is cut once when it brings less than the rate over its first window (one byte a second)', () => {
    const { guard, tick, body } = setup();
    const b = body();
    b.watch.count(1);
    tick(1_000);
    expect(b.cuts()).toBe(1);
    expect(guard.watching).toBe(0);
    tick(1_000);
    expect(b.cuts()).toBe(1);
  });

  it('goes on for as many windows as each brings the rate', () => {
    const { tick, body } = setup();
    const b = body();
    for (let i = 0; i < 10; i++) {
      b.watch.count(100);
      tick(1_000);
    }
    expect(b.cuts()).toBe(0);
  });

  it('gets no licence to trickle from a burst: each window is judged on its own bytes', () => {
    const { tick, body } = setup();
    const b = body();
    b.watch.count(1_000_000);
    tick(1_000);
    expect(b.cuts()).toBe(0);
    b.watch.count(99);
    tick(1_000);
    expect(b.cuts()).toBe(1);
  });

  it('is judged on the average over the time that passed when the tick comes late', () => {
    const { tick, body } = setup();
    const enough = body();
    const short = body();
    enough.watch.count(150);
    short.watch.count(149);
    tick(1_500);
    expect(enough.cuts()).toBe(0);
    expect(short.cuts()).toBe(1);
  });

  it('starts its window again when it ends paused by back-pressure: a slow upstream is not the client’s fault', () => {
    const { tick, body } = setup();
    const b = body({ readableFlowing: true });
    b.stream.readableFlowing = false;
    tick(1_000);
    expect(b.cuts()).toBe(0);
    b.stream.readableFlowing = true;
    tick(999);
    expect(b.cuts()).toBe(0);
    tick(1);
    expect(b.cuts()).toBe(1);
  });

  it('is never judged once it ended', () => {
    const { guard, tick, body } = setup();
    const b = body();
    b.watch.count(1);
    b.watch.end();
    expect(guard.watching).toBe(0);
    tick(5_000);
    expect(b.cuts()).toBe(0);
  });

  it('is judged by its own start, not that of bodies before it', () => {
    const { tick, body } = setup();
    const first = body();
    tick(600);
    const second = body();
    tick(400);
    expect(first.cuts()).toBe(1);
    expect(second.cuts()).toBe(0);
    tick(600);
    expect(second.cuts()).toBe(1);
  });

  it('is not watched at all when the rate is 0', () => {
    const { guard, tick, body } = setup({ minBytesPerSecond: 0, windowMs: 1_000 });
    const b = body();
    tick(60_000);
    expect(b.cuts()).toBe(0);
    expect(guard.watching).toBe(0);
  });
});

describe('the default body rate', () => {
  it('asks 10 KiB of every 10 s', () => {
    expect(DEFAULT_BODY_RATE.minBytesPerSecond * (DEFAULT_BODY_RATE.windowMs / 1000)).toBe(10 * 1024);
  });
});
