// ajv's errors → diagnostics that point at the YAML node and say what to write instead.
// ajv speaks in JSON Pointers and schema keywords ("must NOT have additional properties");
// an operator needs "unknown key 'egres' in agent 'x'; did you mean 'egress'?" at line 12.
import type { ErrorObject } from 'ajv';
import { describe, pointerToPath, valueAt } from './describe.ts';
import { type Diagnostic, error } from './diagnostic.ts';
import type { NodePath, ParsedFile } from './document.ts';
import { ISSUER_ALGORITHMS } from './model.ts';
import { suggestDuration, suggestSize } from './quantities.ts';
import { didYouMean, listOf } from './suggest.ts';

/** Keys that would hold a secret in clear text. Never accepted: files end up in git. */
const PLAINTEXT_SECRET_KEYS = new Set(['secret', 'client_secret', 'password', 'secret_value']);

/** Where a file refers to a secret instead of holding it. */
const SECRET_REFERENCES = new Set(['secret_env', 'secret_hash']);

export const SECRET_FIX =
  "use 'secret_env: NAME' (the server reads the secret from that environment variable) or " +
  "'secret_hash: $scrypt$…' (made by `reins policy hash-secret`)";

/** What a missing key should look like, appended to "is missing 'x'". */
const REQUIRED_HINTS: Record<string, string> = {
  tenant: "; start the file with 'tenant: <id>', e.g. 'tenant: acme'",
  method: '; add method: private_key_jwt, client_secret_basic or client_secret_post',
  auth: "; add e.g. 'auth: { method: client_secret_basic, secret_env: MY_AGENT_SECRET }'",
  egress: "; add a list of integration names and rules, e.g. 'egress: [payments]' (or [] for nothing)",
  match: "; add the claims a user must have, e.g. 'match: { groups: [finance] }'",
  issuer: "; add the issuer URL, e.g. 'issuer: https://login.example.com'",
  keys: "; a JWKS is '{ keys: [ { kty: EC, crv: P-256, x: …, y: … } ] }'",
  kty: '; every JWK names its key type: kty: EC, RSA or OKP',
  response: '; add response: alert, revoke or quarantine',
  new_hosts: "; add how many first contacts make a burst, e.g. 'new_hosts: 5'",
  denials: "; add how many refusals make a spike, e.g. 'denials: 20'",
  factor: "; add how many times the agent's usual bytes out make a spike, e.g. 'factor: 10'",
  within: "; add the window the detection counts in, e.g. 'within: 1m'",
  webhook: "; add e.g. 'webhook: { url: https://hooks.example.com/reins, secret_env: ALERT_SECRET }'",
  url: "; add the URL alerts are posted to, e.g. 'url: https://hooks.example.com/reins'",
  secret_env:
    "; add the name of the environment variable that holds the webhook's signing secret, e.g. 'secret_env: ALERT_SECRET'",
};

/** What a pattern means, for fields whose pattern an operator cannot be expected to read. */
const PATTERN_HINTS: Record<string, string> = {
  tenant: "use letters, digits, '.', '_' or '-', starting with a letter or digit",
  integrations: "use letters, digits, '.', '_' or '-', starting with a letter or digit",
  agents: "use letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
  apps: "use letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
  may_act: 'name an agent of this tenant',
  may_delegate_to: 'name an agent of this tenant',
  name: "use letters, digits, '.', '_' or '-', starting with a letter or digit",
  secret_env: 'write the name of an environment variable, e.g. BILLING_AGENT_SECRET',
  secret_hash:
    'write a scrypt hash such as $scrypt$ln=15,r=8,p=1$<salt>$<hash>, made by `reins policy hash-secret`',
  jwks_uri: 'write an https:// URL',
  issuer: 'write the issuer URL exactly as the iss claim of its tokens, e.g. https://login.example.com',
  url: 'write an http:// or https:// URL, e.g. https://hooks.example.com/reins',
};

