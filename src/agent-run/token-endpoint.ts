// Client credentials at the issuer's token endpoint (RFC 6749 §4.4), with the endpoint found
// through RFC 8414 discovery, and the client authenticated by client_secret_basic or
// private_key_jwt (RFC 7523; client-assertion.ts signs the assertion).
import { AgentRunError } from './errors.ts';
import { jwtExpiry } from './jwt-expiry.ts';
import type { ObtainedToken, ObtainToken } from './token-source.ts';

export type ClientAuthentication =
  | { readonly method: 'client_secret_basic'; readonly clientId: string; readonly secret: string }
  | {
      readonly method: 'private_key_jwt';
      readonly clientId: string;
      /** A fresh assertion for this audience (the token endpoint) on every call. */
      readonly assertion: (audience: string) => Promise<string>;
    };

export interface ClientCredentialsOptions {
  readonly issuer: string;
  readonly auth: ClientAuthentication;
  /** `egress:<integration>` values to narrow the token to (docs/tokens.md). */
  readonly scope?: string | undefined;
  /** Per HTTP request to the issuer. Default 10 s. */
  readonly timeoutMs?: number;
  readonly now?: () => number;
}

const DISCOVERY_PATH = '/.well-known/oauth-authorization-server';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** An ObtainToken that asks the token endpoint for a new token on every call. */
export function clientCredentials(options: ClientCredentialsOptions): ObtainToken {
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let endpoint: Promise<string> | undefined;
  return async () => {
    // Discovered once; a failed discovery (issuer down) is tried again on the next call.
    endpoint ??= discoverTokenEndpoint(options.issuer, timeoutMs).catch((err: unknown) => {
      endpoint = undefined;
      throw err;
    });
    const tokenEndpoint = await endpoint;
    return requestToken(tokenEndpoint, options, timeoutMs, now);
  };
}

/**
 * The issuer's token endpoint from its RFC 8414 metadata; `<issuer>/token` when the issuer
 * publishes none. The metadata must name the issuer that was asked (RFC 8414 §3.3): a
 * document naming another would send the agent's credentials where the operator did not say.
 */
export async function discoverTokenEndpoint(issuer: string, timeoutMs = 10_000): Promise<string> {
  const base = new URL(issuer);
  // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
  const path = base.pathname === '/' ? '' : base.pathname.replace(/\/$/, '');
  const url = new URL(`${DISCOVERY_PATH}${path}`, base.origin);
  const response = await send(url, { method: 'GET', headers: { accept: 'application/json' } }, timeoutMs);
  const fallback = `${issuer.replace(/\/$/, '')}/token`;
  if (response.status !== 200) {
    await response.body?.cancel();
    return fallback;
  }
  const metadata = await readJson(response);
  if (metadata === undefined) return fallback;
  if (typeof metadata.issuer === 'string' && trimSlash(metadata.issuer) !== trimSlash(issuer)) {
    throw new AgentRunError(
      'issuer_mismatch',
      `${url.href} names the issuer ${printable(metadata.issuer)}, not ${issuer}; pass --issuer ${printable(metadata.issuer)}`,
    );
  }
  return typeof metadata.token_endpoint === 'string' ? metadata.token_endpoint : fallback;
}

async function requestToken(
  tokenEndpoint: string,
  options: ClientCredentialsOptions,
  timeoutMs: number,
  now: () => number,
): Promise<ObtainedToken> {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  if (options.scope) form.set('scope', options.scope);
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  const { auth } = options;
  if (auth.method === 'client_secret_basic') {
    // RFC 6749 §2.3.1: both parts form-encoded before base64.
    const pair = `${encodeURIComponent(auth.clientId)}:${encodeURIComponent(auth.secret)}`;
    headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
  } else {
    form.set('client_id', auth.clientId);
    form.set('client_assertion_type', ASSERTION_TYPE);
    form.set('client_assertion', await auth.assertion(tokenEndpoint));
  }
  const sentAt = now();
  const response = await send(
    new URL(tokenEndpoint),
    { method: 'POST', headers, body: form.toString() },
    timeoutMs,
  );
  const body = await readJson(response);
  if (response.status !== 200) {
    if (body !== undefined && typeof body.error === 'string') {
      const description =
        typeof body.error_description === 'string' ? ` (${printable(body.error_description)})` : '';
      throw new AgentRunError(
        'token_refused',
        `the token endpoint refused the agent ${auth.clientId}: ${printable(body.error)}${description}`,
      );
    }
    throw new AgentRunError('token_response_invalid', `the token endpoint answered ${response.status}`);
  }
  const token = body?.access_token;
  if (typeof token !== 'string' || token === '') {
    throw new AgentRunError('token_response_invalid', 'the token endpoint answered without an access_token');
  }
  if (typeof body?.token_type === 'string' && body.token_type.toLowerCase() !== 'bearer') {
    throw new AgentRunError(
      'token_response_invalid',
      `the token endpoint issued a ${printable(body.token_type)} token; the gateway takes Bearer tokens`,
    );
  }
  // expires_in is relative, so a skewed local clock does not matter; exp is the fallback.
  const expiresIn = body?.expires_in;
  const expiresAt =
    typeof expiresIn === 'number' && expiresIn > 0 ? sentAt + expiresIn * 1000 : jwtExpiry(token);
  if (expiresAt === undefined) {
    throw new AgentRunError(
      'token_response_invalid',
      'the token endpoint did not say when the token expires',
    );
  }
  return { token, expiresAt };
}

async function send(url: URL, init: RequestInit, timeoutMs: number): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    const why =
      err instanceof Error && err.name === 'TimeoutError'
        ? `no answer within ${timeoutMs} ms`
        : typeof cause?.code === 'string'
          ? cause.code
          : typeof cause?.message === 'string'
            ? cause.message
            : err instanceof Error
              ? err.message
              : String(err);
    throw new AgentRunError('issuer_unreachable', `cannot reach ${url.origin}: ${why}`);
  }
}

async function readJson(response: Response): Promise<Record<string, unknown> | undefined> {
  try {
    const value: unknown = JSON.parse(await response.text());
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function trimSlash(url: string): string {
  return url.replace(/\/$/, '');
}

/** Text from a server, fit for one line on a terminal. */
function printable(text: string): string {
  const line = text.replace(/\p{Cc}/gu, ' ');
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
