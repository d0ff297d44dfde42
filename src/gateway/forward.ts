// Sending an allowed request on: to exactly the checked address, with the hop-by-hop headers and
// the proxy's own credentials removed, the request id added, and the answer relayed as it is
// (redirects included: the gateway never follows one; a client that does comes back through the
// gateway and is checked again).
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { createSecureContext, rootCertificates } from 'node:tls';
import { formatAddress } from '../egress/address.ts';
import { DEFAULT_PORTS, type Target } from '../egress/index.ts';

/** RFC 9110 §7.6.1 hop-by-hop headers, plus the proxy-only ones. Never forwarded either way. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export const REQUEST_ID_HEADER = 'x-request-id';

export interface Upstreams {
  readonly http: http.Agent;
  readonly https: https.Agent;
}

/**
 * Pooled keep-alive connections upstream; TLS verified against system roots plus `extraCa`.
 * The roots and `extraCa` go in as one secure context made here, not as a `ca` option: https.Agent
 * writes a `ca` option into the pool key of every request (some 200 kB of PEM joined each time)
 * and parses it again for every new connection — measured at 2.4 ms of CPU per inspected request.
 *
 * `timeoutMs` bounds an upstream's silence, during a request (its ClientRequest emits 'timeout',
 * requests.ts answers 504) and idle in the pool alike. It is the agents' option rather than each
 * request's: a per-request `timeout` gives the socket one more timer and bound function per
 * request (the request's, then the pool's again on release).
 */
export function upstreamAgents(
  extraCa: string | undefined,
  socketsPerOrigin = 256,
  timeoutMs = 30_000,
): Upstreams {
  const options = { keepAlive: true, maxSockets: socketsPerOrigin, maxFreeSockets: 64, timeout: timeoutMs };
  return {
    http: new http.Agent(options),
    https: new https.Agent({
      ...options,
      secureContext:
        extraCa === undefined ? undefined : createSecureContext({ ca: [...rootCertificates, extraCa] }),
      rejectUnauthorized: true,
    }),
  };
}

/**
 * Headers a client's Connection header may not remove: they frame the message. Threat: request
 * smuggling. `Connection: content-length` (or a chunked body, whose Transfer-Encoding is
 * hop-by-hop) would leave a GET's body unframed upstream, where the upstream reads it as a second
 * request — unchecked, and on a pooled connection shared with other clients.
 */
const FRAMING = new Set(['content-length', 'host', 'transfer-encoding']);

/**
 * The request's headers without hop-by-hop ones (and those its Connection header names), framed
 * anew: a body of known length keeps its Content-Length; any other body goes chunked.
 * `host` is the checked, normalised authority, never the client's spelling of it.
 */
export function forwardHeaders(
  headers: IncomingHttpHeaders,
  rawHeaders: readonly string[],
  host: string,
  requestId: string,
): OutgoingHttpHeaders {
  const named = connectionTokens(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(name) || (named.has(name) && !FRAMING.has(name)) || name === 'host') continue;
    if (name === REQUEST_ID_HEADER) continue;
    const value = rawHeaders[i + 1] as string;
    const existing = out[name];
    out[name] = existing === undefined ? value : ([] as string[]).concat(existing as string, value);
  }
  if (headers['transfer-encoding'] !== undefined) {
    delete out['content-length'];
    out['transfer-encoding'] = 'chunked';
  }
  out.host = host;
  out[REQUEST_ID_HEADER] = requestId;
  return out;
}

/** The Host header for a checked target: normalised host, port only when not the default. */
export function hostHeader(target: Target): string {
  const host = target.host.kind === 'name' ? target.host.name : formatHost(target.host.bytes);
  return target.port === DEFAULT_PORTS[target.scheme] ? host : `${host}:${target.port}`;
}

function formatHost(bytes: readonly number[]): string {
  const text = formatAddress(bytes);
  return bytes.length === 16 ? `[${text}]` : text;
}

/** The upstream's response headers, fit to relay to the client. */
export function responseHeaders(upstream: IncomingMessage): OutgoingHttpHeaders {
  const { headers } = upstream;
  const named = connectionTokens(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** What a message without a Connection header names: nothing (shared: asked on every message). */
const NO_TOKENS: ReadonlySet<string> = new Set();

function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> {
  if (value === undefined) return NO_TOKENS;
  const text = Array.isArray(value) ? value.join(',') : value;
  return new Set(
    text
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== ''),
  );
}

/** Whether an upstream error is a TLS verification failure (502 `upstream_tls`, never a downgrade). */
export function isTlsError(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? '');
  return (
    code.startsWith('ERR_TLS') ||
    code.startsWith('ERR_SSL') ||
    /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|HOSTNAME/.test(code)
  );
}

export function isTimeout(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? '');
  return code === 'ETIMEDOUT' || code === 'ESOCKETTIMEDOUT' || code === 'UPSTREAM_TIMEOUT';
}