/** Keys whose value is a duration, with the example their message gives. */
const DURATION_EXAMPLES: Record<string, string> = { learning_period: '24h', within: '1m' };

/** Keys whose value is a size (a oneOf of a string and a whole number in the schema). */
const SIZE_KEYS = new Set(['bytes_out_per_hour']);

const SIZE_FORMAT = 'a size: N, NkB, NMB or NGB (decimal), e.g. 50MB';

const COMBINATORS = new Set(['oneOf', 'anyOf', 'not', 'if']);

export function schemaDiagnostics(file: ParsedFile, errors: readonly ErrorObject[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  // Branching keywords (oneOf/if/not) yield several raw errors for one mistake; explain each
  // such place once, from the data, instead of echoing every branch that failed.
  const combinedAt = new Set<string>();
  const plaintextAt = new Set<string>();
  for (const e of errors) {
    if (
      e.keyword === 'additionalProperties' &&
      PLAINTEXT_SECRET_KEYS.has(String(e.params.additionalProperty))
    ) {
      plaintextAt.add(e.instancePath);
    }
  }
  for (const e of errors) {
    const path = pointerToPath(e.instancePath, file.value);
    // `secret: …` where `secret_env` is required: the plaintext error already says what to write.
    if (
      e.keyword === 'required' &&
      plaintextAt.has(e.instancePath) &&
      SECRET_REFERENCES.has(String(e.params.missingProperty))
    )
      continue;
    if (isCombinatorError(e)) {
      if (combinedAt.has(e.instancePath) || plaintextAt.has(e.instancePath)) continue;
      combinedAt.add(e.instancePath);
      // A size's branches fail on its value: point at the value, not at its key.
      const at = SIZE_KEYS.has(String(lastKey(path))) ? file.locate(path) : file.locateKey(path);
      out.push(error(at, explainBranches(path, valueAt(file.value, path))));
      continue;
    }
    const diagnostic = explain(file, e, path);
    if (diagnostic) out.push(diagnostic);
  }
  return out;
}

function isCombinatorError(e: ErrorObject): boolean {
  return COMBINATORS.has(e.keyword) || /\/(oneOf|anyOf|then|else|not)\//.test(`${e.schemaPath}/`);
}

function explain(file: ParsedFile, e: ErrorObject, path: NodePath): Diagnostic | null {
  const where = describe(path);
  const value = valueAt(file.value, path);
  const last = lastKey(path);
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(e.params.additionalProperty);
      const at = file.locateKey([...path, key]);
      if (PLAINTEXT_SECRET_KEYS.has(key)) {
        return error(
          at,
          `plaintext secret '${key}' in ${where}: secrets never go in policy files; ${SECRET_FIX}`,
        );
      }
      const allowed = Object.keys((e.parentSchema?.properties as Record<string, unknown> | undefined) ?? {});
      const hint =
        didYouMean(key, allowed) || (allowed.length > 0 ? `; allowed keys: ${allowed.join(', ')}` : '');
      return error(at, `unknown key '${key}' in ${where}${hint}`);
    }
    case 'required': {
      const key = String(e.params.missingProperty);
      return error(file.locateKey(path), `${where} is missing '${key}'${REQUIRED_HINTS[key] ?? ''}`);
    }
    case 'type': {
      // `algorithms: HS256` would otherwise be told to write [HS256].
      const forbidden = isIssuerAlgorithms(path) ? forbiddenAlgorithm(where, value) : null;
      const duration =
        DURATION_EXAMPLES[String(last)] === undefined ? null : durationMessage(where, last, value);
      return error(
        file.locate(path),
        forbidden ?? duration ?? typeMessage(where, String(e.params.type), value, path),
      );
    }
    case 'enum': {
      const allowed = (e.params.allowedValues as unknown[]).map(String);
      const forbidden = isIssuerAlgorithms(path) ? forbiddenAlgorithm(where, value) : null;
      if (forbidden) return error(file.locate(path), forbidden);
      const got = typeof value === 'string' ? `'${value}'` : JSON.stringify(value);
      const hint = typeof value === 'string' ? didYouMean(value, allowed) : '';
      return error(file.locate(path), `${where} must be one of ${listOf(allowed)}, not ${got}${hint}`);
    }
    case 'pattern': {
      if (e.propertyName !== undefined) {
        const kind = last === 'agents' ? 'agent name' : last === 'apps' ? 'app name' : 'integration name';
        const at = file.locateKey([...path, e.propertyName]);
        return error(at, `'${e.propertyName}' is not a valid ${kind}: ${PATTERN_HINTS[String(last)] ?? ''}`);
      }
      if (DURATION_EXAMPLES[String(last)] !== undefined)
        return error(file.locate(path), durationMessage(where, last, value));
      const field = typeof last === 'number' ? lastKey(path.slice(0, -1)) : last;
      const hint = PATTERN_HINTS[String(field)] ?? `it must match ${String(e.params.pattern)}`;
      return error(file.locate(path), `${where} '${String(value)}' is not valid: ${hint}`);
    }
    case 'minimum':
    case 'maximum': {
      const bound = e.keyword === 'minimum' ? 'at least' : 'at most';
      const unit = isSeconds(last) ? ' seconds' : '';
      return error(
        file.locate(path),
        `${where} must be ${bound} ${String(e.params.limit)}${unit}, not ${String(value)}`,
      );
    }
    case 'exclusiveMinimum': {
      const why = last === 'factor' ? ": a factor of 1 or less would fire on the agent's usual traffic" : '';
      return error(
        file.locate(path),
        `${where} must be more than ${String(e.params.limit)}, not ${String(value)}${why}`,
      );
    }
    case 'minItems':
      return error(file.locate(path), `${where} must not be empty; list at least one entry`);
    case 'minLength':
      return error(file.locate(path), `${where} must not be empty`);
    case 'maxLength':
      return error(
        file.locate(path),
        `${where} is longer than ${String(e.params.limit)} characters; shorten it`,
      );
    case 'minProperties':
      return error(
        file.locateKey(path),
        last === 'match'
          ? `${where} needs at least one condition: sub, email, groups, roles, issuer or claims`
          : last === 'budget'
            ? `${where} needs at least one limit: requests_per_minute or bytes_out_per_hour (or remove 'budget')`
            : `${where} must not be empty`,
      );
    case 'propertyNames':
      return null; // the failing name's own error (pattern, maxLength) says what is wrong
    default:
      return error(file.locate(path), `${where} ${e.message ?? 'is not valid'}`);
  }
}

