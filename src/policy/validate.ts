// validatePolicies: policy files (as text) → every error and warning, and the compiled model when
// there is no error. Pure: no file system, no database; never throws on bad input.
//
// Phases: YAML (syntax, duplicate keys) → JSON Schema per file → tenants assembled across files
// (duplicates, settings conflicts, client ids) → per tenant: rules, names, credentials, lifetimes,
// user subjects against every client id of the deployment, effective egress → warnings. A file
// that fails an early phase is left out of the later ones, and its tenant's "unknown name" errors
// are held back, so one typo does not cascade. Every mistake of every file is still reported in
// one run: a file whose YAML parsed despite duplicate keys is checked against the schema too, and
// the rules of a file left out are checked on their own (rule-scan.ts).
import { compileTenant, type ResolvedTenant } from './compile.ts';
import { compareText, type Diagnostic, error, hasErrors, sortDiagnostics } from './diagnostic.ts';
import { parsePolicyFile } from './document.ts';
import type { PolicyModel, TenantModel } from './model.ts';
import { scanRules } from './rule-scan.ts';
import { schemaErrors } from './schema.ts';
import { schemaDiagnostics } from './schema-messages.ts';
import type { PolicyFileData } from './shape.ts';
import type { PolicySource } from './source.ts';
import { assembleTenants, type FileData } from './tenants.ts';
import { ceilingWarnings, crossTenantWarnings, unusedWarnings } from './warnings.ts';

export interface ValidationResult {
  /** Sorted by file and position. */
  readonly diagnostics: readonly Diagnostic[];
  /** The compiled policy, or null when there is at least one error. */
  readonly model: PolicyModel | null;
}

export function validatePolicies(sources: readonly PolicySource[]): ValidationResult {
  const diagnostics: Diagnostic[] = [];
  const valid: FileData[] = [];
  const tenantIds = new Set<string>();
  const incomplete = new Set<string>();

  const sorted = [...sources].sort((a, b) => compareText(a.name, b.name));
  for (const source of sorted) {
    const { file, diagnostics: yamlDiagnostics } = parsePolicyFile(source);
    diagnostics.push(...yamlDiagnostics);
    const tenant = tenantOf(file.value);
    if (tenant !== null) tenantIds.add(tenant);
    const yamlBroken = hasErrors(yamlDiagnostics);
    // Broken beyond reading (syntax): nothing more to say about this file.
    if (yamlBroken && file.value === undefined) {
      if (tenant !== null) incomplete.add(tenant);
      continue;
    }
    if (file.value === null || file.value === undefined) {
      diagnostics.push(error(file.locate([]), "the file is empty; a policy file starts with 'tenant: <id>'"));
      continue;
    }
    const errors = schemaErrors(file.value);
    if (yamlBroken || errors.length > 0) {
      diagnostics.push(...schemaDiagnostics(file, errors), ...scanRules(file));
      if (tenant !== null) incomplete.add(tenant);
      continue;
    }
    valid.push({ file, data: file.value as PolicyFileData });
  }

  const assembly = assembleTenants(valid);
  diagnostics.push(...assembly.diagnostics);

  const models: TenantModel[] = [];
  const resolved: ResolvedTenant[] = [];
  for (const draft of assembly.tenants.values()) {
    const refs = { tenant: draft, clients: assembly.clients, tenantIds, complete: !incomplete.has(draft.id) };
    const compiled = compileTenant(draft, refs, diagnostics);
    models.push(compiled.model);
    resolved.push(compiled.resolved);
    diagnostics.push(...ceilingWarnings(compiled.resolved), ...unusedWarnings(draft, compiled.model));
  }
  diagnostics.push(...crossTenantWarnings(resolved));

  const all = sortDiagnostics(diagnostics);
  const model = hasErrors(all) ? null : { tenants: models.sort((a, b) => compareText(a.id, b.id)) };
  return { diagnostics: all, model };
}

function tenantOf(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return null;
  const tenant = (value as Record<string, unknown>).tenant;
  return typeof tenant === 'string' ? tenant : null;
}
