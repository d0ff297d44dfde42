// Absolute-form requests (`GET http://api.example.com/v1/x`): token, target, decision, then the
// request sent on to exactly the checked address, streamed both ways, audited once however the
// exchange ends. Also used for the requests inside inspected tunnels.
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { answer407, denial, headerValues, isHttp11, sendRefusal } from './answers.ts';
import { authenticate, judge, type Verdict } from './check.ts';
import type { Bound, Core } from './core.ts';
import {
  forwardHeaders,
  hostHeader,
  isTimeout,
  isTlsError,
  REQUEST_ID_HEADER,
  responseHeaders,
} from './forward.ts';
import { readAbsoluteTarget, type TargetRead } from './request-target.ts';
import type { TokenFacts } from './token.ts';

export async function onRequest(core: Core, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { options, bound, auditRoom, record, bindSocket } = core;
  await auditRoom();
  const started = performance.now();
  const requestId = randomUUID();
  res.setHeader(REQUEST_ID_HEADER, requestId);
  // Read before the token is checked, so that a 407's audit row says where it was going.
  const read = readAbsoluteTarget(req.method ?? '', req.url ?? '', headerValues(req, 'host'), isHttp11(req));
  const auth = await authenticate(options, headerValues(req, 'proxy-authorization'));
  if (!auth.ok) {
    req.resume();
    answer407(res, auth.problem, auth.detail, requestId);
    record(requestId, null, read.ok ? read : null, 'denied', 'invalid_token', 407, started, {
      detail: auth.problem,
    });
    return;
  }
  const { facts } = auth;
  bindSocket(req.socket, facts);
  // This request's own binding too: a pipelined request with another token rebinds the
  // connection, and must not keep this one's response streaming after its token dies.
  const inFlight: Bound = { facts, sockets: [req.socket] };
  bound.add(inFlight);
  res.once('close', () => bound.delete(inFlight));
  if (!read.ok) {
    req.resume();
    sendRefusal(
      res,
      { status: 400, reason: read.reason },
      { error: 'bad_request', reason: read.reason, detail: read.detail, request_id: requestId },
    );
    record(requestId, facts, null, 'denied', read.reason, 400, started, { detail: read.detail });
    return;
  }
  const verdict = await judge(options, facts, read.target, false);
  options.metrics?.decisionSeconds.observe((performance.now() - started) / 1000);
  if (verdict.verdict === 'deny') {
    req.resume();
    sendRefusal(res, { status: 403, reason: verdict.reason }, denial(verdict, read, requestId));
    record(requestId, facts, read, 'denied', verdict.reason, 403, started, { address: verdict.address });
    return;
  }
  await forward(core, req, res, facts, read, verdict, requestId, started);
}

export async function forward(
  core: Core,
  req: IncomingMessage,
  res: ServerResponse,
  facts: TokenFacts,
  read: Extract<TargetRead, { ok: true }>,
  verdict: Extract<Verdict, { verdict: 'allow' }>,
  requestId: string,
  started: number,
  inspected = false,
): Promise<void> {
  const { options, limits, upstreams, record } = core;
  const { target } = read;
  const tls = target.scheme === 'https';
  let bytesOut = 0;
  let bytesIn = 0;
  const dialled = performance.now();
  const upstream = (tls ? https : http).request({
    host: verdict.address,
    port: target.port,
    method: req.method,
    path: read.forwardPath,
    headers: forwardHeaders(req.headers, req.rawHeaders, hostHeader(target), requestId),
    agent: tls ? upstreams.https : upstreams.http,
    // Verify the certificate against the name the client asked for, not the address dialled.
    servername: tls && target.host.kind === 'name' ? target.host.name : undefined,
    timeout: limits.upstreamTimeoutMs,
  });
  // Exactly one audit row per forwarded request, written when the exchange ends however it
  // ends (finished, upstream failure, client gone): an allowed request never goes unrecorded.
  let status: number | null = null;
  let reason: string | null = null;
  let recorded = false;
  const finish = () => {
    if (recorded) return;
    recorded = true;
    record(requestId, facts, read, 'allowed', reason, status, started, {
      address: verdict.address,
      rule: verdict.rule,
      inspected,
      bytesIn,
      bytesOut,
    });
  };
  res.on('close', () => {
    if (!res.writableFinished) {
      upstream.destroy();
      reason ??= 'client_closed';
    }
    finish();
  });
  upstream.on('timeout', () =>
    upstream.destroy(Object.assign(new Error('timeout'), { code: 'UPSTREAM_TIMEOUT' })),
  );
  upstream.on('error', (err) => {
    reason = isTlsError(err) ? 'upstream_tls' : isTimeout(err) ? 'upstream_timeout' : 'upstream_unreachable';
    if (res.headersSent) {
      // Mid-answer the client can only be told by a cut connection; a complete answer stands.
      if (!res.writableEnded) res.destroy();
      return;
    }
    status = isTimeout(err) ? 504 : 502;
    sendRefusal(res, { status, reason }, { error: 'upstream_error', reason, request_id: requestId });
  });
  upstream.on('response', (upstreamRes) => {
    options.metrics?.upstreamSeconds.observe({ kind: 'request' }, (performance.now() - dialled) / 1000);
    const code = upstreamRes.statusCode ?? 0;
    // llhttp accepts any three digits; writeHead throws below 100, and a throw here would take
    // the process down with it. An upstream that answers nonsense is a bad gateway.
    if (!Number.isInteger(code) || code < 100 || code > 999) {
      upstreamRes.destroy();
      upstream.destroy();
      reason = 'upstream_invalid';
      status = 502;
      sendRefusal(res, { status, reason }, { error: 'upstream_error', reason, request_id: requestId });
      return;
    }
    status = code;
    try {
      res.writeHead(code, responseHeaders(upstreamRes));
    } catch {
      reason = 'upstream_invalid';
      upstream.destroy();
      res.destroy();
      return;
    }
    upstreamRes.on('data', (chunk: Buffer) => {
      bytesIn += chunk.length;
    });
    upstreamRes.on('error', () => res.destroy());
    upstreamRes.pipe(res);
  });
  req.on('data', (chunk: Buffer) => {
    bytesOut += chunk.length;
  });
  req.pipe(upstream);
}