function typeMessage(where: string, expected: string, value: unknown, path: NodePath): string {
  const wanted: Record<string, string> = {
    array: 'a list',
    object: 'a map of keys to values',
    string: 'a string',
    integer: 'a whole number',
    number: 'a number',
    boolean: 'true or false',
  };
  const want = wanted[expected] ?? expected;
  if (value === null || value === undefined) return `${where} has no value; write ${want} or remove the key`;
  const hint =
    expected === 'array' && typeof value === 'string'
      ? `; write [${value}]`
      : expected === 'object' && typeof value === 'string' && path[1] === 'detections' && path.length === 3
        ? `; write { response: ${value} }`
        : '';
  return `${where} must be ${want}, not ${kindOf(value)}${hint}`;
}

/** A value at a duration key that is not `Ns`, `Nm` or `Nh`: the format, and the likely fix. */
function durationMessage(where: string, key: string | number | undefined, value: unknown): string {
  const format = `a duration: Ns, Nm or Nh, e.g. ${DURATION_EXAMPLES[String(key)] ?? '1m'}`;
  if (value === null || value === undefined) {
    const optional = key === 'learning_period' ? ', or remove the key for the default (24h)' : '';
    return `${where} has no value; write ${format}${optional}`;
  }
  if (Number.isSafeInteger(value) || (typeof value === 'string' && /^[0-9]+$/.test(value))) {
    return `${where} must be ${format}, not ${kindOf(value)}: add the unit, e.g. ${String(value)}s for seconds`;
  }
  const guess = typeof value === 'string' ? suggestDuration(value) : null;
  const fix = guess === null ? '' : `; did you mean '${guess}'?`;
  return `${where} must be ${format}, not ${kindOf(value)}${fix}`;
}

