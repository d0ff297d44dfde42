// The verifying forward proxy (SPEC.md, "The gateway"). Absolute-form requests are checked one
// by one and forwarded to the checked address; CONNECT to an origin the token grants whole
// becomes a plain tunnel. Every decision is answered, audited and counted here; the decision
// itself is decide() (pure), reached through check.ts.
//
// Limits, so that a slow or hostile client cannot exhaust the gateway: header size (16 KiB,
// request line included), header and idle timeouts, tunnels per token. Every socket has an
// error handler: no input crashes the process.
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net, { type AddressInfo, type Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import { formatAddress } from '../egress/address.ts';
import type { Target } from '../egress/index.ts';
import type { AuditEvent } from './audit.ts';
import { authenticate, type CheckContext, judge, tunnelStillAllowed, type Verdict } from './check.ts';
import {
  forwardHeaders,
  hostHeader,
  isTimeout,
  isTlsError,
  REQUEST_ID_HEADER,
  responseHeaders,
  upstreamAgents,
} from './forward.ts';
import {
  attachTunnel,
  firstBytes,
  type InterceptMode,
  type Interceptor,
  looksLikeTls,
  namesTunnelHost,
  replayed,
  type Tunnel,
  tunnelOf,
} from './inspect.ts';
import type { GatewayMetrics } from './metrics.ts';
import { readAbsoluteTarget, readConnectTarget, type TargetRead } from './request-target.ts';
import type { TokenFacts } from './token.ts';

export interface GatewayOptions extends CheckContext {
  readonly host: string;
  /** 0: an ephemeral port. */
  readonly port: number;
  readonly audit: { record(event: AuditEvent): Promise<void> | undefined };
  readonly metrics?: GatewayMetrics;
  /** Extra PEM the gateway trusts for upstream TLS (REINS_GATEWAY_UPSTREAM_CA). */
  readonly upstreamCa?: string;
  readonly limits?: Partial<GatewayLimits>;
  readonly now?: () => Date;
  /** REINS_GATEWAY_INTERCEPT: which CONNECT tunnels are inspected (default auto). */
  readonly intercept?: InterceptMode;
  /** Certificates for inspected TLS tunnels; without it no tunnel is inspected. */
  readonly interceptor?: Interceptor;
}

export interface GatewayLimits {
  readonly maxHeaderBytes: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly upstreamTimeoutMs: number;
  readonly tunnelsPerToken: number;
  readonly maxConnections: number;
}

const DEFAULT_LIMITS: GatewayLimits = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  upstreamTimeoutMs: 30_000,
  tunnelsPerToken: 128,
  maxConnections: 20_000,
};

