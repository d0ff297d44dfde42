// Grant lists → rules. An entry of a grant (agent or user egress, the ceiling, owns, federation)
// is either the name of one of the tenant's integrations or a destination rule; every rule is
// parsed here, once, and kept canonical from then on (STYLE.md: canonicalise once).
import { parseRule, type Rule, simplifyRules } from '../egress/index.ts';
import { describe } from './describe.ts';
import { type Diagnostic, error, type Position } from './diagnostic.ts';
import type { NodePath } from './document.ts';
import { didYouMean } from './suggest.ts';
import type { Located } from './tenants.ts';

/** An integration name, as opposed to a rule (a rule always has `://`). */
const INTEGRATION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export interface GrantItem {
  readonly text: string;
  readonly at: Position;
  /** The integration this entry named, or null for a rule written inline. */
  readonly integration: string | null;
  /** What the entry stands for (empty when it did not parse or resolve). */
  readonly rules: readonly Rule[];
}

export interface ResolvedGrant {
  readonly items: readonly GrantItem[];
  /** All entries' rules, simplified (deduplicated, contained rules dropped). */
  readonly rules: readonly Rule[];
  /** Integration names used, sorted. */
  readonly integrations: readonly string[];
}

export interface GrantContext {
  readonly tenant: string;
  readonly integrations: ReadonlyMap<string, readonly Rule[]>;
  /**
   * Whether every file of the tenant passed the schema. When one did not, its integrations are
   * unknown, so "unknown integration" errors would be noise: they are left out until it is fixed.
   */
  readonly complete: boolean;
}

/** Parses one rule written at `path`; an error points at the exact column inside the string. */
export function parseRuleAt(
  located: Located<unknown>,
  path: NodePath,
  text: string,
): { rule: Rule; diagnostic: null } | { rule: null; diagnostic: Diagnostic } {
  const parsed = parseRule(text);
  if (parsed.ok) return { rule: parsed.rule, diagnostic: null };
  const at = located.file.locateInString(path, parsed.error.column);
  return {
    rule: null,
    diagnostic: error(at, `invalid rule '${text}' in ${describe(path)}: ${parsed.error.message}`),
  };
}

/** The tenant's integrations as rules; rules that do not parse are reported and left out. */
export function parseIntegrations(
  integrations: ReadonlyMap<string, Located<readonly string[]>>,
  out: Diagnostic[],
): Map<string, Rule[]> {
  const parsed = new Map<string, Rule[]>();
  for (const [name, located] of integrations) {
    const rules: Rule[] = [];
    located.value.forEach((text, i) => {
      const result = parseRuleAt(located, [...located.path, i], text);
      if (result.rule) rules.push(result.rule);
      else out.push(result.diagnostic);
    });
    parsed.set(name, simplifyRules(rules));
  }
  return parsed;
}

export function resolveGrant(
  located: Located<readonly string[]>,
  context: GrantContext,
  out: Diagnostic[],
): ResolvedGrant {
  const items: GrantItem[] = located.value.map((text, i) => {
    const path = [...located.path, i];
    const at = located.file.locate(path);
    if (!text.includes('://') && INTEGRATION_NAME.test(text)) {
      const rules = context.integrations.get(text);
      if (rules) return { text, at, integration: text, rules };
      if (context.complete) out.push(error(at, unknownIntegration(text, path, context)));
      return { text, at, integration: text, rules: [] };
    }
    const result = parseRuleAt(located, path, text);
    if (result.diagnostic) out.push(result.diagnostic);
    return { text, at, integration: null, rules: result.rule ? [result.rule] : [] };
  });
  const integrations = [
    ...new Set(items.flatMap((item) => (item.integration ? [item.integration] : []))),
  ].sort();
  return { items, rules: simplifyRules(items.flatMap((item) => item.rules)), integrations };
}

function unknownIntegration(name: string, path: NodePath, context: GrantContext): string {
  const known = [...context.integrations.keys()].sort();
  const knownText =
    known.length === 0
      ? `tenant '${context.tenant}' defines no integrations`
      : `integrations of tenant '${context.tenant}': ${known.join(', ')}`;
  return (
    `unknown integration '${name}' in ${describe(path)}${didYouMean(name, known)} (${knownText}); ` +
    `to allow a destination directly, write a rule such as 'https://${name}/'`
  );
}
