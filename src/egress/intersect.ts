// Set algebra over rules: containment, intersection and simplification.
//
// Intersection is exact and closed. For single rules every component intersects exactly
// (schemes and ports are equal or disjoint, method sets intersect, host patterns nest or are
// disjoint, path prefixes nest or diverge), so a ∩ b is again one rule or nothing. For sets,
// A ∩ B = ⋃ { a ∩ b | a ∈ A, b ∈ B }, which matches x exactly when some a and some b both match
// x, i.e. when A and B both match x. Delegation rests on this: a delegated token can never
// reach anything one of its parents could not.

import { formatRule } from './format.ts';
import { ancestorsOf, anchorOf, hostContains, intersectHosts, maskBytes } from './host.ts';
import { intersectPaths, pathMatches } from './path.ts';
import type { Rule } from './rule.ts';

function intersectMethods(
  a: readonly string[] | null,
  b: readonly string[] | null,
): readonly string[] | null | 'none' {
  if (a === null) return b;
  if (b === null) return a;
  const both = a.filter((method) => b.includes(method));
  return both.length === 0 ? 'none' : both;
}

export function intersectRule(a: Rule, b: Rule): Rule | null {
  if (a.scheme !== b.scheme || a.port !== b.port) return null;
  const methods = intersectMethods(a.methods, b.methods);
  if (methods === 'none') return null;
  const host = intersectHosts(a.host, b.host);
  if (host === null) return null;
  const path = intersectPaths(a.path, b.path);
  if (path === null) return null;
  return { methods, scheme: a.scheme, host, port: a.port, path };
}

/** Does every request that `inner` matches also match `outer`? */
export function ruleContains(outer: Rule, inner: Rule): boolean {
  return (
    outer.scheme === inner.scheme &&
    outer.port === inner.port &&
    (outer.methods === null || (inner.methods?.every((m) => outer.methods?.includes(m)) ?? false)) &&
    pathMatches(outer.path, inner.path) &&
    hostContains(outer.host, inner.host)
  );
}

/**
 * Rules indexed by the DNS name their host is anchored at. Two name patterns can only overlap
 * when one anchor is an ancestor-or-self of the other, so candidates for a rule are found by a
 * few map probes instead of a scan of the whole set.
 */
class AnchorIndex {
  private readonly byAnchor = new Map<string, Rule[]>();
  private readonly byAncestor = new Map<string, Rule[]>();
  private readonly ip: Rule[] = [];

  constructor(rules: readonly Rule[]) {
    for (const rule of rules) {
      const anchor = anchorOf(rule.host);
      if (anchor === null) {
        this.ip.push(rule);
        continue;
      }
      add(this.byAnchor, anchor, rule);
      for (const ancestor of ancestorsOf(anchor)) add(this.byAncestor, ancestor, rule);
    }
  }

  /** Rules whose host may contain `rule`'s host: same or ancestor anchor. */
  *containerCandidates(rule: Rule): Iterable<Rule> {
    const anchor = anchorOf(rule.host);
    if (anchor === null) {
      yield* this.ip;
      return;
    }
    yield* this.byAnchor.get(anchor) ?? [];
    for (const ancestor of ancestorsOf(anchor)) yield* this.byAnchor.get(ancestor) ?? [];
  }

  /** Rules whose host may overlap `rule`'s host in any way. */
  *overlapCandidates(rule: Rule): Iterable<Rule> {
    yield* this.containerCandidates(rule);
    const anchor = anchorOf(rule.host);
    if (anchor !== null) yield* this.byAncestor.get(anchor) ?? [];
  }
}

/**
 * Rules indexed for containment: by scheme, port and host (anchor, or IP network and prefix),
 * then by path in a trie. A rule's containers have the same scheme and port, a host anchored at
 * its anchor or an ancestor (or a CIDR around its network), and a path that is a prefix of its
 * own, so they are found by walking its path once per candidate host. simplifyRules needs this:
 * comparing every pair of rules on one host is quadratic, and an agent chooses how many
 * locations it requests (20,000 rules on one host took ~20 s, a denial of service of the token
 * endpoint).
 */
class ContainmentIndex {
  private readonly roots = new Map<string, PathNode>();

