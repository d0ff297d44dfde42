// The HTTP request transport: absolute-form requests (`GET http://api.example.com/v1/x`) and the
// requests inside inspected tunnels. It reads the request for evaluate(), answers the refusal
// evaluate names, or sends the request on to exactly the checked address, streamed both ways; the
// exchange is finished (published) once, however it ends.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { headerValues, isHttp11, type RefusalAnswer, refusalAnswer, sendRefusal } from './answers.ts';
import type { Core } from './core.ts';
import { evaluate, type Outcome, type Tunnel } from './evaluate.ts';
import type { Exchange } from './exchange.ts';
import {
  forwardHeaders,
  hostHeader,
  isTimeout,
  isTlsError,
  REQUEST_ID_HEADER,
  responseHeaders,
} from './forward.ts';
import type { Reason } from './reasons.ts';
import { type Claim, type Lease, poolKey } from './upstream-share.ts';

export async function onRequest(
  core: Core,
  req: IncomingMessage,
  res: ServerResponse,
  inside?: { readonly tunnel: Tunnel; readonly scheme: 'http' | 'https' },
): Promise<void> {
  const exchange = core.begin('request', inside !== undefined);
  try {
    await handle(core, req, res, exchange, inside);
  } catch {
    // A malfunction past evaluate() (a head Node would not write, a bug): answered 502 while
    // nothing was, and recorded either way — a request the gateway took is never left unrecorded.
    if (exchange.finished) return;
    exchange.abort = undefined;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      exchange.finish('internal', null);
      return;
    }
    const answer = refusalAnswer('internal', { requestId: exchange.requestId });
    clearHeaders(res);
    sendRefusal(res, answer);
    exchange.finish('internal', answer.refusal.status);
  }
}

async function handle(
  core: Core,
  req: IncomingMessage,
  res: ServerResponse,
  exchange: Exchange,
  inside: { readonly tunnel: Tunnel; readonly scheme: 'http' | 'https' } | undefined,
): Promise<void> {
  res.setHeader(REQUEST_ID_HEADER, exchange.requestId);
  // Not answered yet, so a cut (a stop) is answered 503 and nothing is forwarded: while being
  // decided (a DNS lookup can outlast the grace period), or when the request came on a
  // connection kept alive after the stop began.
  exchange.abort = (cut) => {
    req.resume();
    const answer = refusalAnswer(cut, { requestId: exchange.requestId });
    sendRefusal(res, answer);
    exchange.finish(cut, answer.refusal.status);
  };
  if (core.stopping) {
    exchange.cut('shutdown');
    return;
  }
  // The client may leave while the request waits for room or is decided (a held DNS lookup, a
  // key fetch). Its response then never closes again: what is taken for it after that (an
  // upstream slot, a dial) would never be given back (threat: a client resetting requests it
  // made slow to decide, until every slot of an origin is held by nobody).
  let left = false;
  const leave = () => {
    left = true;
  };
  res.once('close', leave);
  // Back-pressure from the observers (the audit queue full): wait for room before deciding. The
  // exchange is already in flight, so a stop meanwhile answers it rather than losing it.
  const room = core.events.room();
  if (room !== undefined) await room;
  if (exchange.finished) return;
  const outcome = await evaluate(core, {
    method: req.method ?? '',
    url: req.url ?? '',
    hosts: headerValues(req, 'host'),
    http11: isHttp11(req),
    proxyAuthorization: inside === undefined ? headerValues(req, 'proxy-authorization') : [],
    inside,
  });
  res.off('close', leave);
  exchange.abort = undefined;
  if (exchange.finished) return; // cut by the stop meanwhile: answered, never forwarded
  exchange.decided();
  exchange.facts = outcome.facts;
  if (outcome.kind === 'cut') {
    // Inside a tunnel whose token died: nothing more goes through it.
    req.socket.destroy();
    exchange.finish('invalid_token', null, outcome.problem);
    return;
  }
  if (outcome.kind !== 'forward' && outcome.kind !== 'refuse') {
    throw new Error(`a request cannot be evaluated to ${outcome.kind}`);
  }
  exchange.target = outcome.read?.target ?? null;
  if (left || req.socket.destroyed) {
    // Gone before the answer: nothing is sent or dialled. A refusal keeps its reason (threat: a
    // client closing each denied request early to keep its denials out of monitoring's view).
    if (outcome.kind === 'refuse') exchange.finish(outcome.reason, null, outcome.problem ?? outcome.detail);
    else exchange.finish('client_closed', null);
    return;
  }
  if (outcome.kind === 'refuse') {
    req.resume();
    refuse(res, exchange, outcome);
    return;
  }
  const { facts } = outcome;
  if (inside === undefined) {
    core.bindSocket(req.socket, facts);
    // This request's own binding too: a pipelined request with another token rebinds the
    // connection, and must not keep this one's response streaming after its token dies.
    const unbind = core.bind({ facts, sockets: [req.socket] });
    res.once('close', unbind);
  }
  if (outcome.windDown) res.shouldKeepAlive = false;
  await forward(core, req, res, exchange, outcome);
}

