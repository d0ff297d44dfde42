// The destination rules of a file that cannot be compiled (a schema mistake, a duplicate key),
// checked on their own so that `reins policy validate` reports every mistake of every file in
// one run, not the rules only once the keys are fixed. PURE.
//
// Only rule syntax is checked here: a rule means the same wherever it stands. What depends on
// the rest of the tenant (integration names, agents named in may_act, effective egress) waits
// until the file passes the schema, because its integrations and agents are then unknown and
// those errors would be noise (validate.ts holds them back the same way).
import type { Diagnostic } from './diagnostic.ts';
import type { NodePath, ParsedFile } from './document.ts';
import { parseRuleAt } from './grants.ts';

/** An integration name, as opposed to a rule (grants.ts: a rule always has `://`). */
const INTEGRATION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Rule errors in the grant and integration lists of `file.value`, whatever else is wrong with it. */
export function scanRules(file: ParsedFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  const data = file.value;
  if (!isRecord(data)) return out;
  const check = (path: NodePath, list: unknown, alwaysRules: boolean) => {
    if (!Array.isArray(list)) return;
    list.forEach((text: unknown, i) => {
      if (typeof text !== 'string' || text === '') return; // the schema says what is wrong
      if (!alwaysRules && !text.includes('://') && INTEGRATION_NAME.test(text)) return;
      const result = parseRuleAt({ value: list, file, path }, [...path, i], text);
      if (result.diagnostic) out.push(result.diagnostic);
    });
  };
  const each = (key: string, visit: (name: string, value: Record<string, unknown>) => void) => {
    const map = data[key];
    if (!isRecord(map)) return;
    for (const [name, value] of Object.entries(map)) if (isRecord(value)) visit(name, value);
  };

  if (isRecord(data.integrations)) {
    for (const [name, rules] of Object.entries(data.integrations)) check(['integrations', name], rules, true);
  }
  if (isRecord(data.settings)) check(['settings', 'egress_ceiling'], data.settings.egress_ceiling, false);
  check(['owns'], data.owns, false);
  listOf(data.federation).forEach((entry, i) => {
    if (isRecord(entry)) check(['federation', i, 'egress'], entry.egress, false);
  });
  each('agents', (name, agent) => check(['agents', name, 'egress'], agent.egress, false));
  listOf(data.users).forEach((user, i) => {
    if (isRecord(user)) check(['users', i, 'egress'], user.egress, false);
  });
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function listOf(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}
