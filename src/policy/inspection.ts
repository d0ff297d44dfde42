// Which rules need an inspected tunnel to be honoured (PURE). Clients send CONNECT for every
// https:// URL, so a method- or path-scoped https rule (`POST,GET https://api.stripe.com/v1/`)
// can only hold if the gateway terminates TLS and checks each request inside; an origin the
// agent is granted whole (any method, path /) stays a plain, end-to-end TLS tunnel. With
// REINS_GATEWAY_INTERCEPT=never such rules cannot be honoured: the gateway refuses the CONNECT
// (`connect_needs_whole_origin`), so plan says so before apply.
import { formatRule, parseRule, type Rule, rulesCover } from '../egress/index.ts';
import type { PolicyModel } from './model.ts';

export type InterceptMode = 'auto' | 'always' | 'never';

export interface InspectionNote {
  readonly tenant: string;
  readonly agent: string;
  /** The scoped rule, canonical text. */
  readonly rule: string;
}

/** Every agent's https rules that are scoped on an origin it is not granted whole. */
export function rulesNeedingInspection(model: PolicyModel): InspectionNote[] {
  const notes: InspectionNote[] = [];
  for (const tenant of model.tenants) {
    for (const agent of tenant.agents) {
      const rules = parseAll(agent.effectiveEgress);
      for (const rule of rules) {
        if (rule.scheme !== 'https' || (rule.methods === null && rule.path.length === 0)) continue;
        const whole: Rule = { ...rule, methods: null, path: [] };
        if (rulesCover(rules, whole)) continue;
        notes.push({ tenant: tenant.id, agent: agent.clientId, rule: formatRule(rule) });
      }
    }
  }
  return notes;
}

/** The notes as text for `reins policy plan`; '' when no rule needs inspection. */
export function formatInspectionNotes(notes: readonly InspectionNote[], mode: InterceptMode): string {
  if (notes.length === 0) return '';
  const lines = [
    mode === 'never'
      ? 'REINS_GATEWAY_INTERCEPT=never: these rules are scoped to methods or paths on https, so their origins are REFUSED (connect_needs_whole_origin):'
      : `These rules are scoped to methods or paths on https: the gateway inspects CONNECT tunnels to their origins (REINS_GATEWAY_INTERCEPT=${mode}; agents must trust the interception CA, see docs/agents.md):`,
  ];
  for (const note of notes) lines.push(`  ${note.tenant} agent ${note.agent}: ${note.rule}`);
  return `${lines.join('\n')}\n`;
}

function parseAll(texts: readonly string[]): Rule[] {
  const rules: Rule[] = [];
  for (const text of texts) {
    const parsed = parseRule(text);
    if (parsed.ok) rules.push(parsed.rule);
  }
  return rules;
}
