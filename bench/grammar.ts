// bench/grammar: what matching and intersection cost as rule sets grow (1, 10, 100, 1,000
// rules). Baselines, in the same run: a linear scan with matchRule for matching, and the naive
// all-pairs intersection (every a ∩ b, then simplified) for intersection.
import {
  compileRuleSet,
  findMatch,
  intersectRule,
  intersectRules,
  matchRule,
  normaliseTarget,
  parseRule,
  type Rule,
  simplifyRules,
  type Target,
} from '../src/egress/index.ts';
import { formatRate, measure, table } from './harness.ts';

function rule(text: string): Rule {
  const result = parseRule(text);
  if (!result.ok) throw new Error(`${text}: ${result.error.message}`);
  return result.rule;
}

/** A realistic grant: mostly exact API hosts with path prefixes, some wildcards, a few CIDRs. */
function grant(size: number, seed: number): Rule[] {
  const rules: Rule[] = [];
  for (let i = 0; i < size; i++) {
    const n = (i * 7919 + seed) % 100_000;
    const kind = i % 10;
    if (kind < 6) rules.push(rule(`GET,POST https://api${n}.vendor${n % 97}.com/v${n % 3}/`));
    else if (kind < 8) rules.push(rule(`https://*.vendor${n % 97}.com/`));
    else if (kind < 9) rules.push(rule(`GET https://**.docs${n % 89}.org/`));
    else rules.push(rule(`https://10.${n % 256}.${(n >> 8) % 256}.0/24`));
  }
  return rules;
}

function target(text: string): Target {
  const [method = 'GET', host = '', path = '/'] = text.split(' ');
  const result = normaliseTarget({ method, scheme: 'https', host, path });
  if (!result.ok) throw new Error(result.message);
  return result.target;
}

const requests = [
  target('GET api7919.vendor62.com /v1/charges'),
  target('POST www.vendor5.com /x'),
  target('GET a.b.docs3.org /wiki'),
  target('GET nowhere.example.net /'),
  target('GET 10.1.2.3 /'),
];

const sizes = [1, 10, 100, 1_000];
const matchRows: string[][] = [];
const intersectRows: string[][] = [];

for (const size of sizes) {
  const rules = grant(size, 1);
  const set = compileRuleSet(rules);
  let i = 0;
  const linear = measure(`linear ${size}`, () => {
    const x = requests[i++ % requests.length] as Target;
    return rules.find((r) => matchRule(r, x));
  });
  const indexed = measure(`indexed ${size}`, () => findMatch(set, requests[i++ % requests.length] as Target));
  matchRows.push([
    String(size),
    formatRate(linear.opsPerSecond),
    formatRate(indexed.opsPerSecond),
    `${(indexed.opsPerSecond / linear.opsPerSecond).toFixed(1)}×`,
  ]);

  // The user's rights ∩ the agent's grant: overlapping but different sets of the same size.
  const other = grant(size, 2).concat(rules.slice(0, Math.ceil(size / 2)));
  const naive = measure(
    `all-pairs ${size}`,
    () => {
      const out: Rule[] = [];
      for (const a of rules)
        for (const b of other) {
          const both = intersectRule(a, b);
          if (both !== null) out.push(both);
        }
      return simplifyRules(out);
    },
    size >= 1_000 ? 1_500 : 400,
  );
  const indexedIntersection = measure(
    `indexed ∩ ${size}`,
    () => intersectRules(rules, other),
    size >= 1_000 ? 1_500 : 400,
  );
  intersectRows.push([
    String(size),
    formatRate(naive.opsPerSecond),
    formatRate(indexedIntersection.opsPerSecond),
    `${(indexedIntersection.opsPerSecond / naive.opsPerSecond).toFixed(1)}×`,
  ]);
}

console.log('\n### bench/grammar: matching one request (rule set size vs rate)\n');
console.log(table(['rules', 'linear scan (baseline)', 'indexed RuleSet', 'ratio'], matchRows));
console.log('\n### bench/grammar: intersecting two rule sets of that size\n');
console.log(
  table(['rules', 'all pairs (baseline)', 'anchor-indexed intersectRules', 'ratio'], intersectRows),
);
