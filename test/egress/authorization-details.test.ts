// The authorization_details codec (src/egress/authorization-details.ts): what the server writes
// into a token is what the gateway reads back, entries are read by the rule grammar, and every
// malformed entry is refused with a message naming it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkEgressDetail,
  formatEgressDetails,
  formatRule,
  matchRules,
  parseEgressDetails,
  parseRule,
  type Rule,
} from '../../src/egress/index.ts';
import { ruleSet, targetNear } from './arbitraries.ts';

function rule(text: string): Rule {
  const parsed = parseRule(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.rule;
}

describe('reading egress entries', () => {
  it.each([
    [
      'actions apply to every location of their entry',
      [
        {
          type: 'egress',
          locations: ['https://a.example/x', 'https://b.example/'],
          actions: ['POST', 'GET'],
        },
      ],
      ['GET,POST https://a.example/x', 'GET,POST https://b.example/'],
    ],
    [
      'no actions is any method',
      [{ type: 'egress', locations: ['https://a.example/'] }],
      ['https://a.example/'],
    ],
    [
      'locations are canonicalised as rules are',
      [{ type: 'egress', locations: ['HTTPS://Bücher.example./a/'], actions: ['GET'] }],
      ['GET https://xn--bcher-kva.example/a'],
    ],
    [
      'entries are read in order',
      [
        { type: 'egress', locations: ['https://b.example/'], actions: ['GET'] },
        { type: 'egress', locations: ['https://a.example/'] },
      ],
      ['GET https://b.example/', 'https://a.example/'],
    ],
  ])('%s', (_name, details, rules) => {
    const parsed = parseEgressDetails(details);
    expect(parsed.ok && parsed.rules.map(formatRule)).toEqual(rules);
  });
});

describe('refusing a malformed entry', () => {
  // Each row: the entry (always at index 1, after a good one), and the message it is refused with.
  it.each([
    ['an entry that is not an object', ['egress'], 'entry 1: must be an object'],
    [
      'an entry of another type',
      { type: 'payment', locations: ['https://a.example/'] },
      'type must be "egress"',
    ],
    [
      'an unknown member',
      { type: 'egress', locations: ['https://a.example/'], datatypes: ['x'] },
      'unknown member',
    ],
    ['no locations', { type: 'egress' }, 'locations must be a non-empty list'],
    ['empty locations', { type: 'egress', locations: [] }, 'locations must be a non-empty list'],
    [
      'a location that is not a string',
      { type: 'egress', locations: [7] },
      'locations must be a non-empty list',
    ],
    [
      'methods inside a location',
      { type: 'egress', locations: ['GET https://a.example/'] },
      'put methods in actions',
    ],
    ['empty actions', { type: 'egress', locations: ['https://a.example/'], actions: [] }, 'actions must be'],
    [
      'two methods in one action',
      { type: 'egress', locations: ['https://a.example/'], actions: ['GET,POST'] },
      "actions: 'GET,POST' is not one method",
    ],
    [
      'a space in an action',
      { type: 'egress', locations: ['https://a.example/'], actions: ['GET https://b.example/'] },
      'is not one method',
    ],
    [
      // RFC 9110 §9.1: methods are case-sensitive; docs/decisions.md: never upper-cased silently.
      'a method in lower case',
      { type: 'egress', locations: ['https://a.example/'], actions: ['post'] },
      'entry 1: actions: methods are case-sensitive and written in upper case: write POST',
    ],
    [
      'a location that is not a rule',
      { type: 'egress', locations: ['ftp://a.example/'] },
      'entry 1: ftp://a.example/: the scheme must be https or http',
    ],
  ])('%s', (_name, entry, message) => {
    const parsed = parseEgressDetails([{ type: 'egress', locations: ['https://ok.example/'] }, entry]);
    expect(parsed.ok).toBe(false);
    expect(!parsed.ok && parsed.message).toContain(message);
    expect(!parsed.ok && parsed.message).toMatch(/^entry 1: /);
  });

  it('checks one entry’s shape on its own, as oidc-provider asks', () => {
    expect(
      checkEgressDetail({ type: 'egress', locations: ['https://a.example/'], actions: ['GET'] }),
    ).toEqual({
      ok: true,
      locations: ['https://a.example/'],
      actions: ['GET'],
    });
    expect(
      checkEgressDetail({ type: 'egress', locations: ['https://a.example/'], actions: ['get'] }).ok,
    ).toBe(true);
  });
});

describe('writing a grant as egress entries', () => {
  it('groups rules by method set, actions omitted for any method, in a stable order', () => {
    const rules = [
      'https://c.example/',
      'GET https://b.example/',
      'GET https://a.example/x',
      'GET,POST https://d.example/',
    ];
    expect(formatEgressDetails(rules.map(rule))).toEqual([
      { type: 'egress', locations: ['https://c.example/'] },
      { type: 'egress', locations: ['https://a.example/x', 'https://b.example/'], actions: ['GET'] },
      { type: 'egress', locations: ['https://d.example/'], actions: ['GET', 'POST'] },
    ]);
  });

  it('reads back as exactly the requests the rules match', () => {
    const withTarget = ruleSet.chain((rules) => fc.tuple(fc.constant(rules), targetNear(rules)));
    fc.assert(
      fc.property(withTarget, ([rules, target]) => {
        const read = parseEgressDetails(formatEgressDetails(rules));
        expect(read.ok).toBe(true);
        if (read.ok) expect(matchRules(read.rules, target)).toBe(matchRules(rules, target));
      }),
      { numRuns: 1_000 },
    );
  });
});
