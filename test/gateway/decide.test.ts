import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatAddress } from '../../src/egress/address.ts';
import {
  classifyAddress,
  compileRuleSet,
  findMatch,
  isOpened,
  matchRules,
  type Opening,
  type Rule,
  type RuleSet,
  type Target,
} from '../../src/egress/index.ts';
import { type DecisionInput, decide } from '../../src/gateway/decide.ts';
import { DENY_REASONS, type DenyReason, isDenyReason, REASONS } from '../../src/gateway/reasons.ts';
import { ruleSet, setsAndTarget, target, targetNear } from '../egress/arbitraries.ts';
import { connect, granting, input, openings, owner, request, rules } from './decide-support.ts';

interface DenyRow {
  readonly name: string;
  readonly input: DecisionInput;
  readonly reason: DenyReason;
}

// One row per reason decide() gives. The guard test below fails when a reason has no row.
const denials: readonly DenyRow[] = [
  {
    name: 'a destination no rule names',
    input: input({ target: request('GET https://evil.example/exfil'), addresses: ['93.184.216.34'] }),
    reason: 'no_matching_rule',
  },
  {
    name: 'a method the rule for that path does not list',
    input: input({ target: request('DELETE https://api.example.com/v1/items') }),
    reason: 'method_not_allowed',
  },
  {
    name: 'a path outside every rule for that origin',
    input: input({ target: request('GET https://api.example.com/v10/items') }),
    reason: 'path_not_allowed',
  },
  {
    name: 'a granted name that resolves to a private address',
    input: input({ addresses: ['10.0.0.5'] }),
    reason: 'forbidden_address',
  },
  {
    name: 'a destination another tenant owns and does not federate',
    input: input({ ownership: [owner('globex', rules('https://api.example.com'))] }),
    reason: 'cross_tenant',
  },
  {
    name: 'a quarantined agent',
    input: input({ quarantined: true, addresses: ['93.184.216.34'] }),
    reason: 'agent_quarantined',
  },
  {
    name: 'an agent the applied policy no longer has',
    input: input({ registration: null, addresses: ['93.184.216.34'] }),
    reason: 'agent_not_registered',
  },
  {
    name: 'an agent whose budget is spent for this window',
    input: input({ budget: { reason: 'budget_exceeded', detail: 'spent' }, addresses: ['93.184.216.34'] }),
    reason: 'budget_exceeded',
  },
  {
    name: 'an agent with a budget no gateway can account for now',
    input: input({ budget: { reason: 'budget_unaccounted', detail: 'no database' } }),
    reason: 'budget_unaccounted',
  },
  {
    name: 'CONNECT to an origin granted only for some methods and paths',
    input: input({ target: connect('api.example.com:443'), connect: true }),
    reason: 'connect_needs_whole_origin',
  },
  {
    name: 'a granted name with no address',
    input: input({ addresses: [] }),
    reason: 'unresolvable',
  },
  {
    name: 'an input the proxy built wrong',
    input: { ...input(), target: { method: 'GET' } as unknown as Target },
    reason: 'decision_failed',
  },
];

describe('deny reasons', () => {
  it('are a closed list, each a row of the reasons table with a meaning', () => {
    expect(new Set(DENY_REASONS).size).toBe(DENY_REASONS.length);
    for (const reason of DENY_REASONS) expect(REASONS[reason].meaning).toMatch(/\S.*\.$/);
  });

  it('are answered 403 egress_denied (429 for a budget, SPEC.md), never 407', () => {
    for (const reason of DENY_REASONS) {
      const status = reason === 'budget_exceeded' || reason === 'budget_unaccounted' ? 429 : 403;
      expect(REASONS[reason]).toMatchObject({ status, error: 'egress_denied', decision: 'denied' });
    }
  });

  it('are recognised by name and nothing else is', () => {
    expect(isDenyReason('path_not_allowed')).toBe(true);
    expect(isDenyReason('invalid_token')).toBe(false);
    expect(isDenyReason('ambiguous_target')).toBe(false);
    expect(isDenyReason(undefined)).toBe(false);
  });
});

