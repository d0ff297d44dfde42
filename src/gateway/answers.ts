// How the gateway answers its refusals: JSON bodies, raw answers on CONNECT sockets (no HTTP
// response object exists there), the 407 challenge, the 403 denial, and the reason each carries in
// its status line and x-reins-reason header. No answer carries a stack trace or a token.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { REASONS, type Reason } from './reasons.ts';

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
  503: 'service unavailable',
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

/** What one refusal says, wherever it is written. */
export interface RefusalAnswer {
  readonly refusal: Refusal;
  readonly body: Record<string, unknown>;
  readonly headers: Record<string, string>;
  /** The connection is closed after it (no keep-alive). */
  readonly close: boolean;
}

export interface RefusalFacts {
  readonly requestId?: string;
  readonly detail?: string | null;
  /** A 407's credential problem. */
  readonly problem?: string;
  /** A 403's destination (`host:port`). */
  readonly destination?: string | undefined;
  /** A 429's Retry-After in seconds; default 1 (a limit that frees itself within moments). */
  readonly retryAfter?: number | undefined;
}

/**
 * The answer to a refusal of `reason`, derived from its row in reasons.ts (status, error): the
 * same status, body and phrase on every transport.
 */
export function refusalAnswer(reason: Reason, facts: RefusalFacts): RefusalAnswer {
  const row = REASONS[reason];
  const status = row.status ?? 400;
  const detail = facts.detail ?? undefined;
  if (reason === 'invalid_token') {
    return {
      refusal: { status, reason, problem: facts.problem },
      body: { error: row.error, error_description: detail, request_id: facts.requestId },
      headers: CHALLENGE,
      // No keep-alive for a client without a valid token: it may not hold gateway connections.
      close: true,
    };
  }
  return {
    refusal: { status, reason },
    body: {
      error: row.error,
      reason,
      destination: status === 403 ? facts.destination : undefined,
      detail,
      request_id: facts.requestId,
    },
    headers: status === 429 ? { 'retry-after': String(facts.retryAfter ?? 1) } : {},
    // After a request it would not read, the gateway does not read the next one on the same
    // connection either: where one request's framing was wrong, the next one's start is a guess.
    close: row.outcome === 'bad_request' || reason === 'shutdown' || reason === 'upstream_busy',
  };
}

/** A refusal answered on an HTTP response: reason phrase, x-reins-reason, JSON body. */
export function sendRefusal(res: ServerResponse, answer: RefusalAnswer): void {
  const { refusal, body, headers } = answer;
  const text = JSON.stringify(body);
  if (answer.close) res.shouldKeepAlive = false;
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
export function writeRefusal(socket: Socket, answer: RefusalAnswer): void {
  const { refusal, body, headers } = answer;
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
