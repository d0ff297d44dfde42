// The verifying forward proxy (SPEC.md, "The gateway"): the listener, what closes connections
// whose token dies, and the graceful stop. What each request gets is elsewhere: evaluate.ts turns
// a request into an outcome (the decision itself in decide.ts, pure); the transports adapt I/O —
// absolute-form and inner requests in requests.ts, CONNECT in tunnels.ts, inspected tunnels in
// inspect.ts; each exchange is published on the event stream (events.ts) for audit and metrics.
//
// Limits, so that a slow or hostile client cannot exhaust the gateway: header size (16 KiB,
// request line included), header and idle timeouts, tunnels per token, a connection ceiling.
// Every socket has an error handler: no input crashes the process.
//
// The timeouts are the documented ones to within a fraction of a second (docs/configuration.md).
// Node's defaults are not: it checks headersTimeout only every connectionsCheckingInterval (30 s),
// so a 10 s limit closed slow heads after 10 to 40 s; an idle keep-alive connection was closed by
// keepAliveTimeout (5 s here, plus Node's 1 s buffer) rather than the idle limit; and a request
// that followed a keep-alive pause ran with no inactivity timeout at all (Node resets the socket's
// timeout to server.timeout, 0 by default). Threat: slowloris-style clients holding connections
// far longer than the operator was told.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { refusalAnswer, sendRefusal, writeRefusal } from './answers.ts';
import { standingLost, tunnelStillAllowed } from './check.ts';
import { createCore, DEFAULT_LIMITS, type GatewayLimits, type GatewayOptions } from './core.ts';
import type { ExchangeStream } from './events.ts';
import { upstreamAgents } from './forward.ts';
import { onInnerRequest } from './inspect.ts';
import { onRequest } from './requests.ts';
import { onConnect } from './tunnels.ts';

export type { GatewayLimits, GatewayOptions } from './core.ts';

export interface Gateway {
  readonly url: string;
  readonly port: number;
  /** Every finished exchange, published once (events.ts). */
  readonly events: ExchangeStream;
  /**
   * Stops accepting, lets exchanges in flight finish within the shutdown grace period, cuts what
   * remains (each published as `shutdown`), then closes every connection. When it resolves, every
   * exchange the gateway began has been published: drain the audit writer after it, not before.
   */
  close(): Promise<void>;
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const upstreams = upstreamAgents(
    options.upstreamCa,
    limits.upstreamSocketsPerOrigin,
    limits.upstreamTimeoutMs,
  );

