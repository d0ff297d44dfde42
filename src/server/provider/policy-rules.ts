// The applied policy's rule texts as rules, parsed once per policy version instead of once per
// token request (STYLE.md: canonicalise once).
//
// The policy model is read-only and never changed in place: an apply makes ClientRegistry build
// a new model (ClientRegistry.reload), with new arrays. So a parse keyed on the array of rule texts
// the model holds (an agent's effective egress, an integration's rules, the tenant's ceiling) is
// valid for as long as that array is reachable, and the WeakMap lets a superseded policy's rules
// go with it. (A list built per request, such as a user's rights unioned over the rules they
// match, is parsed each time it is built, and its entry goes with it.)
import { parseRule, type Rule } from '../../egress/index.ts';

const parsed = new WeakMap<readonly string[], readonly Rule[]>();

/**
 * The rules of `texts`. The policy model holds canonical rule text written by formatRule, so
 * parsing cannot fail; a rule that does not parse is dropped rather than widening anything.
 */
export function policyRules(texts: readonly string[]): readonly Rule[] {
  let rules = parsed.get(texts);
  if (rules === undefined) {
    rules = Object.freeze(parseAll(texts));
    parsed.set(texts, rules);
  }
  return rules;
}

function parseAll(texts: readonly string[]): Rule[] {
  const rules: Rule[] = [];
  for (const text of texts) {
    const result = parseRule(text);
    if (result.ok) rules.push(result.rule);
  }
  return rules;
}
