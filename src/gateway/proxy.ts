// The verifying forward proxy (SPEC.md, "The gateway"): the listener, and what closes
// connections whose token dies. What each request gets is elsewhere: absolute-form requests in
// requests.ts, CONNECT in tunnels.ts, inspected tunnels in inspect.ts, the decision in decide.ts
// (pure) reached through check.ts.
//
// Limits, so that a slow or hostile client cannot exhaust the gateway: header size (16 KiB,
// request line included), header and idle timeouts, tunnels per token, a connection ceiling.
// Every socket has an error handler: no input crashes the process.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { sendJson } from './answers.ts';
import { tunnelStillAllowed } from './check.ts';
import { createCore, DEFAULT_LIMITS, type GatewayOptions } from './core.ts';
import { upstreamAgents } from './forward.ts';
import { onInnerRequest } from './inspect.ts';
import { onRequest } from './requests.ts';
import { onConnect } from './tunnels.ts';

export type { GatewayLimits, GatewayOptions } from './core.ts';

export interface Gateway {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const upstreams = upstreamAgents(options.upstreamCa);

  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0, // bodies stream for as long as they need; idle sockets time out below
    keepAliveTimeout: 5_000,
    // The absolute-form target names the host; a Host header, when sent, must agree with it
    // (request-target.ts). Node would otherwise answer 400 itself, without a reason.
    requireHostHeader: false,
  });
  // Requests inside inspected tunnels: the same limits, fed one tunnel at a time.
  const inner = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: limits.idleTimeoutMs,
    requireHostHeader: false,
  });
  const core = createCore(options, limits, upstreams, inner);
  const { now, bound } = core;
  inner.on('clientError', (_err, socket) => socket.destroy());
  inner.on('request', (req: IncomingMessage, res: ServerResponse) => {
    onInnerRequest(core, req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 502, { error: 'upstream_error', reason: 'internal' });
      else res.destroy();
    });
  });
  // A ceiling on open client connections: past it, new ones are refused by the kernel backlog
  // rather than exhausting the process.
  server.maxConnections = limits.maxConnections;
  server.on('connection', (socket: Socket) => {
    socket.setTimeout(limits.idleTimeoutMs, () => socket.destroy());
    socket.on('error', () => {});
  });
  server.on('clientError', (_err, socket: Socket) => {
    if (socket.writable) {
      socket.end(
        'HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":"bad_request"}',
      );
    } else socket.destroy();
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    onRequest(core, req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 502, { error: 'upstream_error', reason: 'internal' });
      else res.destroy();
    });
  });
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {});
    onConnect(core, req, socket, head).catch(() => socket.destroy());
  });

  // Tokens die while connections live: revoked, expired, or the agent quarantined. Close what
  // they hold within a second (the sweep) or at once (the change feed).
  const unsubscribe = options.live.onChange((change) => sweep(change.kind === 'policy'));
  const sweeper = setInterval(sweep, 250);
  sweeper.unref();
  function sweep(recheckTunnels = false): void {
    const nowSeconds = Math.floor(now().getTime() / 1000);
    for (const entry of bound) {
      const { facts } = entry;
      if (
        facts.exp <= nowSeconds ||
        options.live.isRevoked(facts.jti) ||
        options.live.isQuarantined(facts.tenant, facts.agent) ||
        // A policy apply that removes a destination (or makes it another tenant's) ends the
        // tunnels to it too, not only new requests.
        (recheckTunnels && entry.tunnel !== undefined && !tunnelStillAllowed(options, facts, entry.tunnel))
      ) {
        for (const socket of entry.sockets) socket.destroy();
        bound.delete(entry);
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    port,
    async close() {
      unsubscribe();
      clearInterval(sweeper);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      for (const entry of bound) for (const socket of entry.sockets) socket.destroy();
      server.closeAllConnections();
      inner.closeAllConnections();
      await closed;
      upstreams.http.destroy();
      upstreams.https.destroy();
    },
  };
}
