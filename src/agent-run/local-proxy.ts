// `reins run`'s local proxy: an HTTP proxy on an ephemeral loopback port that the command's
// clients use through HTTP(S)_PROXY. It adds the agent's current token and sends everything on
// to the gateway, which does all the checking; this proxy decides nothing about destinations.
//
// - Absolute-form requests (`GET http://host/path`) go to the gateway as proxy requests: same
//   target, the client's headers minus hop-by-hop ones, `Proxy-Authorization: Bearer <token>`
//   in place of whatever the client sent; bodies stream both ways; connections to the gateway
//   are kept alive.
// - `CONNECT host:port` is relayed on a connection of its own (connect-relay.ts).
// - Clients must be local and present this run's proxy credential (the Basic password in the
//   proxy URL the command is given): the port is reachable by every local user and process,
//   and without it any of them could send traffic under the agent's identity.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { relayConnect, writeAnswer } from './connect-relay.ts';

export interface LocalProxyOptions {
  /** The gateway, http://host:port. */
  readonly gateway: URL;
  /** The agent's current token (TokenSource.current). */
  readonly token: () => Promise<string>;
  /** The Basic password clients must send; a random one when absent. */
  readonly credential?: string;
  /** Default 0: any free port. */
  readonly port?: number;
}

export interface LocalProxy {
  readonly port: number;
  /** http://reins:<credential>@127.0.0.1:<port>, what HTTP(S)_PROXY is set to. */
  readonly url: string;
  close(): Promise<void>;
}

/** The user name in the proxy URL; any is accepted, the password is what counts. */
const PROXY_USER = 'reins';
const REALM = 'Basic realm="reins run"';

// RFC 9110 §7.6.1: connection-specific, never forwarded. Transfer-Encoding is kept on
// requests: Node re-frames the body it forwards in the same encoding.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'upgrade',
]);

