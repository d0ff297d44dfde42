// Matching a normalised request against rules. A RuleSet indexes rules by host so that a
// lookup costs a few map probes (one per label of the request's host) instead of a scan.
import { hostMatches, type TargetHost } from './host.ts';
import { pathMatches } from './path.ts';
import type { Rule, Scheme } from './rule.ts';

/** A request, normalised by normaliseTarget (target.ts). */
export interface Target {
  readonly method: string;
  readonly scheme: Scheme;
  readonly host: TargetHost;
  readonly port: number;
  /** Canonical segments after dot-segment removal; the query is not part of matching. */
  readonly path: readonly string[];
}

export function matchRule(rule: Rule, target: Target): boolean {
  return (
    rule.scheme === target.scheme &&
    rule.port === target.port &&
    (rule.methods === null || rule.methods.includes(target.method)) &&
    hostMatches(rule.host, target.host) &&
    pathMatches(rule.path, target.path)
  );
}

export interface RuleSet {
  readonly rules: readonly Rule[];
  readonly byName: ReadonlyMap<string, readonly Rule[]>;
  readonly oneLabel: ReadonlyMap<string, readonly Rule[]>;
  readonly anyDepth: ReadonlyMap<string, readonly Rule[]>;
  readonly ip: readonly Rule[];
}

export function compileRuleSet(rules: readonly Rule[]): RuleSet {
  const byName = new Map<string, Rule[]>();
  const oneLabel = new Map<string, Rule[]>();
  const anyDepth = new Map<string, Rule[]>();
  const ip: Rule[] = [];
  for (const rule of rules) {
    const host = rule.host;
    if (host.kind === 'ip') ip.push(rule);
    else if (host.kind === 'name') push(byName, host.name, rule);
    else push(host.depth === 'one' ? oneLabel : anyDepth, host.base, rule);
  }
  return { rules, byName, oneLabel, anyDepth, ip };
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/**
 * A rule that matches the target, or null. The most specific host wins: an exact name, then a
 * one-label wildcard, then any-depth wildcards from the nearest base outwards.
 */
export function findMatch(set: RuleSet, target: Target): Rule | null {
  if (target.host.kind === 'ip') return firstMatch(set.ip, target);
  const name = target.host.name;
  let found = firstMatch(set.byName.get(name), target);
  // Walk the proper ancestors without allocating a list: this is the gateway's hot path.
  let dot = name.indexOf('.');
  if (found === null && dot >= 0) found = firstMatch(set.oneLabel.get(name.slice(dot + 1)), target);
  for (; found === null && dot >= 0; dot = name.indexOf('.', dot + 1)) {
    if (set.anyDepth.size === 0) break;
    found = firstMatch(set.anyDepth.get(name.slice(dot + 1)), target);
  }
  return found;
}

function firstMatch(candidates: readonly Rule[] | undefined, target: Target): Rule | null {
  for (const rule of candidates ?? []) if (matchRule(rule, target)) return rule;
  return null;
}

/** Does any rule match? (The set's semantics: a set matches when any one of its rules does.) */
export function matchRules(rules: readonly Rule[] | RuleSet, target: Target): boolean {
  const set = 'byName' in rules ? rules : compileRuleSet(rules);
  return findMatch(set, target) !== null;
}
