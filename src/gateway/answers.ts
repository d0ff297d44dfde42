// How the gateway answers: JSON bodies, raw answers on CONNECT sockets (no HTTP response object
// exists there), the 407 challenge, the 403 denial. No answer carries a stack trace or a token.
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

export function answer407(res: ServerResponse, detail: string, requestId: string): void {
  res.setHeader('proxy-authenticate', 'Bearer realm="reins", error="invalid_token"');
  // No keep-alive for a client without a valid token: it may not hold gateway connections.
  res.shouldKeepAlive = false;
  sendJson(res, 407, { error: 'invalid_token', error_description: detail, request_id: requestId });
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

export function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

export function writeRaw(
  socket: Socket,
  status: number,
  text: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): void {
  if (!socket.writable) return;
  const json = JSON.stringify(body);
  const lines = [
    `HTTP/1.1 ${status} ${text}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(json)}`,
    'connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
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