describe('a denial', () => {
  it.each(denials)('$name is refused: $reason', ({ input, reason }) => {
    const decision = decide(input);
    expect(decision).toMatchObject({ verdict: 'deny', reason });
    if (decision.verdict === 'deny') expect(decision.detail).not.toBe('');
  });

  it('has a row for every reason decide gives', () => {
    const covered = new Set(denials.map((row) => row.reason));
    const missing = DENY_REASONS.filter((reason) => !covered.has(reason));
    expect(missing).toEqual([]);
  });
});

describe('an allowed request', () => {
  it('to a name resolved to a public address pins that address', () => {
    expect(decide(input({ addresses: ['93.184.216.34'] }))).toEqual({
      verdict: 'allow',
      rule: 'GET,POST https://api.example.com/v1',
      address: '93.184.216.34',
      tunnel: false,
    });
  });

  it('to an IPv4 literal inside an IP rule pins the literal', () => {
    const decision = decide(
      granting(['https://8.8.8.0/24'], { target: request('GET https://8.8.8.8/dns-query') }),
    );
    expect(decision).toEqual({
      verdict: 'allow',
      rule: 'https://8.8.8.0/24/',
      address: '8.8.8.8',
      tunnel: false,
    });
  });

  it('to an IPv6 literal pins the canonical text without brackets', () => {
    const decision = decide(
      granting(['https://[2606:4700::/32]'], { target: request('GET https://[2606:4700:0::1111]/') }),
    );
    expect(decision).toMatchObject({ verdict: 'allow', address: '2606:4700::1111' });
  });

  it('ignores DNS answers for an IP literal', () => {
    const decision = decide(
      granting(['https://8.8.8.8'], { target: request('GET https://8.8.8.8/'), addresses: ['10.0.0.1'] }),
    );
    expect(decision).toMatchObject({ verdict: 'allow', address: '8.8.8.8' });
  });

  it('pins the first of several public answers', () => {
    const decision = decide(input({ addresses: ['2606:4700::1111', '93.184.216.34'] }));
    expect(decision).toMatchObject({ verdict: 'allow', address: '2606:4700::1111' });
  });

  it('pins an IPv4-mapped answer as its IPv4', () => {
    const decision = decide(input({ addresses: ['::ffff:93.184.216.34'] }));
    expect(decision).toMatchObject({ verdict: 'allow', address: '93.184.216.34' });
  });

  it('reports the token rule that granted it', () => {
    const decision = decide(
      input({ target: request('PUT https://files.example.com/a/b'), addresses: ['93.184.216.34'] }),
    );
    expect(decision).toMatchObject({ verdict: 'allow', rule: 'https://files.example.com/' });
  });
});

describe('resolution', () => {
  it('is asked for once the grant allows the name', () => {
    expect(decide(input())).toEqual({ verdict: 'resolve', name: 'api.example.com' });
  });

  it('is never asked for a name the token does not allow', () => {
    // A lookup is itself a channel out: the name could carry data to whoever serves the zone.
    const decision = decide(input({ target: request('GET https://c2VjcmV0.evil.example/') }));
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'no_matching_rule' });
  });

  it('is never asked for a name another tenant owns', () => {
    const decision = decide(input({ ownership: [owner('globex', rules('https://api.example.com'))] }));
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'cross_tenant' });
  });

  it('is never asked for a quarantined agent', () => {
    expect(decide(input({ quarantined: true }))).toMatchObject({
      verdict: 'deny',
      reason: 'agent_quarantined',
    });
  });

  it('is never asked for an agent whose budget is spent', () => {
    expect(decide(input({ budget: { reason: 'budget_exceeded', detail: 'spent' } }))).toMatchObject({
      verdict: 'deny',
      reason: 'budget_exceeded',
    });
  });

  it('is not asked for an IP literal', () => {
    const decision = decide(granting(['https://8.8.8.8'], { target: request('GET https://8.8.8.8/') }));
    expect(decision.verdict).toBe('allow');
  });
});

