// Inspected tunnels (SPEC.md, "The gateway"): a CONNECT to an origin the token grants only in
// part is answered 200, and then what the client sends is read. A TLS ClientHello is
// terminated with a certificate for the CONNECT host from the interception CA; anything else is
// read as plain HTTP. Either way every request inside is checked like a forwarded one.
//
// What this file holds: the small pieces around that — the first bytes, the tunnel's identity,
// and the rule that the SNI and every inner Host name the CONNECT origin (threat: a tunnel
// opened to a granted origin used to talk to another one, e.g. domain fronting).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import { formatAddress } from '../egress/address.ts';
import type { Target } from '../egress/index.ts';
import { normaliseTargetHost } from '../egress/index.ts';
import { denial, headerValues, isHttp11, sendRefusal, stripPort } from './answers.ts';
import { judge } from './check.ts';
import type { Bound, Core } from './core.ts';
import { REQUEST_ID_HEADER } from './forward.ts';
import { readAbsoluteTarget, type TargetRead } from './request-target.ts';
import { forward } from './requests.ts';
import type { TokenFacts } from './token.ts';

/** Issues TLS server contexts for hosts, signed by the interception CA (ca/leaf.ts). */
export interface Interceptor {
  secureContextFor(host: string): Promise<SecureContext>;
}

export type InterceptMode = 'auto' | 'always' | 'never';

/** In its token's last seconds an inspected tunnel is closed after each answer. */
export const TUNNEL_WIND_DOWN_SECONDS = 5;

/** What an inspected tunnel is bound to; its inner requests are checked against it. */
export interface Tunnel {
  readonly facts: TokenFacts;
  /** The CONNECT target. */
  readonly target: Target;
  /** `host:port` as the CONNECT named it (normalised host). */
  readonly authority: string;
  /** The host as certificates and SNI spell it: a name, or an address without brackets. */
  readonly certificateHost: string;
  readonly requestId: string;
}

const TUNNEL = Symbol('reins.tunnel');

export function attachTunnel(stream: object, tunnel: Tunnel): void {
  (stream as { [TUNNEL]?: Tunnel })[TUNNEL] = tunnel;
}

export function tunnelOf(stream: object): Tunnel | undefined {
  return (stream as { [TUNNEL]?: Tunnel })[TUNNEL];
}

