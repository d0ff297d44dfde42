// The JSON Schema for one policy file. It ships as schema/policy.schema.json so editors (the
// YAML language server, IDEs) can validate and complete policy files with the same rules the
// CLI applies; here it is read once and compiled with ajv.
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/** Where the schema lives, relative to this file in both src/ and dist/. */
export const POLICY_SCHEMA_URL = new URL('../../schema/policy.schema.json', import.meta.url);

let compiled: ValidateFunction | null = null;
let schemaObject: Record<string, unknown> | null = null;

export function policySchema(): Record<string, unknown> {
  schemaObject ??= JSON.parse(readFileSync(POLICY_SCHEMA_URL, 'utf8')) as Record<string, unknown>;
  return schemaObject;
}

function validator(): ValidateFunction {
  if (compiled) return compiled;
  // allErrors: report every mistake in one run, not the first. verbose: errors carry the schema
  // they failed (to list the allowed keys). strictRequired is off because the auth rules name
  // properties inside if/then branches, which strict mode would reject.
  const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, strictRequired: false });
  compiled = ajv.compile(policySchema());
  return compiled;
}

/** The schema errors of one file's data; [] when it conforms. */
export function schemaErrors(value: unknown): ErrorObject[] {
  const validate = validator();
  return validate(value) ? [] : [...(validate.errors ?? [])];
}