describe('answers shared between requests (the cached resolver hands out one array per name)', () => {
  it('give the same decision each time, and a new answer for the name is judged afresh', () => {
    const cached = ['93.184.216.34'];
    const first = decide(input({ addresses: cached }));
    expect(decide(input({ addresses: cached }))).toEqual(first);
    expect(first).toMatchObject({ verdict: 'allow', address: '93.184.216.34' });
    // The TTL ended and the name now resolves into private space: a new array, refused.
    expect(decide(input({ addresses: ['10.0.0.5'] }))).toMatchObject({
      verdict: 'deny',
      reason: 'forbidden_address',
    });
    // The same answer under other live state (another tenant now owns the address) is judged again too.
    const owned = decide(
      input({ addresses: cached, ownership: [owner('globex', rules('https://93.184.216.34'))] }),
    );
    expect(owned).toMatchObject({ verdict: 'deny', reason: 'cross_tenant' });
  });
});

describe('addresses', () => {
  const internal = (port: number, opened: Opening[]) =>
    granting([`https://10.1.2.0/24:${port}`], {
      target: request(`GET https://10.1.2.3:${port}/`),
      openings: opened,
    });

  it('an opened private range is reachable on the opened port', () => {
    expect(decide(internal(8443, openings('10.1.2.0/24:8443')))).toMatchObject({
      verdict: 'allow',
      address: '10.1.2.3',
    });
  });

  it('an opened private range is refused on another port', () => {
    expect(decide(internal(9443, openings('10.1.2.0/24:8443')))).toMatchObject({
      verdict: 'deny',
      reason: 'forbidden_address',
    });
  });

  it('an opened range does not open the metadata address inside it', () => {
    const decision = decide(
      granting(['http://169.254.169.254'], {
        target: request('GET http://169.254.169.254/latest/meta-data/'),
        openings: openings('169.254.0.0/16'),
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'forbidden_address' });
  });

  it('a name resolving to the metadata address is refused', () => {
    expect(decide(input({ addresses: ['169.254.169.254'] }))).toMatchObject({
      verdict: 'deny',
      reason: 'forbidden_address',
    });
  });

  it('a name whose answers mix public and private addresses is refused', () => {
    // DNS rebinding stages exactly this: the first answer passes, a retry lands on the second.
    for (const addresses of [
      ['93.184.216.34', '10.0.0.1'],
      ['10.0.0.1', '93.184.216.34'],
      ['93.184.216.34', '::1'],
    ]) {
      expect(decide(input({ addresses }))).toMatchObject({ verdict: 'deny', reason: 'forbidden_address' });
    }
  });

  it('an answer that is not a strict address is refused', () => {
    for (const answer of ['localhost', '0x7f.1', '127.1', '2130706433', 'fe80::1%eth0', '']) {
      expect(decide(input({ addresses: [answer] }))).toMatchObject({
        verdict: 'deny',
        reason: 'forbidden_address',
      });
    }
  });

  it('an IPv4-mapped private answer is refused like its IPv4', () => {
    expect(decide(input({ addresses: ['::ffff:127.0.0.1'] }))).toMatchObject({
      verdict: 'deny',
      reason: 'forbidden_address',
    });
  });

  it('a NAT64 answer embedding a private address is refused even with the IPv4 opened', () => {
    const decision = decide(input({ addresses: ['64:ff9b::a00:1'], openings: openings('10.0.0.0/8') }));
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'forbidden_address' });
  });

  it('a loopback literal is refused although the rule names it', () => {
    const decision = decide(
      granting(['http://127.0.0.1:8080'], { target: request('GET http://127.0.0.1:8080/') }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'forbidden_address' });
  });

  it('a name is never matched by an IP rule, whatever it resolves to', () => {
    const decision = decide(
      granting(['https://93.184.216.0/24'], {
        target: request('GET https://www.example.com/'),
        addresses: ['93.184.216.34'],
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'no_matching_rule' });
  });
});

