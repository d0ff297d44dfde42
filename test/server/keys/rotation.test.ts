// The signing keys' life cycle as tables: one row per transition and per reason.
import { describe, expect, it } from 'vitest';
import {
  chooseSigningKey,
  isPublished,
  KEY_STATES,
  type KeyRecord,
  type KeyState,
  planRetirement,
  planRotation,
  publishedKeys,
  type RetirementDecision,
  type RetirementReason,
} from '../../../src/server/keys/rotation.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000);

function key(kid: string, state: KeyState, activatedMinute: number | null, createdMinute = 0): KeyRecord {
  return {
    kid,
    state,
    createdAt: at(createdMinute),
    activatedAt: activatedMinute === null ? null : at(activatedMinute),
    retiredAt: state === 'retired' ? at(activatedMinute ?? 0) : null,
  };
}

describe('which key signs', () => {
  const rows: { name: string; keys: KeyRecord[]; expected: ReturnType<typeof chooseSigningKey> }[] = [
    { name: 'no key at all: one must be created', keys: [], expected: { verdict: 'create' } },
    {
      name: 'only retiring and retired keys: one must be created',
      keys: [key('a', 'retiring', 0), key('b', 'retired', 0)],
      expected: { verdict: 'create' },
    },
    {
      name: 'a pending key never signs',
      keys: [key('p', 'pending', null)],
      expected: { verdict: 'create' },
    },
    {
      name: 'the one active key signs',
      keys: [key('old', 'retiring', 0), key('cur', 'active', 10), key('p', 'pending', null, 20)],
      expected: { verdict: 'sign', kid: 'cur', repairs: [] },
    },
    {
      name: 'of two active keys the newer signs and the older retires',
      keys: [key('older', 'active', 0), key('newer', 'active', 10)],
      expected: {
        verdict: 'sign',
        kid: 'newer',
        repairs: [{ kid: 'older', from: 'active', to: 'retiring', reason: 'duplicate_active' }],
      },
    },
  ];
  it.each(rows)('$name', ({ keys, expected }) => {
    expect(chooseSigningKey(keys)).toEqual(expected);
  });
});

describe('rotation', () => {
  it('with no key yet, activates the new key and retires nothing', () => {
    expect(planRotation([], 'new')).toEqual({ activate: 'new', transitions: [] });
  });

  it('moves the active key to retiring and leaves retiring, retired and pending keys as they are', () => {
    const keys = [
      key('cur', 'active', 10),
      key('old', 'retiring', 5),
      key('gone', 'retired', 0),
      key('p', 'pending', null, 11),
    ];
    expect(planRotation(keys, 'new')).toEqual({
      activate: 'new',
      transitions: [{ kid: 'cur', from: 'active', to: 'retiring', reason: 'rotated_out' }],
    });
  });
});

describe('publication', () => {
  it('publishes every state but retired', () => {
    expect(KEY_STATES.filter(isPublished)).toEqual(['pending', 'active', 'retiring']);
  });

  it('lists the active key first, then pending, then retiring keys newest first, and leaves retired out', () => {
    const keys = [
      key('r1', 'retiring', 0),
      key('gone', 'retired', 0),
      key('r2', 'retiring', 5),
      key('p', 'pending', null, 30),
      key('cur', 'active', 20),
    ];
    expect(publishedKeys(keys).map((k) => k.kid)).toEqual(['cur', 'p', 'r2', 'r1']);
  });
});

describe('retirement', () => {
  const graceMs = 10 * 60_000;
  // 'old' stopped signing at minute 60, when 'cur' was activated.
  const keys = [key('old', 'retiring', 0), key('cur', 'active', 60)];

  const rows: {
    name: string;
    reason: RetirementReason;
    keys: KeyRecord[];
    lastExpiry?: Date;
    now: Date;
    verdict: RetirementDecision['verdict'];
  }[] = [
    {
      name: 'a key whose last token expired before now retires',
      reason: 'tokens_expired',
      keys,
      lastExpiry: at(75),
      now: at(80),
      verdict: 'retire',
    },
    {
      name: 'a key whose last token expires exactly now retires (exp is exclusive)',
      reason: 'tokens_expired',
      keys,
      lastExpiry: at(80),
      now: at(80),
      verdict: 'retire',
    },
    {
      name: 'a key that signed no token retires once the grace period is over',
      reason: 'no_tokens',
      keys,
      now: at(70),
      verdict: 'retire',
    },
    {
      name: 'a key with a token still valid stays published',
      reason: 'unexpired_tokens',
      keys,
      lastExpiry: at(81),
      now: at(80),
      verdict: 'keep',
    },
    {
      name: 'a key replaced less than the grace period ago stays published, even with no tokens',
      reason: 'grace_period',
      keys,
      now: at(69),
      verdict: 'keep',
    },
    {
      name: 'a retiring key without any later activated key stays published',
      reason: 'no_successor',
      keys: [key('old', 'retiring', 60), key('older', 'retired', 0)],
      now: at(1000),
      verdict: 'keep',
    },
  ];

  it.each(rows)('$name', ({ keys, lastExpiry, now, reason, verdict }) => {
    const expiry = new Map(lastExpiry ? [['old', lastExpiry]] : []);
    expect(planRetirement({ keys, lastExpiry: expiry, now, graceMs })).toEqual([
      { kid: 'old', verdict, reason },
    ]);
  });

  it('has a row for every reason', () => {
    const reasons: Record<RetirementReason, true> = {
      tokens_expired: true,
      no_tokens: true,
      unexpired_tokens: true,
      grace_period: true,
      no_successor: true,
    };
    expect(new Set(rows.map((r) => r.reason))).toEqual(new Set(Object.keys(reasons)));
  });

  it('leaves active, pending and retired keys alone', () => {
    const others = [key('cur', 'active', 60), key('p', 'pending', null), key('gone', 'retired', 0)];
    expect(planRetirement({ keys: others, lastExpiry: new Map(), now: at(1000), graceMs })).toEqual([]);
  });

  it('measures the grace period from the activation of the next key, not the newest one', () => {
    // 'old' was replaced by 'mid' at minute 60; 'cur' came at minute 100.
    const chain = [key('old', 'retiring', 0), key('mid', 'retiring', 60), key('cur', 'active', 100)];
    const decisions = planRetirement({ keys: chain, lastExpiry: new Map(), now: at(105), graceMs });
    expect(decisions).toEqual([
      { kid: 'mid', verdict: 'keep', reason: 'grace_period' },
      { kid: 'old', verdict: 'retire', reason: 'no_tokens' },
    ]);
  });
});
