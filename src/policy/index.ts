// Policies (SPEC.md, "Policies"): the public API of src/policy on one screen.
//
//   const sources = await loadPolicyDir('policies');          // I/O: read the YAML files
//   const { diagnostics, model } = validatePolicies(sources); // pure: errors, warnings, model
//   const plan = planChanges((await readAppliedPolicy(db)).model, model);  // pure diff
//   await applyPolicy(db, { model, contentHash: contentHash(sources), files });  // one transaction
export { type ApplyInput, type ApplyOutcome, applyPolicy, POLICY_CHANNEL } from './apply.ts';
export { canonicalJson, contentHash } from './content-hash.ts';
export { type Diagnostic, formatDiagnostic, hasErrors, type Position, type Severity } from './diagnostic.ts';
export { type LoadErrorCode, loadPolicyDir, PolicyLoadError } from './load.ts';
export type * from './model.ts';
export {
  DEFAULT_DELEGATION_DEPTH,
  DEFAULT_GROUPS_CLAIM,
  DEFAULT_MAX_TOKEN_TTL,
  DEFAULT_ROLES_CLAIM,
  DEFAULT_SUBJECT_CLAIM,
  DEFAULT_TOKEN_TTL,
} from './model.ts';
export { type Plan, type PlanEntry, planChanges } from './plan.ts';
export { formatPlan } from './plan-format.ts';
export { POLICY_SCHEMA_URL, policySchema } from './schema.ts';
export { hashSecret, parseSecretHash, verifySecret } from './secret-hash.ts';
export type { PolicySource } from './source.ts';
export { type AppliedPolicy, EMPTY_POLICY, type PolicyVersion, readAppliedPolicy } from './store-read.ts';
export { summarise } from './summary.ts';
export { type ValidationResult, validatePolicies } from './validate.ts';