function explainBranches(path: NodePath, value: unknown): string {
  const where = describe(path);
  const last = lastKey(path);
  if (SIZE_KEYS.has(String(last))) {
    if (value === null) return `${where} has no value; write ${SIZE_FORMAT}, or remove the key`;
    const guess = suggestSize(value);
    const fix = guess === null ? '' : `; did you mean '${guess}'?`;
    return `${where} must be ${SIZE_FORMAT}, or a whole number of bytes, not ${kindOf(value)}${fix}`;
  }
  const has = (key: string) => typeof value === 'object' && value !== null && key in value;
  if (last === 'auth' && typeof value === 'object' && value !== null) {
    const method = (value as Record<string, unknown>).method;
    if (method === 'private_key_jwt') {
      if (has('secret_env') || has('secret_hash')) {
        return `${where}: secret_env and secret_hash are for client_secret_basic and client_secret_post; private_key_jwt takes 'jwks' or 'jwks_uri'`;
      }
      if (has('jwks') && has('jwks_uri')) return `${where}: give either 'jwks' or 'jwks_uri', not both`;
      return `${where}: private_key_jwt needs the client's public keys: add 'jwks: { keys: [ … ] }' or 'jwks_uri: https://…'`;
    }
    if (has('jwks') || has('jwks_uri')) {
      return `${where}: jwks and jwks_uri are for private_key_jwt; ${String(method)} takes 'secret_env' or 'secret_hash' (or change the method to private_key_jwt)`;
    }
    if (has('secret_env') && has('secret_hash'))
      return `${where}: give either 'secret_env' or 'secret_hash', not both`;
    return `${where}: ${String(method)} needs a reference to the secret: ${SECRET_FIX}`;
  }
  if (path[0] === 'trusted_issuers' && path.length === 2) {
    if (has('jwks') && has('jwks_uri')) return `${where}: give either 'jwks' or 'jwks_uri', not both`;
    return `${where}: add the issuer's public keys: 'jwks_uri: https://…' or 'jwks: { keys: [ … ] }'`;
  }
  return `${where} must be a string or a non-empty list of strings`;
}

/** trusted_issuers[i].algorithms or one of its entries. */
function isIssuerAlgorithms(path: NodePath): boolean {
  return path[0] === 'trusted_issuers' && path[2] === 'algorithms';
}

/**
 * Why `none` and HS* are refused, which a bare "must be one of" would not say. `none` lets an
 * unsigned token through; an HMAC verified with the issuer's key uses a *public* key as the
 * shared secret, so anyone can mint tokens that pass (RFC 8725 §2.1). null for other values.
 */
function forbiddenAlgorithm(where: string, value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const instead =
    'list the asymmetric algorithms the issuer signs with, e.g. [ES256, RS256], or remove ' +
    `'algorithms' for the default (allowed: ${ISSUER_ALGORITHMS.join(', ')})`;
  if (value.toLowerCase() === 'none') {
    return `${where} is '${value}': an unsigned token, which anyone can write, would pass as a user's; ${instead}`;
  }
  if (/^hs\d*$/i.test(value)) {
    return (
      `${where} is '${value}', a shared-secret (HMAC) algorithm: keyed with the issuer's public key, ` +
      `it would accept tokens forged by anyone who has that public key; ${instead}`
    );
  }
  return null;
}

function lastKey(path: NodePath): string | number | undefined {
  return path[path.length - 1];
}

function isSeconds(key: string | number | undefined): boolean {
  return key === 'max_token_ttl' || key === 'token_ttl';
}

function kindOf(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `the string '${value}'`;
  return `${typeof value === 'number' ? 'the number' : 'the value'} ${String(value)}`;
}