describe('the effective grant', () => {
  it('a ceiling cuts a destination the token and registration allow', () => {
    const decision = decide(
      input({ ceiling: rules('https://files.example.com'), addresses: ['93.184.216.34'] }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'no_matching_rule' });
    if (decision.verdict === 'deny') expect(decision.detail).toContain('ceiling');
  });

  it('a ceiling that holds the destination lets it through', () => {
    const decision = decide(
      input({ ceiling: rules('https://**.example.com'), addresses: ['93.184.216.34'] }),
    );
    expect(decision.verdict).toBe('allow');
  });

  it('a registration narrowed after the token was issued denies what it dropped', () => {
    // The policy apply removed api.example.com; the token, issued before, still names it.
    const decision = decide(
      input({ registration: rules('https://files.example.com'), addresses: ['93.184.216.34'] }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'no_matching_rule' });
    if (decision.verdict === 'deny') expect(decision.detail).toContain('registration');
  });

  it('a registration narrowed to fewer methods denies the dropped method', () => {
    const decision = decide(
      input({
        registration: rules('GET https://api.example.com/v1'),
        target: request('POST https://api.example.com/v1/items'),
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'method_not_allowed' });
  });

  it('sets that name one origin on disjoint paths leave nothing there', () => {
    const decision = decide(
      input({
        token: { tenant: 'acme', agent: 'scraper', egress: rules('GET https://api.example.com/v1') },
        registration: rules('https://api.example.com/v2'),
        target: request('GET https://api.example.com/v1/items'),
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'no_matching_rule' });
  });

  it('a request the token does not grant is denied although the registration does', () => {
    const decision = decide(
      input({
        token: { tenant: 'acme', agent: 'scraper', egress: rules('https://files.example.com') },
        target: request('GET https://api.example.com/v1/items'),
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'no_matching_rule' });
  });

  it('the agent is checked before the destination', () => {
    const decision = decide(input({ quarantined: true, registration: null }));
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'agent_quarantined' });
  });
});

describe('tenants', () => {
  const partner = rules('https://api.example.com');

  it('federation lets the caller reach another tenant’s destination', () => {
    const decision = decide(
      input({ ownership: [owner('globex', partner, partner)], addresses: ['93.184.216.34'] }),
    );
    expect(decision).toMatchObject({ verdict: 'allow', address: '93.184.216.34' });
  });

  it('federation of one path does not open the owner’s other paths', () => {
    const decision = decide(
      input({ ownership: [owner('globex', partner, rules('GET https://api.example.com/v1/public'))] }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'cross_tenant' });
  });

  it('federation does not grant what the token does not', () => {
    const decision = decide(
      input({
        ownership: [owner('globex', rules('https://**.example.com'), rules('https://**.example.com'))],
        target: request('GET https://billing.example.com/'),
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'no_matching_rule' });
  });

  it('a name that resolves into another tenant’s owned range is refused', () => {
    const decision = decide(
      input({
        ownership: [owner('globex', rules('https://10.9.0.0/16'))],
        openings: openings('10.0.0.0/8'),
        addresses: ['10.9.1.1'],
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'cross_tenant' });
  });

  it('an IPv4-mapped literal of another tenant’s owned address is refused', () => {
    const decision = decide(
      granting(['https://[::ffff:10.9.1.1]'], {
        target: request('GET https://[::ffff:10.9.1.1]/'),
        ownership: [owner('globex', rules('https://10.9.0.0/16'))],
        openings: openings('10.0.0.0/8'),
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'cross_tenant' });
  });

  it('an owned address is not revealed while the address check refuses it anyway', () => {
    const decision = decide(
      input({ ownership: [owner('globex', rules('https://10.9.0.0/16'))], addresses: ['10.9.1.1'] }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'forbidden_address' });
  });

  it('an owner federating a service by name opens it although it owns its addresses', () => {
    const decision = decide(
      input({
        ownership: [owner('globex', rules('https://10.9.0.0/16'), rules('https://api.example.com/v1'))],
        openings: openings('10.0.0.0/8'),
        addresses: ['10.9.1.1'],
      }),
    );
    expect(decision).toMatchObject({ verdict: 'allow', address: '10.9.1.1' });
  });

  it('the caller’s own tenant never bars it', () => {
    const decision = decide(
      input({ ownership: [owner('acme', rules('https://api.example.com'))], addresses: ['93.184.216.34'] }),
    );
    expect(decision.verdict).toBe('allow');
  });

  it('the other tenant is not named in the detail', () => {
    const decision = decide(input({ ownership: [owner('globex', partner)] }));
    expect(decision.verdict === 'deny' && decision.detail).not.toContain('globex');
  });
});

describe('CONNECT', () => {
  const tunnelTo = (authority: string, changes: Partial<DecisionInput> = {}) =>
    input({ target: connect(authority), connect: true, ...changes });

  it('to an origin granted whole becomes a plain tunnel', () => {
    expect(decide(tunnelTo('files.example.com:443', { addresses: ['93.184.216.34'] }))).toEqual({
      verdict: 'allow',
      rule: 'https://files.example.com/',
      address: '93.184.216.34',
      tunnel: true,
    });
  });

  it('to an origin granted whole asks for resolution first', () => {
    expect(decide(tunnelTo('files.example.com:443'))).toEqual({
      verdict: 'resolve',
      name: 'files.example.com',
    });
  });

  it('to an origin granted whole by the token but in part by the registration is refused', () => {
    const decision = decide(
      tunnelTo('files.example.com:443', { registration: rules('GET https://files.example.com/public') }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'connect_needs_whole_origin' });
  });

  it('to an origin nothing names is refused as no matching rule', () => {
    expect(decide(tunnelTo('evil.example:443'))).toMatchObject({
      verdict: 'deny',
      reason: 'no_matching_rule',
    });
  });

  it('to another port of a granted origin is refused as no matching rule', () => {
    expect(decide(tunnelTo('files.example.com:8443'))).toMatchObject({
      verdict: 'deny',
      reason: 'no_matching_rule',
    });
  });

  it('on port 80 checks the http origin', () => {
    const decision = decide(
      granting(['http://plain.example.com'], {
        target: connect('plain.example.com:80'),
        connect: true,
        addresses: ['93.184.216.34'],
      }),
    );
    expect(decision).toMatchObject({ verdict: 'allow', rule: 'http://plain.example.com/', tunnel: true });
  });

  it('to an origin another tenant owns in part is refused: the tunnel would reach that part', () => {
    const decision = decide(
      tunnelTo('files.example.com:443', {
        ownership: [owner('globex', rules('https://files.example.com/globex'))],
      }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'connect_needs_whole_origin' });
  });

  it('to an origin another tenant owns whole is refused as cross tenant', () => {
    const decision = decide(
      tunnelTo('files.example.com:443', { ownership: [owner('globex', rules('https://*.example.com'))] }),
    );
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'cross_tenant' });
  });

  it('to an origin another tenant owns and federates whole is a tunnel', () => {
    const whole = rules('https://files.example.com');
    const decision = decide(
      tunnelTo('files.example.com:443', {
        ownership: [owner('globex', whole, whole)],
        addresses: ['93.184.216.34'],
      }),
    );
    expect(decision).toMatchObject({ verdict: 'allow', tunnel: true });
  });

  it('to an origin resolving to a private address is refused', () => {
    expect(decide(tunnelTo('files.example.com:443', { addresses: ['192.168.1.10'] }))).toMatchObject({
      verdict: 'deny',
      reason: 'forbidden_address',
    });
  });
});

describe('malformed input', () => {
  it.each([
    ['null', null],
    ['a number', 42],
    ['an empty object', {}],
    ['a token without egress', { ...input(), token: { tenant: 'acme', agent: 'scraper' } }],
    ['a quarantine flag that is not a boolean', { ...input(), quarantined: 'no' }],
    ['a ceiling that is not a rule set', { ...input(), ceiling: ['https://example.com'] }],
    ['an undefined registration', { ...input(), registration: undefined }],
    ['DNS answers that are not strings', { ...input(), addresses: [[127, 0, 0, 1]] }],
    [
      'a target with a wrong-length address',
      {
        ...input(),
        target: { ...request('GET https://8.8.8.8/'), host: { kind: 'ip', family: 4, bytes: [8, 8, 8] } },
      },
    ],
    [
      'a target with a port out of range',
      { ...input(), target: { ...request('GET https://api.example.com/v1'), port: 0 } },
    ],
    ['ownership that is not a list', { ...input(), ownership: {} }],
    [
      'a throwing getter',
      Object.defineProperty({ ...input() }, 'target', {
        get: () => {
          throw new Error('boom');
        },
      }),
    ],
  ])('%s is refused as decision_failed', (_name, value) => {
    expect(decide(value as unknown as DecisionInput)).toMatchObject({
      verdict: 'deny',
      reason: 'decision_failed',
    });
  });
});

// ---- property --------------------------------------------------------------------------------

const ANSWERS = [
  '93.184.216.34',
  '2606:4700::1111',
  '::ffff:8.8.8.8',
  '10.0.0.7',
  '10.0.0.200',
  'fd00::5',
  '192.168.1.1',
  '127.0.0.1',
  '::1',
  '::ffff:10.0.0.7',
  '169.254.169.254',
  '100.100.100.200',
  '64:ff9b::a00:7',
  'not-an-address',
];
/** Public answers often enough that some names pass, the rest from the whole list. */
const answer = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom('93.184.216.34', '2606:4700::1111', '::ffff:8.8.8.8') },
  { weight: 2, arbitrary: fc.constantFrom(...ANSWERS) },
);
const OPENINGS = openings(
  '10.0.0.0/24',
  '10.0.0.0/25:443',
  '[fd00::/120]:8443',
  '169.254.0.0/16',
  '192.168.0.0/16:80',
);

