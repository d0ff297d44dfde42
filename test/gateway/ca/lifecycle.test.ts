// The interception CA's life cycle as tables: one row per state and per verdict.
import { describe, expect, it } from 'vitest';
import {
  CA_STATES,
  type CaRecord,
  type CaState,
  caState,
  chooseSigningCa,
  isTrusted,
  overlapEnd,
  type SigningChoice,
  trustedCas,
} from '../../../src/gateway/ca/lifecycle.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const DAY = 24 * 60 * 60_000;
const day = (n: number) => new Date(T0 + n * DAY);

function ca(
  id: string,
  created: number,
  notAfter: number,
  retired?: { at: number; until: number },
): CaRecord {
  return {
    id,
    createdAt: day(created),
    notAfter: day(notAfter),
    retiredAt: retired ? day(retired.at) : null,
    trustedUntil: retired ? day(retired.until) : null,
  };
}

describe('where a CA stands', () => {
  const rows: { name: string; ca: CaRecord; now: Date; state: CaState }[] = [
    {
      name: 'the current CA before its notAfter is active',
      ca: ca('a', 0, 3650),
      now: day(10),
      state: 'active',
    },
    {
      name: 'the current CA at its notAfter has expired',
      ca: ca('a', 0, 3650),
      now: day(3650),
      state: 'expired',
    },
    {
      name: 'a replaced CA within its overlap is trusted',
      ca: ca('a', 0, 3650, { at: 100, until: 130 }),
      now: day(129),
      state: 'trusted',
    },
    {
      name: 'a replaced CA at the end of its overlap is retired',
      ca: ca('a', 0, 3650, { at: 100, until: 130 }),
      now: day(130),
      state: 'retired',
    },
    {
      name: 'a replaced CA past its notAfter is retired, whatever trusted_until says',
      ca: ca('a', 0, 50, { at: 40, until: 70 }),
      now: day(60),
      state: 'retired',
    },
  ];
  it.each(rows)('$name', ({ ca: record, now, state }) => {
    expect(caState(record, now)).toBe(state);
  });

  it('has a row for every state', () => {
    expect(new Set(rows.map((r) => r.state))).toEqual(new Set(CA_STATES));
  });

  it('trusts active and trusted CAs only', () => {
    expect(CA_STATES.filter(isTrusted)).toEqual(['active', 'trusted']);
  });
});

describe('the trusted bundle', () => {
  it('puts the active CA first, then the replaced ones still in their overlap, newest first', () => {
    const cas = [
      ca('oldest', 0, 3650, { at: 10, until: 40 }),
      ca('older', 10, 3650, { at: 20, until: 50 }),
      ca('current', 20, 3650),
      ca('gone', -100, 3650, { at: 0, until: 5 }),
    ];
    expect(trustedCas(cas, day(30)).map((c) => c.id)).toEqual(['current', 'older', 'oldest']);
    expect(trustedCas(cas, day(45)).map((c) => c.id)).toEqual(['current', 'older']);
  });

  it('leaves out an expired active CA', () => {
    expect(trustedCas([ca('a', 0, 10)], day(10))).toEqual([]);
  });
});

describe('which CA signs', () => {
  const WARN = 30 * DAY;
  const rows: { name: string; cas: CaRecord[]; now: Date; expected: SigningChoice }[] = [
    { name: 'no CA at all: one must be created', cas: [], now: day(0), expected: { verdict: 'create' } },
    {
      name: 'only replaced CAs: one must be created',
      cas: [ca('a', 0, 3650, { at: 10, until: 40 })],
      now: day(20),
      expected: { verdict: 'create' },
    },
    {
      name: 'the active CA signs',
      cas: [ca('old', 0, 3650, { at: 10, until: 40 }), ca('new', 10, 3660)],
      now: day(20),
      expected: { verdict: 'sign', id: 'new', expiresSoon: false },
    },
    {
      name: 'the active CA signs, with a warning, within 30 days of its notAfter',
      cas: [ca('a', 0, 3650)],
      now: day(3621),
      expected: { verdict: 'sign', id: 'a', expiresSoon: true },
    },
    {
      name: 'an expired active CA is not replaced on its own: agents need the new bundle first',
      cas: [ca('a', 0, 3650)],
      now: day(3650),
      expected: { verdict: 'expired', id: 'a', notAfter: day(3650) },
    },
  ];
  it.each(rows)('$name', ({ cas, now, expected }) => {
    expect(chooseSigningCa(cas, now, WARN)).toEqual(expected);
  });
});

describe('the overlap of a replaced CA', () => {
  it('lasts the overlap from the rotation', () => {
    expect(overlapEnd(ca('a', 0, 3650), day(100), 30 * DAY)).toEqual(day(130));
  });

  it('never runs past the CA notAfter', () => {
    expect(overlapEnd(ca('a', 0, 110), day(100), 30 * DAY)).toEqual(day(110));
  });

  it('is over at once with an overlap of 0 (a leaked key)', () => {
    const record = ca('a', 0, 3650);
    const until = overlapEnd(record, day(100), 0);
    expect(caState({ ...record, retiredAt: day(100), trustedUntil: until }, day(100))).toBe('retired');
  });
});
