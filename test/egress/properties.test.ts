import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compileRuleSet,
  findMatch,
  formatRule,
  intersectRules,
  matchRule,
  matchRules,
  parseRule,
  ruleContains,
  simplifyRules,
} from '../../src/egress/index.ts';
import { rule, ruleSet, ruleText, setsAndTarget, targetNear } from './arbitraries.ts';

// At least 1,000 generated cases per property (the bar); more where cheap.
const runs = { numRuns: 2_000 };

describe('intersection of rule sets', () => {
  it('matches exactly the requests both sets match', () => {
    fc.assert(
      fc.property(setsAndTarget(2), ([[a = [], b = []], x]) => {
        expect(matchRules(intersectRules(a, b), x)).toBe(matchRules(a, x) && matchRules(b, x));
      }),
      runs,
    );
  });

  it('is commutative in what it matches', () => {
    fc.assert(
      fc.property(setsAndTarget(2), ([[a = [], b = []], x]) => {
        expect(matchRules(intersectRules(a, b), x)).toBe(matchRules(intersectRules(b, a), x));
      }),
      runs,
    );
  });

  it('is associative in what it matches', () => {
    fc.assert(
      fc.property(setsAndTarget(3), ([[a = [], b = [], c = []], x]) => {
        const left = intersectRules(intersectRules(a, b), c);
        const right = intersectRules(a, intersectRules(b, c));
        expect(matchRules(left, x)).toBe(matchRules(right, x));
      }),
      runs,
    );
  });

  it('of a set with itself matches what the set matches', () => {
    fc.assert(
      fc.property(setsAndTarget(1), ([[a = []], x]) => {
        expect(matchRules(intersectRules(a, a), x)).toBe(matchRules(a, x));
      }),
      runs,
    );
  });

  it('of two sets is the same text whichever comes first', () => {
    fc.assert(
      fc.property(ruleSet, ruleSet, (a, b) => {
        expect(intersectRules(a, b).map(formatRule)).toEqual(intersectRules(b, a).map(formatRule));
      }),
      runs,
    );
  });

  it('with the empty set matches nothing', () => {
    fc.assert(
      fc.property(setsAndTarget(1), ([[a = []], x]) => {
        expect(matchRules(intersectRules(a, []), x)).toBe(false);
      }),
      { numRuns: 1_000 },
    );
  });
});

describe('simplification', () => {
  it('matches exactly what the original set matches', () => {
    fc.assert(
      fc.property(setsAndTarget(1), ([[a = []], x]) => {
        expect(matchRules(simplifyRules(a), x)).toBe(matchRules(a, x));
      }),
      runs,
    );
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(ruleSet, (a) => {
        const once = simplifyRules(a);
        expect(simplifyRules(once).map(formatRule)).toEqual(once.map(formatRule));
      }),
      runs,
    );
  });
});

describe('rule containment', () => {
  it('never claims containment that a request contradicts', () => {
    fc.assert(
      fc.property(
        fc.tuple(rule, rule).chain(([o, i]) => targetNear([o, i]).map((x) => [o, i, x] as const)),
        ([outer, inner, x]) => {
          if (ruleContains(outer, inner) && matchRule(inner, x)) expect(matchRule(outer, x)).toBe(true);
        },
      ),
      { numRuns: 5_000 },
    );
  });
});

describe('the indexed rule set', () => {
  it('finds a match exactly when a linear scan does', () => {
    fc.assert(
      fc.property(setsAndTarget(1), ([[a = []], x]) => {
        const found = findMatch(compileRuleSet(a), x);
        expect(found !== null).toBe(a.some((r) => matchRule(r, x)));
        if (found !== null) expect(matchRule(found, x)).toBe(true);
      }),
      runs,
    );
  });
});

describe('canonical text', () => {
  it('parses back to the same rule', () => {
    fc.assert(
      fc.property(rule, (r) => {
        const again = parseRule(formatRule(r));
        expect(again).toEqual({ ok: true, rule: r });
      }),
      runs,
    );
  });

  it('is a fixed point of formatting', () => {
    fc.assert(
      fc.property(ruleText, (text) => {
        const once = parseRule(text);
        if (!once.ok) throw new Error(once.error.message);
        const canonical = formatRule(once.rule);
        const twice = parseRule(canonical);
        expect(twice.ok && formatRule(twice.rule)).toBe(canonical);
      }),
      runs,
    );
  });
});

describe('the parser on arbitrary text', () => {
  it('never throws, and any error names a column inside the text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: 'grapheme' }),
          ruleText.map((t) => `${t}\u0000`),
        ),
        (text) => {
          const result = parseRule(text);
          if (!result.ok) {
            expect(result.error.column).toBeGreaterThanOrEqual(1);
            expect(result.error.column).toBeLessThanOrEqual(Math.max(1, text.length));
          }
        },
      ),
      { numRuns: 3_000 },
    );
  });
});

describe('the generators', () => {
  // A property over requests that never match proves nothing; keep the generators honest.
  it('produce requests that match and requests that do not', () => {
    const samples = fc.sample(setsAndTarget(2), 2_000);
    const inA = samples.filter(([[a = []], x]) => matchRules(a, x)).length;
    const inBoth = samples.filter(([[a = [], b = []], x]) => matchRules(a, x) && matchRules(b, x)).length;
    expect(inA).toBeGreaterThan(300);
    expect(inA).toBeLessThan(1_600);
    expect(inBoth).toBeGreaterThan(100);
  });
});