export interface Gateway {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** A client connection or tunnel bound to a token: closed when the token dies. */
interface Bound {
  facts: TokenFacts;
  readonly sockets: Socket[];
  /** A plain tunnel's destination: re-decided when the policy changes. */
  readonly tunnel?: Target;
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const now = options.now ?? (() => new Date());
  const upstreams = upstreamAgents(options.upstreamCa);
  const bound = new Set<Bound>();
  // Back-pressure from the audit writer: while its queue is full, new requests wait for room
  // before they are decided (a decision that could not be audited must not be taken).
  let auditPressure: Promise<void> | undefined;
  const auditRoom = async () => {
    while (auditPressure !== undefined) await auditPressure;
  };
  const tunnelsByJti = new Map<string, number>();

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
  inner.on('clientError', (_err, socket) => socket.destroy());
  inner.on('request', (req: IncomingMessage, res: ServerResponse) => {
    onInnerRequest(req, res).catch(() => {
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
    onRequest(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 502, { error: 'upstream_error', reason: 'internal' });
      else res.destroy();
    });
  });
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {});
    onConnect(req, socket, head).catch(() => socket.destroy());
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

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    await auditRoom();
    const started = performance.now();
    const requestId = randomUUID();
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const auth = await authenticate(options, headerValues(req, 'proxy-authorization'));
    if (!auth.ok) {
      req.resume();
      answer407(res, auth.detail, requestId);
      record(requestId, null, null, 'denied', 'invalid_token', 407, started);
      return;
    }
    const { facts } = auth;
    bindSocket(req.socket, facts);
    // This request's own binding too: a pipelined request with another token rebinds the
    // connection, and must not keep this one's response streaming after its token dies.
    const inFlight: Bound = { facts, sockets: [req.socket] };
    bound.add(inFlight);
    res.once('close', () => bound.delete(inFlight));
    const read = readAbsoluteTarget(req.method ?? '', req.url ?? '', headerValues(req, 'host'));
    if (!read.ok) {
      req.resume();
      sendJson(res, 400, {
        error: 'bad_request',
        reason: read.reason,
        detail: read.detail,
        request_id: requestId,
      });
      record(requestId, facts, null, 'denied', read.reason, 400, started);
      return;
    }
    const verdict = await judge(options, facts, read.target, false);
    options.metrics?.decisionSeconds.observe((performance.now() - started) / 1000);
    if (verdict.verdict === 'deny') {
      req.resume();
      sendJson(res, 403, denial(verdict, read, requestId));
      record(requestId, facts, read, 'denied', verdict.reason, 403, started, { address: verdict.address });
      return;
    }
    await forward(req, res, facts, read, verdict, requestId, started);
  }

  async function forward(
    req: IncomingMessage,
    res: ServerResponse,
    facts: TokenFacts,
    read: Extract<TargetRead, { ok: true }>,
    verdict: Extract<Verdict, { verdict: 'allow' }>,
    requestId: string,
    started: number,
    inspected = false,
  ): Promise<void> {
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
      reason = isTlsError(err)
        ? 'upstream_tls'
        : isTimeout(err)
          ? 'upstream_timeout'
          : 'upstream_unreachable';
      if (res.headersSent) {
        // Mid-answer the client can only be told by a cut connection; a complete answer stands.
        if (!res.writableEnded) res.destroy();
        return;
      }
      status = isTimeout(err) ? 504 : 502;
      sendJson(res, status, { error: 'upstream_error', reason, request_id: requestId });
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
        sendJson(res, 502, { error: 'upstream_error', reason, request_id: requestId });
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

  async function onConnect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    await auditRoom();
    const started = performance.now();
    const requestId = randomUUID();
    const auth = await authenticate(options, headerValues(req, 'proxy-authorization'));
    if (!auth.ok) {
      writeRaw(
        socket,
        407,
        'Proxy Authentication Required',
        { error: 'invalid_token', error_description: auth.detail, request_id: requestId },
        {
          'proxy-authenticate': 'Bearer realm="reins", error="invalid_token"',
        },
      );
      record(requestId, null, null, 'denied', 'invalid_token', 407, started);
      return;
    }
    const { facts } = auth;
    // CONNECT names no scheme: the tunnel is allowed when the origin is granted whole under
    // either (whatever runs inside then reaches nothing the token does not grant).
    let read = readConnectTarget(req.url ?? '', 'https');
    if (!read.ok) {
      writeRaw(socket, 400, 'Bad Request', {
        error: 'bad_request',
        reason: read.reason,
        detail: read.detail,
        request_id: requestId,
      });
      record(requestId, facts, null, 'denied', read.reason, 400, started);
      return;
    }
    let verdict = await judge(options, facts, read.target, true);
    // CONNECT names no scheme: when no https rule names the origin, an http rule may (Node's
    // fetch tunnels http:// URLs too). Only then: any other refusal (cross_tenant, a forbidden
    // address, a partial grant) stands, whatever an http rule for the same port says.
    if (verdict.verdict === 'deny' && verdict.reason === 'no_matching_rule') {
      const plain = readConnectTarget(req.url ?? '', 'http');
      if (plain.ok) {
        read = plain;
        verdict = await judge(options, facts, plain.target, true);
      }
    }
    options.metrics?.decisionSeconds.observe((performance.now() - started) / 1000);
    const mode = options.intercept ?? 'auto';
    const partial = verdict.verdict === 'deny' && verdict.reason === 'connect_needs_whole_origin';
    const inspect = (partial && mode !== 'never') || (verdict.verdict === 'allow' && mode === 'always');
    if (inspect && options.interceptor !== undefined) {
      await openInspected(socket, head, facts, read, requestId, started, options.interceptor);
      return;
    }
    if (verdict.verdict === 'deny') {
      writeRaw(socket, 403, 'Forbidden', denial(verdict, read, requestId));
      record(requestId, facts, read, 'denied', verdict.reason, 403, started, { address: verdict.address });
      return;
    }
    const open = tunnelsByJti.get(facts.jti) ?? 0;
    if (open >= limits.tunnelsPerToken) {
      writeRaw(
        socket,
        429,
        'Too Many Requests',
        { error: 'budget_exceeded', reason: 'too_many_tunnels', request_id: requestId },
        { 'retry-after': '1' },
      );
      record(requestId, facts, read, 'denied', 'too_many_tunnels', 429, started);
      return;
    }
    // The slot is taken now, not once the upstream answers: a burst of CONNECTs must not all
    // pass the check before any of them counts.
    tunnelsByJti.set(facts.jti, open + 1);
    let slotHeld = true;
    const releaseSlot = () => {
      if (!slotHeld) return;
      slotHeld = false;
      const left = (tunnelsByJti.get(facts.jti) ?? 1) - 1;
      if (left <= 0) tunnelsByJti.delete(facts.jti);
      else tunnelsByJti.set(facts.jti, left);
    };
    const allowed = verdict;
    const dialled = performance.now();
    const upstream = net.connect({ host: allowed.address, port: read.target.port });
    socket.once('close', () => {
      if (!opened) {
        upstream.destroy();
        releaseSlot();
      }
    });
    upstream.setTimeout(limits.upstreamTimeoutMs, () =>
      upstream.destroy(Object.assign(new Error('timeout'), { code: 'UPSTREAM_TIMEOUT' })),
    );
    const readOk = read;
    let opened = false;
    let bytesIn = 0;
    let bytesOut = head.length;
    upstream.on('error', (err) => {
      if (!opened) {
        releaseSlot();
        const status = isTimeout(err) ? 504 : 502;
        writeRaw(socket, status, status === 504 ? 'Gateway Timeout' : 'Bad Gateway', {
          error: 'upstream_error',
          reason: isTimeout(err) ? 'upstream_timeout' : 'upstream_unreachable',
          request_id: requestId,
        });
        record(requestId, facts, readOk, 'allowed', 'upstream_unreachable', status, started, {
          address: allowed.address,
          rule: allowed.rule,
        });
      } else socket.destroy();
    });
    upstream.on('connect', () => {
      opened = true;
      // The token may have died while the name resolved and the upstream answered.
      if (
        options.live.isRevoked(facts.jti) ||
        options.live.isQuarantined(facts.tenant, facts.agent) ||
        facts.exp <= Math.floor(now().getTime() / 1000)
      ) {
        releaseSlot();
        upstream.destroy();
        socket.destroy();
        return;
      }
      upstream.setTimeout(limits.idleTimeoutMs);
      options.metrics?.upstreamSeconds.observe({ kind: 'tunnel' }, (performance.now() - dialled) / 1000);
      options.metrics?.tunnels.inc();
      const entry: Bound = { facts, sockets: [socket, upstream], tunnel: readOk.target };
      bound.add(entry);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      socket.on('data', (chunk: Buffer) => {
        bytesOut += chunk.length;
      });
      upstream.on('data', (chunk: Buffer) => {
        bytesIn += chunk.length;
      });
      socket.pipe(upstream);
      upstream.pipe(socket);
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        socket.destroy();
        upstream.destroy();
        bound.delete(entry);
        releaseSlot();
        options.metrics?.tunnels.dec();
        record(requestId, facts, readOk, 'allowed', null, 200, started, {
          address: allowed.address,
          rule: allowed.rule,
          bytesIn,
          bytesOut,
        });
      };
      socket.on('close', close);
      upstream.on('close', close);
    });
  }

  /**
   * Answers 200 and reads what the client sends: TLS is terminated with a certificate for the
   * CONNECT host, anything else is read as HTTP; every request inside is then checked by
   * onInnerRequest. No upstream is dialled until a request inside is allowed.
   */
  async function openInspected(
    socket: Socket,
    head: Buffer,
    facts: TokenFacts,
    read: Extract<TargetRead, { ok: true }>,
    requestId: string,
    started: number,
    interceptor: Interceptor,
  ): Promise<void> {
    const host = read.target.host;
    const tunnel: Tunnel = {
      facts,
      target: read.target,
      authority: read.authority,
      certificateHost: host.kind === 'name' ? host.name : formatAddress(host.bytes),
      requestId,
    };
    const entry: Bound = { facts, sockets: [socket] };
    bound.add(entry);
    options.metrics?.tunnels.inc();
    socket.once('close', () => {
      bound.delete(entry);
      options.metrics?.tunnels.dec();
    });
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    record(requestId, facts, read, 'allowed', null, 200, started, { inspected: true });
    const first = await firstBytes(socket, head);
    if (first === null) return;
    const stream = replayed(socket, first);
    if (!looksLikeTls(first)) {
      attachTunnel(stream, tunnel);
      inner.emit('connection', stream);
      return;
    }
    let context: SecureContext;
    try {
      context = await interceptor.secureContextFor(tunnel.certificateHost);
    } catch {
      socket.destroy();
      return;
    }
    const tls = new TLSSocket(stream as unknown as Socket, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ['http/1.1'],
      // The SNI must name the CONNECT host (threat: a tunnel to a granted origin used to reach
      // another, e.g. domain fronting). No SNI at all (an address, an old client) is accepted:
      // every Host inside is still checked.
      SNICallback: (servername, callback) => {
        if (namesTunnelHost(tunnel, servername)) {
          callback(null, context);
          return;
        }
        record(randomUUID(), facts, read, 'denied', 'sni_mismatch', null, performance.now(), {
          inspected: true,
        });
        callback(new Error('the SNI does not name the CONNECT host'), undefined);
      },
    });
    tls.on('error', () => socket.destroy());
    entry.sockets.push(tls as unknown as Socket);
    attachTunnel(tls, tunnel);
    inner.emit('connection', tls);
  }

  /** One request inside an inspected tunnel: the tunnel's token, the tunnel's origin only. */
  async function onInnerRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const tunnel = tunnelOf(req.socket);
    if (tunnel === undefined) {
      req.socket.destroy();
      return;
    }
    await auditRoom();
    const started = performance.now();
    const requestId = randomUUID();
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const { facts } = tunnel;
    const scheme = (req.socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http';
    if (options.live.isRevoked(facts.jti) || facts.exp <= Math.floor(now().getTime() / 1000)) {
      req.socket.destroy();
      return;
    }
    const hosts = headerValues(req, 'host');
    const url = req.url ?? '';
    const absolute = /^https?:\/\//i.test(url);
    const named = absolute ? [url.replace(/^https?:\/\/([^/?#]*).*$/is, '$1'), ...hosts] : hosts;
    if (named.some((h) => !namesTunnelHost(tunnel, stripPort(h)))) {
      req.resume();
      const body = {
        error: 'egress_denied',
        reason: 'sni_mismatch',
        destination: tunnel.authority,
        request_id: requestId,
      };
      sendJson(res, 403, body);
      record(requestId, facts, null, 'denied', 'sni_mismatch', 403, started, { inspected: true });
      return;
    }
    // Always the tunnel's own origin: an absolute-form target inside names its host (checked
    // above) but never picks another scheme or port.
    const path = absolute ? url.replace(/^https?:\/\/[^/?#]*/i, '') : url;
    const read = readAbsoluteTarget(
      req.method ?? '',
      `${scheme}://${tunnel.authority}${path.startsWith('/') ? path : `/${path}`}`,
      [],
    );
    if (!read.ok) {
      req.resume();
      sendJson(res, 400, {
        error: 'bad_request',
        reason: read.reason,
        detail: read.detail,
        request_id: requestId,
      });
      record(requestId, facts, null, 'denied', read.reason, 400, started, { inspected: true });
      return;
    }
    const verdict = await judge(options, facts, read.target, false);
    options.metrics?.decisionSeconds.observe((performance.now() - started) / 1000);
    if (verdict.verdict === 'deny') {
      req.resume();
      sendJson(res, 403, denial(verdict, read, requestId));
      record(requestId, facts, read, 'denied', verdict.reason, 403, started, {
        address: verdict.address,
        inspected: true,
      });
      return;
    }
    await forward(req, res, facts, read, verdict, requestId, started, true);
  }

  /** Keep-alive connections belong to the token of their latest request. */
  function bindSocket(socket: Socket, facts: TokenFacts): void {
    const existing = (socket as Socket & { reinsBound?: Bound }).reinsBound;
    if (existing !== undefined) {
      existing.facts = facts;
      return;
    }
    const entry: Bound = { facts, sockets: [socket] };
    (socket as Socket & { reinsBound?: Bound }).reinsBound = entry;
    bound.add(entry);
    socket.once('close', () => bound.delete(entry));
  }

  function record(
    requestId: string,
    facts: TokenFacts | null,
    read: TargetRead | null,
    decision: 'allowed' | 'denied',
    reason: string | null,
    status: number | null,
    started: number,
    extra: { address?: string; rule?: string; bytesIn?: number; bytesOut?: number; inspected?: boolean } = {},
  ): void {
    const target = read?.ok ? read.target : null;
    const outcome =
      status === 407
        ? 'unauthenticated'
        : status === 400
          ? 'bad_request'
          : (status ?? 0) >= 500
            ? 'upstream_error'
            : decision;
    options.metrics?.decisions.inc({ outcome, reason: reason ?? 'none' });
    const event: AuditEvent = {
      time: now(),
      requestId,
      tenant: facts?.tenant ?? null,
      agent: facts?.agent ?? null,
      subject: facts?.sub ?? null,
      delegationChain: facts?.act ?? null,
      jti: facts?.jti ?? null,
      method: target?.method ?? null,
      scheme: target?.scheme ?? null,
      host:
        target === null
          ? null
          : target.host.kind === 'name'
            ? target.host.name
            : formatAddress(target.host.bytes),
      port: target?.port ?? null,
      path: target === null ? null : `/${target.path.join('/')}`,
      decision,
      reason,
      matchedRule: extra.rule ?? null,
      resolvedAddress: extra.address ?? null,
      inspected: extra.inspected ?? false,
      status,
      bytesIn: extra.bytesIn ?? 0,
      bytesOut: extra.bytesOut ?? 0,
      durationMs: performance.now() - started,
    };
    // The event is queued either way and never dropped; a promise means the queue is full.
    const full = options.audit.record(event);
    if (full !== undefined && auditPressure === undefined) {
      auditPressure = full.finally(() => {
        auditPressure = undefined;
      });
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

function headerValues(req: IncomingMessage, name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if ((req.rawHeaders[i] as string).toLowerCase() === name) values.push(req.rawHeaders[i + 1] as string);
  }
  return values;
}

function answer407(res: ServerResponse, detail: string, requestId: string): void {
  res.setHeader('proxy-authenticate', 'Bearer realm="reins", error="invalid_token"');
  // No keep-alive for a client without a valid token: it may not hold gateway connections.
  res.shouldKeepAlive = false;
  sendJson(res, 407, { error: 'invalid_token', error_description: detail, request_id: requestId });
}

function denial(verdict: Extract<Verdict, { verdict: 'deny' }>, read: TargetRead, requestId: string) {
  const destination = read.ok ? read.authority : undefined;
  return {
    error: 'egress_denied',
    reason: verdict.reason,
    destination,
    detail: verdict.detail,
    request_id: requestId,
  };
}

function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function writeRaw(
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
function stripPort(authority: string): string {
  const text = authority.trim();
  if (text.startsWith('[')) return text.slice(0, text.indexOf(']') + 1);
  const colon = text.lastIndexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}
