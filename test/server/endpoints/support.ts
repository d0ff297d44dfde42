// Callers of the ledger endpoints over real HTTP (Node fetch), and the secrets the example
// policies read from the environment.
import { afterAll, beforeAll } from 'vitest';
import type { AuthServer } from '../provider/support.ts';
import { basic, requestToken } from '../provider/support.ts';

export const SECRETS = {
  // billing-agent's secret is the example one the policy publishes (auth.example_secret).
  ACME_BILLING_AGENT_SECRET: 'reins-example-billing-secret',
  ACME_SUPPORT_PORTAL_SECRET: 'portal-secret-used-only-in-tests',
  GLOBEX_SHIPPING_AGENT_SECRET: 'shipping-secret-used-only-in-tests',
  GLOBEX_OPS_CONSOLE_SECRET: 'ops-console-secret-used-only-in-tests',
} as const;

/** Sets SECRETS in process.env for the file's tests, and restores what was there. */
export function useTestSecrets(): void {
  const saved = new Map<string, string | undefined>();
  beforeAll(() => {
    for (const [name, value] of Object.entries(SECRETS)) {
      saved.set(name, process.env[name]);
      process.env[name] = value;
    }
  });
  afterAll(() => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
}

export const billing = () => basic('billing-agent', SECRETS.ACME_BILLING_AGENT_SECRET);
export const portal = () => basic('support-portal', SECRETS.ACME_SUPPORT_PORTAL_SECRET);
export const shipping = () => basic('shipping-agent', SECRETS.GLOBEX_SHIPPING_AGENT_SECRET);

/** A fresh client-credentials token for acme's billing-agent (or the client `headers` name). */
export async function billingToken(
  server: AuthServer,
  headers: Record<string, string> = billing(),
): Promise<string> {
  const { status, body } = await requestToken(server, { grant_type: 'client_credentials' }, headers);
  if (status !== 200) throw new Error(`token request failed: ${JSON.stringify(body)}`);
  return String(body.access_token);
}

export interface Answer {
  readonly status: number;
  readonly text: string;
}

/** POSTs a form to `path` (/introspect, /revoke). */
export async function post(
  server: AuthServer,
  path: string,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const response = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  });
  return { status: response.status, text: await response.text() };
}

export async function introspect(
  server: AuthServer,
  token: string,
  headers: Record<string, string>,
  form: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const { status, text } = await post(server, '/introspect', { token, ...form }, headers);
  return { status, body: JSON.parse(text) as Record<string, unknown> };
}
