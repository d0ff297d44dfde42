// Shared by `policy validate`, `plan` and `apply`: read the directory, validate, print every
// diagnostic as `file:line:column: severity: message` on stderr, and stop with exit code 1 when
// there is an error. Nothing is written anywhere before this has passed.
import {
  contentHash,
  formatDiagnostic,
  loadPolicyDir,
  type PolicyModel,
  type PolicySource,
  validatePolicies,
} from '../policy/index.ts';
import { CliError, EXIT } from './failure.ts';

export interface CheckedPolicy {
  readonly sources: readonly PolicySource[];
  readonly model: PolicyModel;
  readonly contentHash: string;
  readonly warnings: number;
}

export async function loadAndValidate(dir: string): Promise<CheckedPolicy> {
  const sources = await loadPolicyDir(dir);
  const { diagnostics, model } = validatePolicies(sources);
  for (const d of diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = diagnostics.length - errors;
  if (errors > 0 || !model) {
    throw new CliError(`${dir}: ${count(errors, 'error')}, ${count(warnings, 'warning')}`, EXIT.invalid);
  }
  return { sources, model, contentHash: contentHash(sources), warnings };
}

export function count(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export const DIR_HELP =
  'DIR holds the policy files: every *.yaml / *.yml file in it and its subdirectories (hidden\n' +
  'ones skipped), one tenant per file, a tenant may span several files. See docs/policies.md.';