/** Takes back every header set for an answer that was not sent (upstream headers copied in part). */
function clearHeaders(res: ServerResponse): void {
  for (const name of res.getHeaderNames()) {
    if (name !== REQUEST_ID_HEADER) res.removeHeader(name);
  }
}

function refuse(
  res: ServerResponse,
  exchange: Exchange,
  outcome: Extract<Outcome, { kind: 'refuse' }>,
): void {
  const answer = refusalAnswer(outcome.reason, {
    requestId: exchange.requestId,
    detail: outcome.detail,
    problem: outcome.problem,
    destination: outcome.read?.authority ?? outcome.destination,
    retryAfter: outcome.retryAfter,
  });
  sendRefusal(res, answer);
  // A 407's detail is its credential problem; any other refusal's is its fault in words.
  exchange.finish(outcome.reason, answer.refusal.status, outcome.problem ?? outcome.detail);
}

/**
 * Sends an allowed request on to exactly the checked address and relays the answer. The exchange
 * is finished when it ends however it ends (answered, upstream failure, client gone, cut by a
 * stop): an allowed request never goes unrecorded, and its row says what the client was told.
 */
async function forward(
  core: Core,
  req: IncomingMessage,
  res: ServerResponse,
  exchange: Exchange,
  outcome: Extract<Outcome, { kind: 'forward' }>,
): Promise<void> {
  const { read, address, facts } = outcome;
  const { target } = read;
  exchange.target = target;
  exchange.rule = outcome.rule;
  exchange.address = address;
  const tls = target.scheme === 'https';
  const servername = tls && target.host.kind === 'name' ? target.host.name : undefined;
  // A slot of the upstream pool, within this token's and tenant's share (upstream-share.ts).
  const claim = {
    pool: poolKey(tls, address, target.port, servername),
    tenant: facts.tenant,
    token: facts.jti,
  };
  const lease = core.share.tryAcquire(claim) ?? (await waitForShare(core, res, exchange, claim));
  if (lease === undefined) return;
  send(core, req, res, exchange, outcome, lease, servername);
}

/**
 * Waits in the token's own queue for a slot. Undefined when none came: the exchange is then
 * finished here — answered 429 `upstream_busy` (out of time), or left (client gone, a stop).
 */
async function waitForShare(
  core: Core,
  res: ServerResponse,
  exchange: Exchange,
  claim: Claim,
): Promise<Lease | undefined> {
  const waiting = core.share.wait(claim);
  let cut: Reason | undefined;
  let gone = false;
  const leave = () => {
    gone = true;
    waiting.cancel();
  };
  res.once('close', leave);
  exchange.abort = (reason) => {
    cut = reason;
    waiting.cancel();
  };
  const admission = await waiting.admission;
  res.off('close', leave);
  exchange.abort = undefined;
  if (admission.ok) {
    // The client may have gone in the turn between the grant and now.
    if (!gone && !res.socket?.destroyed) return admission.lease;
    admission.lease.release();
    exchange.finish('client_closed', null);
    return undefined;
  }
  const reason: Reason = admission.reason === 'timeout' ? 'upstream_busy' : (cut ?? 'client_closed');
  if (reason === 'client_closed' || gone) {
    exchange.finish(reason, null);
    return undefined;
  }
  const detail = admission.reason === 'timeout' ? `${admission.cap}_share` : null;
  const answer = refusalAnswer(reason, { requestId: exchange.requestId, detail });
  sendRefusal(res, answer);
  exchange.finish(reason, answer.refusal.status, detail);
  return undefined;
}

