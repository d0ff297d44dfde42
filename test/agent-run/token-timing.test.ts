// When a token is refreshed and how long it is handed out: tables of named cases, and the
// ordering every lifetime must keep (a property).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  expiryMargin,
  type Lifetime,
  longEnough,
  refreshAt,
  retryDelay,
  usableUntil,
} from '../../src/agent-run/token-timing.ts';

const S = 1000;
const life = (seconds: number): Lifetime => ({ obtainedAt: 0, expiresAt: seconds * S });

describe('refreshAt', () => {
  it.each([
    ['at 80% for the default 300 s token', 300, 240],
    ['at 80% for a 10-minute token', 600, 480],
    ['30 s before expiry when that is earlier (120 s)', 120, 90],
    ['30 s before expiry for a 60 s token', 60, 30],
    ['not before half the lifetime for a 20 s token', 20, 10],
    ['at half the lifetime for the shortest policy token (10 s)', 10, 5],
    ['at half the lifetime for a 3 s token', 3, 1.5],
  ])('refreshes %s', (_name, lifetime, at) => {
    expect(refreshAt(life(lifetime))).toBe(at * S);
  });
});

describe('usableUntil', () => {
  it.each([
    ['the last 5 s of a 300 s token', 300, 295],
    ['the last 5 s of a 20 s token', 20, 15],
    ['the last quarter of a 10 s token', 10, 7.5],
    ['the last quarter of a 3 s token', 3, 2.25],
  ])('never hands out %s', (_name, lifetime, until) => {
    expect(usableUntil(life(lifetime))).toBe(until * S);
    expect(expiryMargin(life(lifetime))).toBe((lifetime - until) * S);
  });
});

describe('retryDelay', () => {
  it.each([
    [1, 1],
    [2, 2],
    [3, 4],
    [4, 8],
    [5, 16],
    [6, 30],
    [20, 30],
  ])('after %i failures waits up to %i s, at least half of it', (failures, seconds) => {
    expect(retryDelay(failures, 0, undefined, 0.999999)).toBeCloseTo(seconds * S, -1);
    expect(retryDelay(failures, 0, undefined, 0)).toBe(Math.max(500, (seconds * S) / 2));
  });

  it('waits at most half of what the current token has left, so several attempts fit', () => {
    // 300 s token, at 289 s: usable until 295 s, 6 s left.
    expect(retryDelay(6, 289 * S, life(300), 0.999999)).toBe(3 * S);
  });

  it('never retries sooner than 500 ms', () => {
    expect(retryDelay(1, 294.8 * S, life(300), 0)).toBe(500);
  });

  it('is not capped by a token that is no longer usable', () => {
    expect(retryDelay(6, 296 * S, life(300), 0.999999)).toBeCloseTo(30 * S, -1);
  });
});

describe('longEnough', () => {
  it('refuses a token that arrives with under a second to live', () => {
    expect(longEnough({ obtainedAt: 0, expiresAt: 999 })).toBe(false);
    expect(longEnough({ obtainedAt: 0, expiresAt: 1000 })).toBe(true);
  });
});

describe('every lifetime of a second or more', () => {
  it('is refreshed after it starts and before it stops being handed out, which is before it expires', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: 1000, max: 86_400_000 }),
        (obtainedAt, lifetime) => {
          const t = { obtainedAt, expiresAt: obtainedAt + lifetime };
          expect(refreshAt(t)).toBeGreaterThan(t.obtainedAt);
          expect(refreshAt(t)).toBeLessThan(usableUntil(t));
          expect(usableUntil(t)).toBeLessThan(t.expiresAt);
        },
      ),
    );
  });
});
