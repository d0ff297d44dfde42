// What `reins run`, `reins env` and `reins ca export --issuer` share to talk to the issuer: one
// GET or POST with a timeout and no redirects, its RFC 8414 metadata checked to name the issuer
// that was asked, and server text made fit for one terminal line.
import { AgentRunError } from './errors.ts';

const DISCOVERY_PATH = '/.well-known/oauth-authorization-server';

/** Per HTTP request to the issuer, unless a caller says otherwise. */
export const ISSUER_TIMEOUT_MS = 10_000;

/**
 * The issuer's RFC 8414 metadata, or undefined when it publishes none (not 200, not a JSON
 * object). The document must name the issuer that was asked (RFC 8414 §3.3): one naming another
 * would send the agent's credentials, or hand it a CA, from where the operator did not say.
 */
export async function issuerMetadata(
  issuer: string,
  timeoutMs = ISSUER_TIMEOUT_MS,
): Promise<Record<string, unknown> | undefined> {
  const base = new URL(issuer);
  // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
  const path = base.pathname === '/' ? '' : base.pathname.replace(/\/$/, '');
  const url = new URL(`${DISCOVERY_PATH}${path}`, base.origin);
  const response = await send(url, { method: 'GET', headers: { accept: 'application/json' } }, timeoutMs);
  if (response.status !== 200) {
    await response.body?.cancel();
    return undefined;
  }
  const metadata = await readJson(response);
  if (metadata === undefined) return undefined;
  if (typeof metadata.issuer === 'string' && trimSlash(metadata.issuer) !== trimSlash(issuer)) {
    throw new AgentRunError(
      'issuer_mismatch',
      `${url.href} names the issuer ${printable(metadata.issuer)}, not ${issuer}; pass --issuer ${printable(metadata.issuer)}`,
    );
  }
  return metadata;
}

/** One request; a network failure or timeout is `issuer_unreachable` naming the origin. */
export async function send(url: URL, init: RequestInit, timeoutMs: number): Promise<Response> {
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

export async function readJson(response: Response): Promise<Record<string, unknown> | undefined> {
  try {
    const value: unknown = JSON.parse(await response.text());
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

export function trimSlash(url: string): string {
  return url.replace(/\/$/, '');
}

/** Text from a server, fit for one line on a terminal. */
export function printable(text: string): string {
  const line = text.replace(/\p{Cc}/gu, ' ');
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