/** Resolves with the client's first bytes, null if it left first. The socket is left paused. */
export function firstBytes(socket: Socket, head: Buffer): Promise<Buffer | null> {
  if (head.length > 0) return Promise.resolve(head);
  return new Promise((resolve) => {
    const onData = (chunk: Buffer) => {
      cleanup();
      socket.pause();
      resolve(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

/**
 * The client's stream with the bytes already read put in front, for plain HTTP inside a tunnel:
 * Node's HTTP server reads a plain socket through its native handle, where bytes taken out in
 * JavaScript cannot be put back (socket.unshift is not seen there), so it is handed this stream.
 * (A TLSSocket does take in what its socket holds buffered: TLS goes on the socket itself.)
 */
export function replayed(socket: Socket, first: Buffer): Duplex {
  const stream = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end();
      callback();
    },
    destroy(err, callback) {
      // A server closing the connection after its last answer must not drop that answer.
      if (err) socket.destroy();
      else socket.end();
      callback(err);
    },
  });
  stream.push(first);
  socket.on('data', (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.on('end', () => stream.push(null));
  socket.on('close', () => stream.destroy());
  return stream;
}

/** A TLS record of type handshake (RFC 8446 §5.1): the client opens with a ClientHello. */
export function looksLikeTls(first: Buffer): boolean {
  return first[0] === 0x16;
}

/**
 * Whether a name the client sent inside the tunnel (SNI, or a Host header's host) names the
 * CONNECT host. Compared after the grammar's normalisation (case, trailing dot, IDNA, address
 * spellings), so `API.example.com.` is the same host and `0x7f.1` is 127.0.0.1.
 */
export function namesTunnelHost(tunnel: Tunnel, name: string): boolean {
  const host = normaliseTargetHost(name);
  const expected = tunnel.target.host;
  if (host === null) return false;
  if (host.kind === 'name' && expected.kind === 'name') return host.name === expected.name;
  if (host.kind === 'ip' && expected.kind === 'ip') return host.bytes.join('.') === expected.bytes.join('.');
  return false;
}

/**
 * Answers 200 and reads what the client sends: TLS is terminated with a certificate for the
 * CONNECT host, anything else is read as HTTP; every request inside is then checked by
 * onInnerRequest. No upstream is dialled until a request inside is allowed.
 */
export async function openInspected(
  core: Core,
  socket: Socket,
  head: Buffer,
  facts: TokenFacts,
  read: Extract<TargetRead, { ok: true }>,
  requestId: string,
  started: number,
  interceptor: Interceptor,
): Promise<void> {
  const { options, bound, record, inner } = core;
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
  record(requestId, facts, read, 'allowed', null, 200, started, { inspected: true, tunnel: 'inspected' });
  const first = await firstBytes(socket, head);
  if (first === null) return;
  if (!looksLikeTls(first)) {
    const stream = replayed(socket, first);
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
  // The client may have gone while the leaf was issued. A TLSSocket made on a closed socket would
  // never close, and nothing would time it out (threat: a client opening and resetting tunnels
  // to hosts without a leaf yet, each leaving a TLS session behind).
  if (socket.destroyed || socket.readableEnded) {
    socket.destroy();
    return;
  }
  // TLS goes on the socket itself, so that OpenSSL reads and writes its native handle (through a
  // JavaScript stream every TLS record costs a round of stream calls and a write of its own). The
  // bytes already read are put back: a new TLSSocket takes in what its socket holds buffered.
  socket.unshift(first);
  const tls = new TLSSocket(socket, {
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
export async function onInnerRequest(core: Core, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { options, now, auditRoom, record } = core;
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
  const nowSeconds = Math.floor(now().getTime() / 1000);
  if (options.live.isRevoked(facts.jti) || facts.exp <= nowSeconds) {
    req.socket.destroy();
    return;
  }
  // Wound down between requests near its token's expiry: the answer says `Connection: close` and
  // the client sends its next request on a new tunnel, opened with a fresh token (`reins run`
  // hands one out before this window). Otherwise the tunnel would be cut at expiry, perhaps
  // under a request the client had just sent.
  if (facts.exp - nowSeconds <= TUNNEL_WIND_DOWN_SECONDS) res.shouldKeepAlive = false;
  const hosts = headerValues(req, 'host');
  if (hosts.length === 0 && isHttp11(req)) {
    req.resume();
    const detail = 'an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)';
    sendRefusal(
      res,
      { status: 400, reason: 'missing_host' },
      { error: 'bad_request', reason: 'missing_host', detail, request_id: requestId },
    );
    record(requestId, facts, null, 'denied', 'missing_host', 400, started, { inspected: true, detail });
    return;
  }
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
    sendRefusal(res, { status: 403, reason: 'sni_mismatch' }, body);
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
    sendRefusal(
      res,
      { status: 400, reason: read.reason },
      { error: 'bad_request', reason: read.reason, detail: read.detail, request_id: requestId },
    );
    record(requestId, facts, null, 'denied', read.reason, 400, started, {
      inspected: true,
      detail: read.detail,
    });
    return;
  }
  const verdict = await judge(options, facts, read.target, false);
  options.metrics?.decisionSeconds.observe((performance.now() - started) / 1000);
  if (verdict.verdict === 'deny') {
    req.resume();
    sendRefusal(res, { status: 403, reason: verdict.reason }, denial(verdict, read, requestId));
    record(requestId, facts, read, 'denied', verdict.reason, 403, started, {
      address: verdict.address,
      inspected: true,
    });
    return;
  }
  await forward(core, req, res, facts, read, verdict, requestId, started, true);
}
