// Client credentials at the issuer's token endpoint (RFC 6749 §4.4), with the endpoint found
// through RFC 8414 discovery, and the client authenticated by client_secret_basic,
// client_secret_post or private_key_jwt (RFC 7523; client-assertion.ts signs the assertion).
// The server accepts a secret only by the method the client is declared with.
import { AgentRunError } from './errors.ts';
import { ISSUER_TIMEOUT_MS, issuerMetadata, printable, readJson, send, trimSlash } from './issuer-http.ts';
import { jwtExpiry } from './jwt-expiry.ts';
import type { ObtainedToken, ObtainToken } from './token-source.ts';

export type ClientAuthentication =
  | {
      readonly method: 'client_secret_basic' | 'client_secret_post';
      readonly clientId: string;
      readonly secret: string;
    }
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

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** An ObtainToken that asks the token endpoint for a new token on every call. */
export function clientCredentials(options: ClientCredentialsOptions): ObtainToken {
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? ISSUER_TIMEOUT_MS;
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
 * The issuer's token endpoint from its RFC 8414 metadata (which must name the issuer asked:
 * issuer-http.ts); `<issuer>/token` when the issuer publishes none.
 */
export async function discoverTokenEndpoint(issuer: string, timeoutMs = ISSUER_TIMEOUT_MS): Promise<string> {
  const metadata = await issuerMetadata(issuer, timeoutMs);
  return typeof metadata?.token_endpoint === 'string'
    ? metadata.token_endpoint
    : `${trimSlash(issuer)}/token`;
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
  if (auth.method === 'private_key_jwt') {
    form.set('client_id', auth.clientId);
    form.set('client_assertion_type', ASSERTION_TYPE);
    form.set('client_assertion', await auth.assertion(tokenEndpoint));
  } else if (auth.method === 'client_secret_post') {
    form.set('client_id', auth.clientId);
    form.set('client_secret', auth.secret);
  } else {
    // RFC 6749 §2.3.1: both parts form-encoded before base64.
    const pair = `${encodeURIComponent(auth.clientId)}:${encodeURIComponent(auth.secret)}`;
    headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
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
