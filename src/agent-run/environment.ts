// The variables that point an unmodified agent at reins: the proxy for every mainstream HTTP
// client, Node's opt-in to it, and the CA that signs inspected tunnels' certificates. PURE.
//
// | variable | read by |
// | --- | --- |
// | HTTP_PROXY, HTTPS_PROXY, http_proxy, https_proxy | curl (lower case only for http_proxy), Python (urllib, requests, httpx), Go, Node with NODE_USE_ENV_PROXY, Rust reqwest, Ruby, wget |
// | NO_PROXY, no_proxy | emptied: every destination goes through the gateway |
// | NODE_USE_ENV_PROXY=1 | Node 24 / 22.21+: fetch and http(s) honour the variables above |
// | NODE_EXTRA_CA_CERTS | Node: certificates added to its roots |
// | SSL_CERT_FILE | OpenSSL-based tools (Python's ssl, Ruby, Go on Linux), REPLACING their roots |
// | REQUESTS_CA_BUNDLE | Python requests, REPLACING certifi's roots |
// | CURL_CA_BUNDLE | curl, REPLACING its roots |
//
// The last three replace the tool's roots, so they name a bundle of the usual roots plus the
// reins CA (ca-bundle.ts writes it), never the CA alone: that would break every tunnel that is
// not inspected (end-to-end TLS to the real server).

export interface CaFiles {
  /** The interception CA alone (for NODE_EXTRA_CA_CERTS). */
  readonly certificate: string;
  /** The usual roots plus the CA; absent when there is none to point at. */
  readonly bundle?: string | undefined;
}

export type Variables = Readonly<Record<string, string>>;

export const PROXY_VARIABLES = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'] as const;
export const NO_PROXY_VARIABLES = ['NO_PROXY', 'no_proxy'] as const;
export const BUNDLE_VARIABLES = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'] as const;

/** What the command is given, in a fixed order. */
export function proxyVariables(proxyUrl: string, ca: CaFiles | undefined): Variables {
  const vars: Record<string, string> = {};
  for (const name of PROXY_VARIABLES) vars[name] = proxyUrl;
  for (const name of NO_PROXY_VARIABLES) vars[name] = '';
  vars.NODE_USE_ENV_PROXY = '1';
  if (ca !== undefined) {
    vars.NODE_EXTRA_CA_CERTS = ca.certificate;
    if (ca.bundle !== undefined) for (const name of BUNDLE_VARIABLES) vars[name] = ca.bundle;
  }
  return vars;
}

/**
 * reins's own credentials, never handed to the command. Threat: the command is the agent a
 * prompt injection may steer; an operator's shell often holds the admin API credential (which
 * can apply any policy), the database URL, the key-encryption secret — and the agent's own
 * client secret, which would let it mint tokens without reins run's leash.
 */
export const WITHHELD_VARIABLES = [
  'REINS_ADMIN_TOKEN',
  'REINS_SERVER',
  'DATABASE_URL',
  'REINS_SECRET_KEY',
] as const;

/**
 * `base` (the caller's environment) with `vars` set, the no-proxy lists removed, and reins's
 * credentials withheld (WITHHELD_VARIABLES and `withhold`, e.g. the --secret-env variable).
 */
export function childEnvironment(
  base: Readonly<Record<string, string | undefined>>,
  vars: Variables,
  withhold: readonly string[] = [],
) {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(base)) if (value !== undefined) env[name] = value;
  Object.assign(env, vars);
  for (const name of [...NO_PROXY_VARIABLES, ...WITHHELD_VARIABLES, ...withhold]) delete env[name];
  return env;
}

export type VariableFormat = 'shell' | 'dotenv' | 'json';
export const VARIABLE_FORMATS: readonly VariableFormat[] = ['shell', 'dotenv', 'json'];

/**
 * - shell: `export NAME='value'` lines, for `eval "$(reins env …)"`;
 * - dotenv: `NAME=value` lines, unquoted, as `docker run --env-file` and CI systems read them
 *   (they take the rest of the line literally);
 * - json: one object.
 */
export function formatVariables(vars: Variables, format: VariableFormat): string {
  const entries = Object.entries(vars);
  switch (format) {
    case 'shell':
      return entries.map(([name, value]) => `export ${name}=${shellQuote(value)}\n`).join('');
    case 'dotenv':
      return entries.map(([name, value]) => `${name}=${value}\n`).join('');
    case 'json':
      return `${JSON.stringify(vars, null, 2)}\n`;
  }
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
