// `policy plan` and `policy apply` as one operation each, producing the text the operator reads.
// I/O (the database). The CLI runs them on a database it opens itself, and the server's admin
// API runs the very same functions on its own database for a CLI that talks to a running
// server — so the two paths cannot print different plans or apply differently.

import type { Db } from '../store/db.ts';
import { applyPolicy } from './apply.ts';
import { contentHash } from './content-hash.ts';
import { type Diagnostic, hasErrors } from './diagnostic.ts';
import { formatInspectionNotes, type InterceptMode, rulesNeedingInspection } from './inspection.ts';
import type { PolicyModel } from './model.ts';
import { planChanges } from './plan.ts';
import { formatPlan } from './plan-format.ts';
import type { PolicySource } from './source.ts';
import { readAppliedPolicy } from './store-read.ts';
import { validatePolicies } from './validate.ts';

/** Policy files that validated: what plan and apply work on. */
export interface CheckedSources {
  readonly sources: readonly PolicySource[];
  readonly model: PolicyModel;
  readonly contentHash: string;
}

export type Checked =
  | { readonly ok: true; readonly checked: CheckedSources; readonly diagnostics: readonly Diagnostic[] }
  | { readonly ok: false; readonly diagnostics: readonly Diagnostic[] };

/** Validates sources (pure); diagnostics include the warnings of a valid policy. */
export function checkSources(sources: readonly PolicySource[]): Checked {
  const { diagnostics, model } = validatePolicies(sources);
  if (hasErrors(diagnostics) || model === null) return { ok: false, diagnostics };
  return { ok: true, diagnostics, checked: { sources, model, contentHash: contentHash(sources) } };
}

/** The plan of `checked` against what `db` has applied, as `reins policy plan` prints it. */
export async function planReport(
  db: Db,
  checked: CheckedSources,
  label: string,
  intercept: InterceptMode,
): Promise<string> {
  const applied = await readAppliedPolicy(db);
  const against = applied.version
    ? `version ${applied.version.version} (${applied.version.contentHash})`
    : 'an empty database (nothing applied yet)';
  const sameFiles = applied.version?.contentHash === checked.contentHash ? ' (same files)' : '';
  let text = `Plan for ${label} (${checked.contentHash}) against ${against}${sameFiles}\n\n`;
  text += formatPlan(planChanges(applied.model, checked.model));
  const notes = formatInspectionNotes(rulesNeedingInspection(checked.model), intercept);
  if (notes !== '') text += `\n${notes}`;
  return text;
}

export interface ApplyReport {
  readonly status: 'applied' | 'unchanged';
  readonly version: number;
  readonly text: string;
}

/** Applies `checked` in one transaction; the text is what `reins policy apply` prints. */
export async function applyReport(db: Db, checked: CheckedSources): Promise<ApplyReport> {
  const applied = await readAppliedPolicy(db);
  const outcome = await applyPolicy(db, {
    model: checked.model,
    contentHash: checked.contentHash,
    files: checked.sources.map((s) => s.name),
  });
  const { version } = outcome;
  if (outcome.status === 'unchanged') {
    return {
      status: 'unchanged',
      version: version.version,
      text: `already applied, version ${version.version} (${version.contentHash}); nothing to do\n`,
    };
  }
  return {
    status: 'applied',
    version: version.version,
    text:
      formatPlan(planChanges(applied.model, checked.model)) +
      `\napplied version ${version.version} (${version.contentHash}): ${version.summary}\n`,
  };
}
