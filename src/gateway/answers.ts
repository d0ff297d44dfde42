// How the gateway answers its refusals: JSON bodies, raw answers on CONNECT sockets (no HTTP
// response object exists there), the 407 challenge, the 403 denial, and the reason each carries in
// its status line and x-reins-reason header. No answer carries a stack trace or a token.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Verdict } from './check.ts';
import type { TargetRead } from './request-target.ts';

/** Every value of a header, as received (duplicates matter: two Host headers are ambiguous). */
export function headerValues(req: IncomingMessage, name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if ((req.rawHeaders[i] as string).toLowerCase() === name) values.push(req.rawHeaders[i + 1] as string);
  }
  return values;
}

/** HTTP/1.1 or later: a Host header is required (RFC 9112 §3.2). */
export function isHttp11(req: IncomingMessage): boolean {
  return req.httpVersionMajor > 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1);
}

/**
 * A refusal the gateway answers itself. `reason` is what clients are told in two places they
 * show even when they hide the body (curl's `CONNECT tunnel failed, response 403`, Python's
 * `Tunnel connection failed: 403 …`): the status line's reason phrase and `x-reins-reason`.
 * `problem` (407 only) says what was wrong with the credentials.
 */
export interface Refusal {
  readonly status: number;
  readonly reason: string;
  readonly problem?: string;
}

export const REASON_HEADER = 'x-reins-reason';

/** The words before the reason in the status line; lower case, so no client mistakes it for the standard phrase. */
const STATUS_WORDS: Readonly<Record<number, string>> = {
  400: 'bad request',
  403: 'egress denied',
  407: 'proxy authentication required',
  408: 'request timeout',
  429: 'too many requests',
  502: 'bad gateway',
  504: 'gateway timeout',
};

/**
 * Threat: a reason phrase is written into the status line as is. Anything outside this set (a CR
 * or LF above all, which would end the line and start a header of the attacker's choosing) is
 * replaced. Reasons come from closed lists, so this only ever guards against a future mistake.
 */
function phraseSafe(text: string): string {
  return text.replace(/[^A-Za-z0-9_.:() -]/g, '_').slice(0, 120);
}

/** `egress denied: path_not_allowed`; for a 407 `… invalid_token (expired)`. */
export function reasonPhrase(refusal: Refusal): string {
  const words = STATUS_WORDS[refusal.status] ?? 'refused';
  const problem = refusal.problem === undefined ? '' : ` (${refusal.problem})`;
  return phraseSafe(`${words}: ${refusal.reason}${problem}`);
}

/** The headers every refusal carries (the JSON body's own are added where it is written). */
function refusalHeaders(refusal: Refusal): Record<string, string> {
  return { [REASON_HEADER]: phraseSafe(refusal.reason) };
}

const CHALLENGE = { 'proxy-authenticate': 'Bearer realm="reins", error="invalid_token"' };

/** The 407 body and challenge for a request whose credentials were refused. */
export function answer407(res: ServerResponse, problem: string, detail: string, requestId: string): void {
  // No keep-alive for a client without a valid token: it may not hold gateway connections.
  res.shouldKeepAlive = false;
  sendRefusal(
    res,
    { status: 407, reason: 'invalid_token', problem },
    { error: 'invalid_token', error_description: detail, request_id: requestId },
    CHALLENGE,
  );
}

/** The same 407 as a raw answer on a CONNECT socket. */
export function write407(socket: Socket, problem: string, detail: string, requestId: string): void {
  writeRefusal(
    socket,
    { status: 407, reason: 'invalid_token', problem },
    { error: 'invalid_token', error_description: detail, request_id: requestId },
    CHALLENGE,
  );
}

export function denial(verdict: Extract<Verdict, { verdict: 'deny' }>, read: TargetRead, requestId: string) {
  const destination = read.ok ? read.authority : undefined;
  return {
    error: 'egress_denied',
    reason: verdict.reason,
    destination,
    detail: verdict.detail,
    request_id: requestId,
  };
}

/** A refusal answered on an HTTP response: reason phrase, x-reins-reason, JSON body. */
export function sendRefusal(
  res: ServerResponse,
  refusal: Refusal,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  // After a request it would not read, the gateway does not read the next one on the same
  // connection either: where one request's framing was wrong, the next one's start is a guess.
  if (refusal.status === 400) res.shouldKeepAlive = false;
  res.writeHead(refusal.status, reasonPhrase(refusal), {
    ...headers,
    ...refusalHeaders(refusal),
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** A refusal written raw on a socket (CONNECT, or a request Node's parser gave up on). */
export function writeRefusal(
  socket: Socket,
  refusal: Refusal,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): void {
  if (!socket.writable) return;
  const json = JSON.stringify(body);
  const lines = [
    `HTTP/1.1 ${refusal.status} ${reasonPhrase(refusal)}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(json)}`,
    'cache-control: no-store',
    'connection: close',
    ...Object.entries({ ...headers, ...refusalHeaders(refusal) }).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${json}`);
}

/** `host[:port]` → host (IPv6 keeps its brackets). */
export function stripPort(authority: string): string {
  const text = authority.trim();
  if (text.startsWith('[')) return text.slice(0, text.indexOf(']') + 1);
  const colon = text.lastIndexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}