  const server = http.createServer(serverOptions(limits));
  // Bytes stalled mid-request (a body that stops, an answer that stops) close the connection after
  // idleTimeoutMs too: Node applies server.timeout to each request's socket. No 'timeout' listener
  // on the server, so Node destroys the socket.
  server.timeout = limits.idleTimeoutMs;
  // Requests inside inspected tunnels: the same limits, fed one tunnel at a time.
  const inner = http.createServer(serverOptions(limits));
  inner.timeout = limits.idleTimeoutMs;
  // This server never listens (its connections are handed to it), and Node starts the periodic
  // check that enforces headersTimeout on 'listening'. Without it a client inside a tunnel could
  // take for ever to send a request head.
  inner.emit('listening');
  const core = createCore(options, limits, upstreams, inner);
  const { now, bound, inFlight } = core;
  inner.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') answerClientError(err, socket);
    else socket.destroy();
  });
  inner.on('request', (req: IncomingMessage, res: ServerResponse) => {
    onInnerRequest(core, req, res).catch(() => internalError(res));
  });
  // A ceiling on open client connections: past it, new ones are refused by the kernel backlog
  // rather than exhausting the process.
  server.maxConnections = limits.maxConnections;
  server.on('connection', (socket: Socket) => {
    // Node's own idle handling leaves a socket once it becomes a CONNECT tunnel; this stays, so a
    // tunnel with no bytes either way for idleTimeoutMs is closed too.
    socket.setTimeout(limits.idleTimeoutMs, () => socket.destroy());
    socket.on('error', () => {});
  });
  server.on('clientError', answerClientError);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    onRequest(core, req, res).catch(() => internalError(res));
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
  // Waits for an upstream share and body rates are judged on one coarse tick, not a timer per
  // request: each holds to within a tenth of its limit (at most 250 ms).
  const fairness = setInterval(
    () => {
      core.share.expire();
      core.bodies.check();
    },
    Math.max(10, Math.min(250, Math.floor(Math.min(limits.upstreamWaitMs, limits.bodyRateWindowMs) / 10))),
  );
  fairness.unref();
  function sweep(recheckTunnels = false): void {
    const nowSeconds = Math.floor(now().getTime() / 1000);
    for (const entry of bound) {
      const { facts } = entry;
      if (
        standingLost(options.live, facts, nowSeconds) !== null ||
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
    server.listen({ port: options.port, host: options.host, reusePort: options.reusePort === true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    port,
    events: core.events,
    close() {
      closing ??= stop();
      return closing;
    },
  };

  async function stop(): Promise<void> {
    core.stopping = true;
    unsubscribe();
    clearInterval(sweeper);
    clearInterval(fairness);
    // Stop accepting; connections with nothing in flight go now, the others once their exchange ends.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    await settled(limits.shutdownGraceMs);
    // What is left after the grace period is cut, each exchange published as cut by the stop.
    for (const exchange of [...inFlight]) exchange.cut('shutdown');
    for (const entry of bound) for (const socket of entry.sockets) socket.destroy();
    server.closeAllConnections();
    inner.closeAllConnections();
    // Stops its connection checks (it never listened: close only ends what 'listening' began).
    inner.close();
    await closed;
    // A cut exchange finishes on its sockets' close events, a turn or two later.
    await settled(1_000);
    for (const exchange of [...inFlight]) exchange.finish('shutdown', null);
    upstreams.http.destroy();
    upstreams.https.destroy();
  }

  /** Resolves once no exchange is in flight, or after `ms`. */
  function settled(ms: number): Promise<void> {
    if (inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const deadline = setTimeout(done, ms);
      const poll = setInterval(() => {
        if (inFlight.size === 0) done();
      }, 10);
      function done() {
        clearTimeout(deadline);
        clearInterval(poll);
        resolve();
      }
    });
  }
}

/**
 * headersTimeoutMs: from a connection's opening, or from the first byte of each further request on
 * it, to the end of the request head. Node checks it every connectionsCheckingInterval, so the
 * interval is a small fraction of the limit (at most 1 s): the limit holds to within that.
 * idleTimeoutMs: how long a keep-alive connection may wait for its next request. Node adds a
 * keepAliveTimeoutBuffer (1 s by default) to it; 0 makes the advertised limit the real one.
 */
function serverOptions(limits: GatewayLimits): http.ServerOptions {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    connectionsCheckingInterval: checkingInterval(limits.headersTimeoutMs),
    requestTimeout: 0, // bodies stream for as long as they need; stalled ones time out as idle
    keepAliveTimeout: limits.idleTimeoutMs,
    keepAliveTimeoutBuffer: 0,
    // The absolute-form target names the host; a Host header must agree with it
    // (request-target.ts), and one missing from an HTTP/1.1 request is refused there with a
    // reason, where Node would answer 400 itself without one.
    requireHostHeader: false,
  } as http.ServerOptions;
}

/** How often Node looks for heads that took too long: a tenth of the limit, within 10 ms to 1 s. */
export function checkingInterval(headersTimeoutMs: number): number {
  return Math.min(1_000, Math.max(10, Math.floor(headersTimeoutMs / 10)));
}

/**
 * What Node's parser gave up on: a head that took longer than headersTimeoutMs (408), or one it
 * could not read (400: malformed, too large). Answered raw, with the reason, and closed.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const reason =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'headers_timeout'
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? 'headers_too_large'
        : 'malformed';
  writeRefusal(socket, refusalAnswer(reason, {}));
}

function internalError(res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendRefusal(res, refusalAnswer('internal', {}));
}
