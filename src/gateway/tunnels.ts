// The CONNECT transport: evaluate(), then a plain tunnel to an origin the token grants whole
// (end-to-end TLS, nothing inspected), an inspected tunnel to one it grants in part (inspect.ts),
// or the refusal evaluate names, written raw on the socket (no HTTP response object exists there).
import type { IncomingMessage } from 'node:http';
import net, { type Socket } from 'node:net';
import { headerValues, isHttp11, refusalAnswer, writeRefusal } from './answers.ts';
import { standingLost } from './check.ts';
import type { Core } from './core.ts';
import { evaluate, type Outcome } from './evaluate.ts';
import type { Exchange } from './exchange.ts';
import { isTimeout } from './forward.ts';
import { openInspected } from './inspect.ts';
import type { Reason } from './reasons.ts';

export async function onConnect(
  core: Core,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
): Promise<void> {
  const exchange = core.begin('connect');
  try {
    await handle(core, req, socket, head, exchange);
  } catch {
    // A malfunction past evaluate(): answered 502 while nothing was, and recorded either way.
    if (exchange.finished) return;
    exchange.abort = undefined;
    refuse(socket, exchange, 'internal', null);
  }
}

async function handle(
  core: Core,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
  exchange: Exchange,
): Promise<void> {
  // As for requests (requests.ts): a CONNECT cut by a stop before it is decided is answered 503
  // and closed, no tunnel opened. Without this its socket (no longer the HTTP server's to close)
  // held close() open until the idle timeout.
  exchange.abort = (cut) => refuse(socket, exchange, cut, null);
  if (core.stopping) {
    exchange.cut('shutdown');
    return;
  }
  const room = core.events.room();
  if (room !== undefined) await room;
  if (exchange.finished) return;
  const outcome = await evaluate(core, {
    method: 'CONNECT',
    url: req.url ?? '',
    hosts: headerValues(req, 'host'),
    http11: isHttp11(req),
    proxyAuthorization: headerValues(req, 'proxy-authorization'),
  });
  exchange.abort = undefined;
  if (exchange.finished) {
    if (outcome.kind === 'tunnel' || outcome.kind === 'inspect') outcome.release();
    return;
  }
  exchange.decided();
  exchange.facts = outcome.facts;
  if (outcome.kind !== 'refuse' && outcome.kind !== 'inspect' && outcome.kind !== 'tunnel') {
    throw new Error(`a CONNECT cannot be evaluated to ${outcome.kind}`);
  }
  exchange.target = outcome.read?.target ?? null;
  if (socket.destroyed) {
    // The client left while the CONNECT was decided: its close has been and gone, so a tunnel
    // opened now would hold its slot (and for a plain one, an upstream connection) for nobody
    // (threat: a client resetting CONNECTs it made slow to decide, until its tunnel cap and the
    // gateway's connections are held by nothing). A refusal keeps its reason.
    if (outcome.kind === 'refuse') {
      exchange.finish(outcome.reason, null, outcome.problem ?? outcome.detail);
      return;
    }
    outcome.release();
    exchange.finish('client_closed', null);
    return;
  }
  switch (outcome.kind) {
    case 'refuse':
      refuse(
        socket,
        exchange,
        outcome.reason,
        outcome.detail,
        outcome.problem,
        outcome.read?.authority,
        outcome.retryAfter,
      );
      return;
    case 'inspect':
      exchange.inspected = true;
      exchange.tunnel = 'inspected';
      await openInspected(core, socket, head, exchange, outcome);
      return;
    case 'tunnel':
      exchange.rule = outcome.rule;
      exchange.address = outcome.address;
      plainTunnel(core, socket, head, exchange, outcome);
      return;
  }
}

function refuse(
  socket: Socket,
  exchange: Exchange,
  reason: Reason,
  detail: string | null,
  problem?: string,
  destination?: string,
  retryAfter?: number,
): void {
  const answer = refusalAnswer(reason, {
    requestId: exchange.requestId,
    detail,
    problem,
    destination,
    retryAfter,
  });
  writeRefusal(socket, answer);
  exchange.finish(reason, answer.refusal.status, problem ?? detail);
}

/** A plain tunnel: dial the checked address, answer 200, relay bytes both ways until either end closes. */
function plainTunnel(
  core: Core,
  socket: Socket,
  head: Buffer,
  exchange: Exchange,
  outcome: Extract<Outcome, { kind: 'tunnel' }>,
): void {
  const { limits, live, now, events } = core;
  const { facts, release } = outcome;
  exchange.dialling();
  const upstream = net.connect({ host: outcome.address, port: outcome.read.target.port });
  let opened = false;
  exchange.bytesOut = head.length;
  socket.once('close', () => {
    if (opened) return;
    upstream.destroy();
    release();
    // The client left before the tunnel opened.
    exchange.finish('client_closed', null);
  });
  exchange.abort = (cut) => {
    if (!opened) {
      release();
      refuse(socket, exchange, cut, null);
      upstream.destroy();
      return;
    }
    closeWith(cut);
  };
  upstream.setTimeout(limits.upstreamTimeoutMs, () =>
    upstream.destroy(Object.assign(new Error('timeout'), { code: 'UPSTREAM_TIMEOUT' })),
  );
  upstream.on('error', (err) => {
    if (opened) {
      socket.destroy();
      return;
    }
    release();
    // The answer and the row say the same: a timeout is 504 upstream_timeout in both.
    refuse(socket, exchange, isTimeout(err) ? 'upstream_timeout' : 'upstream_unreachable', null);
  });
  let cutReason: Reason | null = null;
  let closed = false;
  const closeWith = (reason: Reason | null) => {
    if (closed) return;
    closed = true;
    cutReason ??= reason;
    socket.destroy();
    upstream.destroy();
    unbind();
    release();
    events.publishTunnel({ phase: 'close', mode: 'plain' });
    exchange.finish(cutReason, 200);
  };
  let unbind = () => {};
  upstream.on('connect', () => {
    if (exchange.finished) {
      upstream.destroy();
      return;
    }
    opened = true;
    exchange.upstreamAnswered();
    // The token may have died while the name resolved and the upstream answered: refused as it
    // would be now, before any byte goes through.
    const nowSeconds = Math.floor(now().getTime() / 1000);
    const problem = standingLost(live, facts, nowSeconds);
    if (problem !== null) {
      release();
      upstream.destroy();
      if (problem !== 'quarantined')
        refuse(
          socket,
          exchange,
          'invalid_token',
          `the token has ${problem === 'revoked' ? 'been revoked' : 'expired'}`,
          problem,
        );
      else refuse(socket, exchange, 'agent_quarantined', 'the agent was quarantined while the tunnel opened');
      return;
    }
    upstream.setTimeout(limits.idleTimeoutMs);
    exchange.tunnel = 'plain';
    events.publishTunnel({ phase: 'open', mode: 'plain' });
    unbind = core.bind({ facts, sockets: [socket, upstream], tunnel: outcome.read.target });
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) upstream.write(head);
    socket.on('data', (chunk: Buffer) => {
      exchange.bytesOut += chunk.length;
    });
    upstream.on('data', (chunk: Buffer) => {
      exchange.bytesIn += chunk.length;
    });
    socket.pipe(upstream);
    upstream.pipe(socket);
    socket.on('close', () => closeWith(null));
    upstream.on('close', () => closeWith(null));
  });
}