export async function startLocalProxy(options: LocalProxyOptions): Promise<LocalProxy> {
  const credential = options.credential ?? randomBytes(24).toString('base64url');
  const gatewayHost = options.gateway.hostname.replace(/^\[(.*)\]$/, '$1');
  const gatewayPort = Number(options.gateway.port || 80);
  const agent = new http.Agent({ keepAlive: true });
  const tunnels = new Set<Socket>();
  const track = (socket: Socket) => {
    tunnels.add(socket);
    socket.once('close', () => tunnels.delete(socket));
  };

  const server = http.createServer({ requireHostHeader: false });
  server.on('connection', (socket: Socket) => {
    socket.on('error', () => {});
    // Bound to loopback already; checked again so a change of bind address cannot open it.
    if (!isLoopback(socket.remoteAddress)) socket.destroy();
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    onRequest(req, res).catch(() => {
      if (!res.headersSent) answer(res, 502, { error: 'gateway_unreachable' });
      else res.destroy();
    });
  });
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    track(socket);
    socket.on('error', () => {});
    onConnect(req, socket, head).catch(() => socket.destroy());
  });
  server.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => {});
    writeAnswer(socket, 501, 'Not Implemented', {
      error: 'not_implemented',
      error_description: 'use CONNECT for WebSockets through reins run',
    });
  });

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorised(req, credential)) {
      req.resume();
      answer(res, 407, proxyAuthRequired(), { 'proxy-authenticate': REALM });
      return;
    }
    if (!/^https?:\/\//i.test(req.url ?? '')) {
      req.resume();
      answer(res, 400, {
        error: 'bad_request',
        error_description: 'this is an HTTP proxy: send absolute-form requests or CONNECT',
      });
      return;
    }
    let token: string;
    try {
      token = await options.token();
    } catch (err) {
      req.resume();
      answer(res, 503, tokenUnavailable(err));
      return;
    }
    forward(req, res, token, true);
  }

  function forward(req: IncomingMessage, res: ServerResponse, token: string, mayRetry: boolean): void {
    const bodiless = hasNoBody(req);
    const upstream = http.request({
      host: gatewayHost,
      port: gatewayPort,
      method: req.method,
      path: req.url,
      headers: [...requestHeaders(req.rawHeaders), 'Proxy-Authorization', `Bearer ${token}`],
      agent,
      // The client's Host (or none) goes on unchanged: the gateway compares it with the target.
      setHost: false,
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // A kept-alive connection the gateway closed just as it was reused: nothing reached the
      // gateway, so a request without a body is sent again once, on a new connection.
      if (mayRetry && bodiless && upstream.reusedSocket && err.code === 'ECONNRESET') {
        forward(req, res, token, false);
        return;
      }
      answer(res, 502, {
        error: 'gateway_unreachable',
        error_description: `reins run cannot reach the gateway: ${err.code ?? err.message}`,
      });
    });
    upstream.on('response', (reply: IncomingMessage) => {
      res.writeHead(reply.statusCode ?? 502, reply.statusMessage, responseHeaders(reply.rawHeaders));
      reply.pipe(res);
      reply.on('error', () => res.destroy());
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    if (bodiless) upstream.end();
    else req.pipe(upstream);
  }

  async function onConnect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    if (!authorised(req, credential)) {
      writeAnswer(socket, 407, 'Proxy Authentication Required', proxyAuthRequired(), {
        'proxy-authenticate': REALM,
      });
      return;
    }
    const target = req.url ?? '';
    if (!/^[\x21-\x7e]+$/.test(target)) {
      writeAnswer(socket, 400, 'Bad Request', {
        error: 'bad_request',
        error_description: 'bad CONNECT target',
      });
      return;
    }
    let token: string;
    try {
      token = await options.token();
    } catch (err) {
      writeAnswer(socket, 503, 'Service Unavailable', tokenUnavailable(err));
      return;
    }
    const userAgent = req.headers['user-agent'];
    relayConnect({
      gatewayHost,
      gatewayPort,
      target,
      token,
      userAgent: typeof userAgent === 'string' && /^[\x20-\x7e]*$/.test(userAgent) ? userAgent : undefined,
      client: socket,
      head,
      track,
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://${PROXY_USER}:${credential}@127.0.0.1:${port}`,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const socket of tunnels) socket.destroy();
      agent.destroy();
      await closed;
    },
  };
}

/** Whether the request carries this run's credential as the Basic password. */
function authorised(req: IncomingMessage, credential: string): boolean {
  const value = req.headers['proxy-authorization'];
  if (typeof value !== 'string') return false;
  const match = /^basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(value);
  if (match === null) return false;
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
  const password = decoded.slice(decoded.indexOf(':') + 1);
  const given = Buffer.from(safeDecode(password));
  const expected = Buffer.from(credential);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

function hasNoBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

/** rawHeaders minus hop-by-hop headers and those the client's Connection header names. */
function requestHeaders(raw: readonly string[]): string[] {
  return withoutHopByHop(raw, new Set());
}

/** The framing of a response is Node's to choose for the client's connection. */
function responseHeaders(raw: readonly string[]): string[] {
  return withoutHopByHop(raw, new Set(['transfer-encoding']));
}

function withoutHopByHop(raw: readonly string[], extra: ReadonlySet<string>): string[] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() === 'connection') {
      for (const token of (raw[i + 1] ?? '').split(',')) named.add(token.trim().toLowerCase());
    }
  }
  const kept: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || extra.has(lower) || named.has(lower)) continue;
    kept.push(name, raw[i + 1] ?? '');
  }
  return kept;
}

function proxyAuthRequired(): Record<string, string> {
  return {
    error: 'proxy_auth_required',
    error_description:
      'use the proxy URL reins run put in HTTP_PROXY / HTTPS_PROXY (it holds the credential)',
  };
}

function tokenUnavailable(err: unknown): Record<string, string> {
  return {
    error: 'token_unavailable',
    error_description: err instanceof Error ? err.message : 'no token',
  };
}

function answer(
  res: ServerResponse,
  status: number,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): void {
  const json = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(json),
    ...headers,
  });
  res.end(json);
}
