// Helpers for the policy tests: policy files as in-memory sources, and positions computed from
// the fixture text itself, so a test says exactly which character a diagnostic must point at.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Diagnostic } from '../../src/policy/diagnostic.ts';
import type { PolicySource } from '../../src/policy/source.ts';
import { type ValidationResult, validatePolicies } from '../../src/policy/validate.ts';

export const EXAMPLES_DIR = fileURLToPath(new URL('../../policies/', import.meta.url));

/** Lines of YAML as one text. */
export function yaml(...lines: string[]): string {
  return `${lines.join('\n')}\n`;
}

export function sourcesOf(files: Record<string, string>): PolicySource[] {
  return Object.entries(files).map(([name, text]) => ({ file: name, name, text }));
}

export function validate(files: Record<string, string>): ValidationResult {
  return validatePolicies(sourcesOf(files));
}

/** The shipped example policies as sources. */
export function exampleSources(): PolicySource[] {
  return readdirSync(EXAMPLES_DIR)
    .filter((name) => name.endsWith('.yaml'))
    .map((name) => ({
      file: `policies/${name}`,
      name,
      text: readFileSync(`${EXAMPLES_DIR}${name}`, 'utf8'),
    }));
}

/** `file:line:column` of the `occurrence`-th appearance of `needle` in `text`. */
export function at(file: string, text: string, needle: string, occurrence = 1): string {
  let index = -1;
  for (let i = 0; i < occurrence; i++) {
    index = text.indexOf(needle, index + 1);
    if (index < 0) throw new Error(`'${needle}' does not occur ${occurrence} time(s) in ${file}`);
  }
  const before = text.slice(0, index);
  const line = before.split('\n').length;
  const column = index - before.lastIndexOf('\n');
  return `${file}:${line}:${column}`;
}

export function where(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.column}`;
}

export function errorsOf(result: ValidationResult): Diagnostic[] {
  return result.diagnostics.filter((d) => d.severity === 'error');
}

export function warningsOf(result: ValidationResult): Diagnostic[] {
  return result.diagnostics.filter((d) => d.severity === 'warning');
}

/** A small valid tenant to vary: one integration, one agent. */
export const ACME = yaml(
  'tenant: acme',
  'integrations:',
  '  payments:',
  '    - POST,GET https://api.stripe.com/v1/',
  'agents:',
  '  billing-agent:',
  '    auth: { method: client_secret_basic, secret_env: BILLING_SECRET }',
  '    egress: [payments]',
);

export const GLOBEX = yaml(
  'tenant: globex',
  'agents:',
  '  shipping-agent:',
  '    auth: { method: client_secret_post, secret_env: SHIPPING_SECRET }',
  '    egress: ["GET https://api.shipengine.com/v1/"]',
);