/** Whole-origin rule in the set for the target's origin (what a plain tunnel needs). */
function grantsWhole(set: RuleSet, target: Target): boolean {
  return findMatch(set, { ...target, method: '', path: [] }) !== null;
}

/**
 * Three sets that overlap often enough for every outcome to occur: either the egress
 * arbitraries' overlapping sets around one seed request, or a token whose registration and
 * ceiling are the token itself, the token plus other rules, or unrelated rules.
 */
const derived = (choice: 'same' | 'wider' | Rule[], token: Rule[], extra: Rule[]): Rule[] =>
  choice === 'same' ? token : choice === 'wider' ? [...token, ...extra] : choice;
const derivation = fc.oneof(
  { weight: 3, arbitrary: fc.constant('same' as const) },
  { weight: 3, arbitrary: fc.constant('wider' as const) },
  { weight: 2, arbitrary: ruleSet },
);

/** A rule that grants `x` (any method or its own; its path or a prefix of it). */
function grantFor(x: Target): fc.Arbitrary<Rule> {
  const host =
    x.host.kind === 'name'
      ? x.host.name
      : x.host.family === 4
        ? x.host.bytes.join('.')
        : `[${formatAddress(x.host.bytes)}]`;
  return fc
    .record({ anyMethod: fc.boolean(), keep: fc.integer({ min: 0, max: x.path.length }) })
    .map(({ anyMethod, keep }) => {
      const methods = anyMethod ? '' : `${x.method} `;
      const path = x.path.slice(0, keep).filter((segment) => segment !== '');
      return rules(`${methods}${x.scheme}://${host}:${x.port}/${path.join('/')}`).rules[0] as Rule;
    });
}