  constructor(rules: readonly Rule[]) {
    for (const rule of rules) {
      let node = childOf(this.roots, `${rule.scheme}:${rule.port} ${hostKey(rule.host)}`);
      for (const segment of rule.path) node = childOf(node.children, segment);
      node.rules.push(rule);
    }
  }

  /** Every rule that may contain `rule` (a superset; ruleContains decides). */
  *containerCandidates(rule: Rule): Iterable<Rule> {
    for (const host of containerHostKeys(rule.host)) {
      let node = this.roots.get(`${rule.scheme}:${rule.port} ${host}`);
      if (node === undefined) continue;
      yield* node.rules;
      for (const segment of rule.path) {
        node = node.children.get(segment);
        if (node === undefined) break;
        yield* node.rules;
      }
    }
  }
}

interface PathNode {
  readonly rules: Rule[];
  readonly children: Map<string, PathNode>;
}

function childOf(children: Map<string, PathNode>, key: string): PathNode {
  let node = children.get(key);
  if (node === undefined) {
    node = { rules: [], children: new Map() };
    children.set(key, node);
  }
  return node;
}

function hostKey(host: Rule['host']): string {
  return host.kind === 'ip'
    ? `ip${host.family}/${host.prefix}/${host.bytes.join('.')}`
    : `n:${anchorOf(host)}`;
}

/** The keys of every host pattern that may contain `host`. */
function containerHostKeys(host: Rule['host']): string[] {
  if (host.kind === 'ip') {
    const keys: string[] = [];
    for (let prefix = 0; prefix <= host.prefix; prefix++)
      keys.push(`ip${host.family}/${prefix}/${maskBytes(host.bytes, prefix).join('.')}`);
    return keys;
  }
  const anchor = anchorOf(host) as string;
  return [anchor, ...ancestorsOf(anchor)].map((name) => `n:${name}`);
}

function add(map: Map<string, Rule[]>, key: string, rule: Rule): void {
  const list = map.get(key);
  if (list) list.push(rule);
  else map.set(key, [rule]);
}

/** A ∩ B, simplified. */
export function intersectRules(a: readonly Rule[], b: readonly Rule[]): Rule[] {
  const index = new AnchorIndex(b);
  const out: Rule[] = [];
  for (const left of a) {
    for (const right of index.overlapCandidates(left)) {
      const both = intersectRule(left, right);
      if (both !== null) out.push(both);
    }
  }
  return simplifyRules(out);
}

/**
 * The same set of requests, written canonically: rules that differ only in methods merged,
 * rules contained in another dropped, the rest sorted by their text. Two rule lists that
 * simplify to the same list match the same requests (the converse need not hold: a union can
 * cover a rule that no single rule contains).
 */
export function simplifyRules(rules: readonly Rule[]): Rule[] {
  const merged = new Map<string, Rule>();
  for (const rule of rules) {
    const key = formatRule({ ...rule, methods: null });
    const seen = merged.get(key);
    if (seen === undefined) merged.set(key, rule);
    else merged.set(key, { ...seen, methods: unionMethods(seen.methods, rule.methods) });
  }
  const distinct = [...merged.values()];
  const index = new ContainmentIndex(distinct);
  const kept = distinct.filter((rule) => {
    for (const other of index.containerCandidates(rule))
      if (other !== rule && ruleContains(other, rule)) return false;
    return true;
  });
  return kept
    .map((rule) => ({ rule, text: formatRule(rule) }))
    .sort((x, y) => (x.text < y.text ? -1 : x.text > y.text ? 1 : 0))
    .map(({ rule }) => rule);
}

function unionMethods(a: readonly string[] | null, b: readonly string[] | null): readonly string[] | null {
  if (a === null || b === null) return null;
  return [...new Set([...a, ...b])].sort();
}

/**
 * Does the set certainly match everything `rule` matches? Conservative: true when one rule of
 * the (simplified) set contains it, which misses covers that need several rules together.
 */
export function rulesCover(set: readonly Rule[], rule: Rule): boolean {
  const simplified = simplifyRules([...set]);
  return simplified.some((outer) => ruleContains(outer, rule));
}
