// docs/gateway.md's table of reasons is the operators' copy of src/gateway/reasons.ts: every
// reason, with its status, body error, decision, outcome label and meaning, exactly as the code has
// them. A reason added, renamed or reworded in one place and not the other fails here.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { REASON_NAMES, REASONS } from '../../src/gateway/reasons.ts';

const DOC = readFileSync(new URL('../../docs/gateway.md', import.meta.url), 'utf8');

/** The rows of the table under `### Reasons`, cells trimmed, `\|` unescaped. */
function documentedRows(): string[][] {
  const section = DOC.slice(DOC.indexOf('### Reasons'));
  const end = section.indexOf('\n## ');
  const lines = (end === -1 ? section : section.slice(0, end)).split('\n').filter((l) => l.startsWith('| `'));
  return lines.map((line) =>
    line
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((cell) => cell.trim().replaceAll('\\|', '|')),
  );
}

describe('the gateway documentation', () => {
  const rows = documentedRows();

  it('lists every reason of the code, in its order, and no other', () => {
    expect(rows.map((row) => row[0])).toEqual(REASON_NAMES.map((name) => `\`${name}\``));
  });

  it.each(REASON_NAMES)(
    'documents %s with the status, error, decision, outcome and meaning of the code',
    (name) => {
      const row = rows.find((cells) => cells[0] === `\`${name}\``);
      const code = REASONS[name];
      expect(row).toEqual([
        `\`${name}\``,
        code.status === null ? '—' : String(code.status),
        `\`${code.error}\``,
        code.decision,
        code.outcome,
        code.meaning,
      ]);
    },
  );

  it('gives every reason a meaning and a status class that matches its error', () => {
    for (const name of REASON_NAMES) {
      const { status, error, meaning } = REASONS[name];
      expect(meaning, name).toMatch(/\S.*\.\)?$/);
      // A spent budget is refused with 429 (SPEC.md), its body's error egress_denied as for a 403.
      if (error === 'egress_denied') expect([403, 429], name).toContain(status);
      if (status === 429 && error === 'egress_denied') expect(name).toMatch(/^budget_/);
      if (error === 'invalid_token') expect(status, name).toBe(407);
      if (error === 'bad_request') expect(status, name).toBe(400);
      if (error === 'upstream_error') expect([502, 504], name).toContain(status);
    }
  });
});