const grants = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({ token: ruleSet, registration: derivation, ceiling: derivation, extra: ruleSet, target })
      .chain(({ token, registration, ceiling, extra, target }) =>
        grantFor(target).map((granted) => {
          const withGrant = [...token, granted];
          return {
            token: withGrant,
            registration: derived(registration, withGrant, extra),
            ceiling: derived(ceiling, withGrant, extra),
            target,
          };
        }),
      ),
  },
  {
    weight: 1,
    arbitrary: setsAndTarget(3).map(([[token = [], registration = [], ceiling = []], target]) => ({
      token,
      registration,
      ceiling,
      target,
    })),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({ token: ruleSet, registration: derivation, ceiling: derivation, extra: ruleSet })
      .chain(({ token, registration, ceiling, extra }) =>
        targetNear(token).map((target) => ({
          token,
          registration: derived(registration, token, extra),
          ceiling: derived(ceiling, token, extra),
          target,
        })),
      ),
  },
);

const scenario = fc
  .record({
    grants,
    registered: fc.option(fc.constant(true), { nil: false, freq: 8 }),
    ceilinged: fc.boolean(),
    owners: fc.array(fc.record({ owns: ruleSet, federated: fc.option(ruleSet, { nil: null }) }), {
      maxLength: 2,
    }),
    quarantined: fc.option(fc.constant(false), { nil: true, freq: 10 }),
    connect: fc.boolean(),
    addresses: fc.option(fc.array(answer, { maxLength: 3 }), { nil: undefined, freq: 6 }),
    openings: fc.subarray(OPENINGS),
  })
  .map((s): DecisionInput => {
    const { token, registration, ceiling, target } = s.grants;
    return {
      token: { tenant: 'acme', agent: 'scraper', egress: compileRuleSet(token) },
      registration: s.registered ? compileRuleSet(registration) : null,
      quarantined: s.quarantined,
      ceiling: s.ceilinged ? compileRuleSet(ceiling) : null,
      ownership: s.owners.map((o, i) =>
        owner(
          `other-${i}`,
          compileRuleSet(o.owns),
          o.federated === null ? null : compileRuleSet(o.federated),
        ),
      ),
      target: s.connect ? { ...target, method: 'CONNECT', path: [] } : target,
      connect: s.connect,
      openings: s.openings,
      ...(s.addresses === undefined ? {} : { addresses: s.addresses }),
    };
  });

