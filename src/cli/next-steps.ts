// What `reins serve` prints once it runs. PURE: derived from the applied policy and the actual
// listeners, never from assumptions about the example files. Every command is meant to be
// pasted as is into another terminal (README "A five-minute tour"; test/cli/tour.test.ts runs
// them): so each one carries what it needs, and nothing needs an export first.
//
// Only policies that publish an example credential (`auth.example_secret`, the shipped examples)
// get the try-it commands; a production start prints where things run and nothing more.
import { parseRule, type Rule } from '../egress/index.ts';
import type { ExampleCredential } from '../policy/examples.ts';
import type { PolicyModel } from '../policy/index.ts';

export interface Listeners {
  readonly issuer: string;
  readonly authUrl: string;
  readonly gatewayUrl: string;
  readonly adminUrl: string;
  readonly resource: string;
  /** How a local CLI reaches the admin API: flags to add to `reins audit`, or null when it cannot. */
  readonly cliAdminFlags: string | null;
  readonly pid: number;
}

export function nextSteps(
  listeners: Listeners,
  model: PolicyModel,
  examples: readonly ExampleCredential[],
  policyLine: string,
): string {
  const { authUrl, gatewayUrl, adminUrl } = listeners;
  const lines = [
    '',
    `reins is running: authorization server ${authUrl} (issuer ${listeners.issuer}), gateway ${gatewayUrl}, admin ${adminUrl}`,
    policyLine,
  ];
  const demo = demoFor(model, examples);
  if (demo) lines.push('', ...demoLines(listeners, demo));
  lines.push('');
  if (listeners.cliAdminFlags !== null) {
    const flags = listeners.cliAdminFlags === '' ? '' : ` ${listeners.cliAdminFlags}`;
    lines.push(`  watch the decisions:  npx reins audit tail --follow${flags}`);
  }
  lines.push(`  health:   curl -s ${adminUrl}/readyz`, `  metrics:  curl -s ${adminUrl}/metrics`, '');
  lines.push(`Reload the policies with kill -HUP ${listeners.pid}; stop with Ctrl-C.`, '');
  return lines.join('\n');
}

interface Demo {
  readonly credential: ExampleCredential;
  /** A destination the agent's grant does not name: refused with no_matching_rule. */
  readonly outside: string;
  /** An https request the grant names only in part, refused inside an inspected tunnel. */
  readonly inspected: {
    method: string;
    url: string;
    reason: 'method_not_allowed' | 'path_not_allowed';
  } | null;
}

const DEMO_METHODS = ['DELETE', 'PUT', 'PATCH', 'POST', 'GET'];
const OUTSIDE_CANDIDATES = ['example.com', 'example.net', 'example.org'];

function demoFor(model: PolicyModel, examples: readonly ExampleCredential[]): Demo | null {
  for (const credential of examples) {
    const agent = model.tenants
      .find((t) => t.id === credential.tenant)
      ?.agents.find((a) => a.clientId === credential.clientId);
    if (!agent) continue;
    const rules = agent.effectiveEgress
      .map((text) => parseRule(text))
      .flatMap((parsed) => (parsed.ok ? [parsed.rule] : []));
    const outside = OUTSIDE_CANDIDATES.find((host) => !rules.some((rule) => namesHost(rule, host)));
    if (outside === undefined) continue;
    return { credential, outside: `http://${outside}/`, inspected: inspectedExample(rules) };
  }
  return null;
}

function namesHost(rule: Rule, host: string): boolean {
  const pattern = rule.host;
  if (pattern.kind === 'name') return pattern.name === host;
  if (pattern.kind === 'wildcard') return host.endsWith(`.${pattern.base}`);
  return false;
}

/** An https rule with a concrete host, scoped to methods or a path: a request just outside it. */
function inspectedExample(rules: readonly Rule[]): Demo['inspected'] {
  for (const rule of rules) {
    if (rule.scheme !== 'https' || rule.host.kind !== 'name') continue;
    // The whole origin granted to some rule: CONNECT would be a plain tunnel, nothing inspected.
    const host = rule.host.name;
    if (
      rules.some(
        (r) => r.host.kind === 'name' && r.host.name === host && r.methods === null && r.path.length === 0,
      )
    ) {
      continue;
    }
    const origin = `https://${host}${rule.port === 443 ? '' : `:${rule.port}`}`;
    const path = `/${rule.path.join('/')}`;
    if (rule.methods !== null) {
      const method = DEMO_METHODS.find(
        (m) => !rules.some((r) => r.host === rule.host && r.methods?.includes(m)),
      );
      const outsideMethods = DEMO_METHODS.find((m) => !rule.methods?.includes(m));
      const chosen = method ?? outsideMethods;
      if (chosen !== undefined)
        return { method: chosen, url: `${origin}${path}`, reason: 'method_not_allowed' };
    }
    if (rule.path.length > 0) return { method: 'GET', url: `${origin}/`, reason: 'path_not_allowed' };
  }
  return null;
}

function demoLines(listeners: Listeners, demo: Demo): string[] {
  const { credential } = demo;
  const { authUrl, gatewayUrl, resource } = listeners;
  const id = credential.clientId;
  // example_secret is limited to [A-Za-z0-9._~-]: safe inside single quotes and in a URL.
  const auth =
    credential.method === 'client_secret_basic'
      ? `-u '${id}:${credential.secret}'`
      : `-d client_id='${id}' -d client_secret='${credential.secret}'`;
  const lines = [
    `Try it with ${id} (tenant ${credential.tenant}): its secret is an example published in the policy`,
    'file (auth.example_secret), so these commands work as pasted. Never use it for real.',
    '',
    '  a token, kept in TOKEN for what follows:',
    `    TOKEN=$(curl -s ${auth} -d grant_type=client_credentials \\`,
    `      --data-urlencode resource=${resource} ${authUrl}/token | node -pe 'JSON.parse(require("fs").readFileSync(0)).access_token'); echo "$TOKEN"`,
    '  a request outside its grant, refused through the gateway with the reason:',
    `    curl -s --proxy ${gatewayUrl} --proxy-header "Proxy-Authorization: Bearer $TOKEN" ${demo.outside}`,
    `    (403 egress_denied, reason no_matching_rule)`,
  ];
  if (demo.inspected) {
    const { method, url, reason } = demo.inspected;
    lines.push(
      '  any command, unchanged, under reins run (token and interception CA handled), refused inside',
      '  an inspected tunnel:',
      `    REINS_EXAMPLE_SECRET='${credential.secret}' npx reins run --agent ${id} --secret-env REINS_EXAMPLE_SECRET \\`,
      `      --issuer ${listeners.issuer} --gateway ${gatewayUrl} -- curl -s -X ${method} ${url}`,
      `    (403 egress_denied, reason ${reason})`,
    );
  }
  return lines;
}
