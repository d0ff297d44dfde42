// A plan as text, in the shape reviewers know from infrastructure tools: one block per tenant,
// `+` added, `-` removed, `~` changed, and a count at the end; "No changes." when there are none.
import type { Plan, PlanEntry } from './plan.ts';

export function formatPlan(plan: Plan): string {
  if (plan.entries.length === 0) return 'No changes.\n';
  const out: string[] = [];
  const tenants = [...new Set(plan.entries.map((e) => e.tenant))];
  for (const tenant of tenants) {
    const entries = plan.entries.filter((e) => e.tenant === tenant);
    const own = entries.find((e) => e.kind === 'tenant');
    const state =
      own?.action === 'add'
        ? ` (new${own.note ? `: ${own.note}` : ''})`
        : own?.action === 'remove'
          ? ' (removed)'
          : '';
    out.push(`tenant ${tenant}${state}`);
    for (const line of own?.lines ?? []) out.push(`  ${line.sign} ${line.text}`);
    for (const entry of entries) {
      if (entry.kind !== 'tenant') out.push(...formatEntry(entry));
    }
    out.push('');
  }
  out.push(`Plan: ${plan.add} to add, ${plan.change} to change, ${plan.remove} to remove.`);
  return `${out.join('\n')}\n`;
}

const SIGN = { add: '+', remove: '-', change: '~' } as const;

function formatEntry(entry: PlanEntry): string[] {
  const note = entry.note ? ` (${entry.note})` : '';
  // Monitoring belongs to the tenant whose block it is in: no name to repeat.
  const label = entry.kind === 'monitoring' ? entry.kind : `${entry.kind} ${entry.name}`;
  const lines = [`  ${SIGN[entry.action]} ${label}${note}`];
  for (const line of entry.lines) lines.push(`      ${line.sign} ${line.text}`);
  if (
    entry.action === 'add' &&
    entry.lines.length === 0 &&
    entry.kind !== 'trusted issuer' &&
    entry.kind !== 'monitoring'
  ) {
    lines.push('      (no egress)');
  }
  return lines;
}