describe('decide, on generated grants, targets and answers', () => {
  it('never throws, and allows only what every set grants, at a public or opened address', () => {
    const seen = { allow: 0, tunnel: 0, resolve: 0, deny: 0 };
    fc.assert(
      fc.property(scenario, (x) => {
        const decision = decide(x);
        seen[decision.verdict === 'allow' && decision.tunnel ? 'tunnel' : decision.verdict]++;
        const sets = [x.token.egress, x.registration, x.ceiling].filter((s): s is RuleSet => s !== null);
        if (decision.verdict === 'deny') {
          expect(isDenyReason(decision.reason)).toBe(true);
          expect(decision.reason).not.toBe('decision_failed');
          return;
        }
        expect(x.quarantined).toBe(false);
        expect(x.registration).not.toBeNull();
        if (x.connect) for (const set of sets) expect(grantsWhole(set, x.target)).toBe(true);
        else for (const set of sets) expect(matchRules(set, x.target)).toBe(true);
        for (const o of x.ownership) {
          if (x.connect || !matchRules(o.owns, x.target)) continue;
          expect(o.federatedToCaller !== null && matchRules(o.federatedToCaller, x.target)).toBe(true);
        }
        if (decision.verdict === 'resolve') {
          expect(x.target.host.kind === 'name' && x.addresses === undefined).toBe(true);
          return;
        }
        const { address } = decision;
        expect(classifyAddress(address).public || isOpened(x.openings, address, x.target.port)).toBe(true);
        expect(decision.tunnel).toBe(x.connect);
        if (x.target.host.kind === 'name') {
          for (const answer of x.addresses ?? []) {
            expect(classifyAddress(answer).public || isOpened(x.openings, answer, x.target.port)).toBe(true);
          }
        }
      }),
      { numRuns: 5_000 },
    );
    // A property over decisions that never allow proves nothing: every outcome must occur.
    expect(seen.allow).toBeGreaterThan(50);
    expect(seen.tunnel).toBeGreaterThan(10);
    expect(seen.resolve).toBeGreaterThan(30);
    expect(seen.deny).toBeGreaterThan(50);
  });

  it('never throws on arbitrary values', () => {
    fc.assert(
      fc.property(fc.anything(), fc.anything(), (a, b) => {
        const decision = decide({ ...input(), target: a, addresses: b } as unknown as DecisionInput);
        expect(['allow', 'resolve', 'deny']).toContain(decision.verdict);
      }),
      { numRuns: 1_000 },
    );
  });
});

describe('a spent budget', () => {
  const spent = { reason: 'budget_exceeded', detail: 'spent' } as const;

  it('stops a request the grant allows', () => {
    expect(decide(input({ budget: spent, addresses: ['93.184.216.34'] }))).toMatchObject({
      verdict: 'deny',
      reason: 'budget_exceeded',
      detail: 'spent',
    });
  });

  it('leaves a request the grant refuses its own reason, for the audit trail and monitoring', () => {
    const decision = decide(input({ budget: spent, target: request('GET https://evil.example/exfil') }));
    expect(decision).toMatchObject({ verdict: 'deny', reason: 'no_matching_rule' });
  });

  it('comes after quarantine: a quarantined agent is told so', () => {
    expect(decide(input({ budget: spent, quarantined: true }))).toMatchObject({
      reason: 'agent_quarantined',
    });
  });
});