function send(
  core: Core,
  req: IncomingMessage,
  res: ServerResponse,
  exchange: Exchange,
  outcome: Extract<Outcome, { kind: 'forward' }>,
  lease: Lease,
  servername: string | undefined,
): void {
  const { upstreams } = core;
  const { read, address } = outcome;
  const { target } = read;
  const tls = target.scheme === 'https';
  if (res.destroyed || req.socket.destroyed) {
    // Gone while the slot was granted: its close will not come again, so nothing would give the
    // slot back once dialled.
    lease.release();
    exchange.finish('client_closed', null);
    return;
  }
  exchange.dialling();
  let upstream: http.ClientRequest;
  try {
    upstream = (tls ? https : http).request({
      host: address,
      port: target.port,
      method: req.method,
      path: read.forwardPath,
      headers: forwardHeaders(req.headers, req.rawHeaders, hostHeader(target), exchange.requestId),
      agent: tls ? upstreams.https : upstreams.http,
      // Verify the certificate against the name the client asked for, not the address dialled.
      servername,
      // No `timeout` here: the agents carry limits.upstreamTimeoutMs (forward.ts).
    });
  } catch (err) {
    // Nothing was sent (a head Node would not write): the slot goes back, the caller answers.
    lease.release();
    throw err;
  }
  let status: number | null = null;
  let reason: Reason | null = null;
  /** Answers a refusal while nothing has been answered yet; else the client can only see a cut. */
  const fail = (failure: Reason): void => {
    reason = failure;
    if (res.headersSent) {
      // Mid-answer the client can only be told by a cut connection; a complete answer stands.
      if (!res.writableEnded) res.destroy();
      return;
    }
    const answer: RefusalAnswer = refusalAnswer(failure, { requestId: exchange.requestId });
    status = answer.refusal.status;
    sendRefusal(res, answer);
  };
  exchange.abort = (cut) => {
    upstream.destroy();
    fail(cut);
    if (!res.writableEnded) res.destroy();
  };
  // A body still to come streams at the minimum rate or is cut (body-rate.ts); one that is
  // already complete (no body, or all of it read with the head) is not watched.
  const watch = req.complete
    ? undefined
    : core.bodies.watch(req, () => {
        upstream.destroy();
        fail('body_too_slow');
      });
  if (watch !== undefined) req.once('end', () => watch.end());
  // The slot and the watch are held until both sides are done: the answer relayed and the request
  // finished upstream. Threat: an upstream that answers early (a 401 before reading the body)
  // would otherwise leave a trickling body holding its connection, uncounted and unwatched.
  let sides = 2;
  const sideDone = () => {
    if (--sides > 0) return;
    watch?.end();
    lease.release();
  };
  upstream.once('close', sideDone);
  res.on('close', () => {
    sideDone();
    if (!res.writableFinished) {
      upstream.destroy();
      reason ??= 'client_closed';
    }
    exchange.finish(reason, status);
  });
  upstream.on('timeout', () =>
    upstream.destroy(Object.assign(new Error('timeout'), { code: 'UPSTREAM_TIMEOUT' })),
  );
  upstream.on('error', (err) => {
    if (reason !== null) return;
    fail(isTlsError(err) ? 'upstream_tls' : isTimeout(err) ? 'upstream_timeout' : 'upstream_unreachable');
  });
  upstream.on('response', (upstreamRes) => {
    exchange.upstreamAnswered();
    const code = upstreamRes.statusCode ?? 0;
    // llhttp accepts any three digits; writeHead throws below 100, and a throw here would take
    // the process down with it. An upstream that answers nonsense is a bad gateway.
    if (!Number.isInteger(code) || code < 100 || code > 999) {
      upstreamRes.destroy();
      upstream.destroy();
      fail('upstream_invalid');
      return;
    }
    // Once a stop has begun, the client's next request goes to another gateway.
    if (core.stopping) res.shouldKeepAlive = false;
    try {
      res.writeHead(code, responseHeaders(upstreamRes));
    } catch {
      // writeHead copies header by header: what it took before the bad one must not ride on
      // the 502 (an upstream's Set-Cookie on the gateway's own answer).
      clearHeaders(res);
      upstream.destroy();
      fail('upstream_invalid');
      return;
    }
    status = code;
    upstreamRes.on('data', (chunk: Buffer) => {
      exchange.bytesIn += chunk.length;
    });
    upstreamRes.on('error', () => res.destroy());
    upstreamRes.pipe(res);
  });
  req.on('data', (chunk: Buffer) => {
    exchange.bytesOut += chunk.length;
    watch?.count(chunk.length);
  });
  req.pipe(upstream);
}
