// The token format both sides speak: rules ⇄ RFC 9396 `authorization_details` entries of type
// `egress` (SPEC.md, "Tokens"; docs/tokens.md). The authorization server writes a grant with
// formatEgressDetails and reads what an agent asks for with parseEgressDetails; the gateway reads
// a verified token's grant with parseEgressDetails too, so what is enforced is exactly what was
// issued. PURE: no I/O; a refusal is a value, never an exception.
//
// An entry is `{ type: 'egress', locations: [rule without methods…], actions?: [METHOD…] }`;
// no `actions` means any method. Every location goes through parseRule with the entry's methods
// in front, so an entry is read by the same grammar, with the same canonicalisation, as a rule
// written in a policy. Methods are case-sensitive (RFC 9110 §9.1, docs/decisions.md): `post` in
// `actions` is refused with "write POST", never upper-cased, or an agent could be granted a
// method nobody wrote.
import { formatRule } from './format.ts';
import { simplifyRules } from './intersect.ts';
import { parseRule } from './parse.ts';
import type { Rule } from './rule.ts';

/** RFC 9396 entry of type `egress` (SPEC.md, "Tokens"). */
export interface EgressDetail {
  readonly type: 'egress';
  /** Rules without methods, canonical text. */
  readonly locations: readonly string[];
  /** Methods; absent when any method is allowed. */
  readonly actions?: readonly string[];
}

/** The rules a list of `egress` entries stands for, or what is wrong with the first bad entry. */
export type EgressDetailsParse =
  | { readonly ok: true; readonly rules: Rule[] }
  | { readonly ok: false; readonly message: string };

/**
 * The rules of `details` (each must be an `egress` entry; pick those out first where other types
 * may appear). The message names the entry by index and, where it applies, the location.
 */
export function parseEgressDetails(details: readonly unknown[]): EgressDetailsParse {
  const rules: Rule[] = [];
  for (const [index, detail] of details.entries()) {
    const checked = checkEgressDetail(detail);
    if (!checked.ok) return { ok: false, message: `entry ${index}: ${checked.message}` };
    const methods = checked.actions === undefined ? '' : `${checked.actions.join(',')} `;
    for (const location of checked.locations) {
      const parsed = parseRule(`${methods}${location}`);
      if (!parsed.ok) {
        // A mistake within the methods' prefix is one in `actions`, not in the location.
        const where = parsed.error.column <= methods.length ? 'actions' : location;
        return { ok: false, message: `entry ${index}: ${where}: ${parsed.error.message}` };
      }
      rules.push(parsed.rule);
    }
  }
  return { ok: true, rules };
}

/** One entry per distinct method set; `actions` omitted for "any method". Deterministic order. */
export function formatEgressDetails(rules: readonly Rule[]): EgressDetail[] {
  const groups = new Map<string, { methods: readonly string[] | null; locations: string[] }>();
  for (const rule of simplifyRules(rules)) {
    const key = rule.methods === null ? '' : rule.methods.join(',');
    const group = groups.get(key) ?? { methods: rule.methods, locations: [] };
    group.locations.push(formatRule({ ...rule, methods: null }));
    groups.set(key, group);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, { methods, locations }]) =>
      methods === null
        ? { type: 'egress', locations: locations.sort() }
        : { type: 'egress', locations: locations.sort(), actions: methods },
    );
}

export type EgressDetailCheck =
  | {
      readonly ok: true;
      readonly locations: readonly string[];
      readonly actions: readonly string[] | undefined;
    }
  | { readonly ok: false; readonly message: string };

const DETAIL_MEMBERS = new Set(['type', 'locations', 'actions']);

/**
 * The shape of one `egress` entry (what parseEgressDetails reads each entry with; also
 * oidc-provider's RAR type validator). The grammar of locations and methods is parseRule's.
 */
export function checkEgressDetail(detail: unknown): EgressDetailCheck {
  if (typeof detail !== 'object' || detail === null || Array.isArray(detail)) {
    return { ok: false, message: 'must be an object' };
  }
  const entry = detail as Record<string, unknown>;
  if (entry.type !== 'egress') return { ok: false, message: 'type must be "egress"' };
  for (const member of Object.keys(entry)) {
    if (!DETAIL_MEMBERS.has(member)) return { ok: false, message: `unknown member ${member}` };
  }
  const { locations, actions } = entry;
  if (!isStringList(locations) || locations.length === 0) {
    return { ok: false, message: 'locations must be a non-empty list of rules without methods' };
  }
  for (const location of locations) {
    if (/\s/.test(location))
      return { ok: false, message: `${location}: put methods in actions, not in locations` };
  }
  if (actions !== undefined && (!isStringList(actions) || actions.length === 0)) {
    return { ok: false, message: 'actions must be a non-empty list of methods, or absent for any method' };
  }
  // The methods are joined with ',' in front of each location before parsing: an action holding a
  // ',' or a space would be read as several methods, or as part of the location.
  for (const action of actions ?? []) {
    if (/[\s,]/.test(action)) {
      return { ok: false, message: `actions: '${action}' is not one method; list each method on its own` };
    }
  }
  return { ok: true, locations, actions };
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '');
}
