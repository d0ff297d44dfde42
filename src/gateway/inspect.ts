// Inspected tunnels (SPEC.md, "The gateway"): a CONNECT to an origin the token grants only in
// part is answered 200, and then what the client sends is read. A TLS ClientHello is
// terminated with a certificate for the CONNECT host from the interception CA; anything else is
// read as plain HTTP. Either way every request inside is checked like a forwarded one.
//
// What this file holds: the small pieces around that — the first bytes, the tunnel's identity,
// and the rule that the SNI and every inner Host name the CONNECT origin (threat: a tunnel
// opened to a granted origin used to talk to another one, e.g. domain fronting).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import { formatAddress } from '../egress/address.ts';
import type { Core } from './core.ts';
import { namesTunnelHost, type Outcome, type Tunnel } from './evaluate.ts';
import type { Exchange } from './exchange.ts';
import { onRequest } from './requests.ts';

export type { Interceptor } from './core.ts';
export type { InterceptMode, Tunnel } from './evaluate.ts';
export { namesTunnelHost, TUNNEL_WIND_DOWN_SECONDS } from './evaluate.ts';

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
 * Answers 200 and reads what the client sends: TLS is terminated with a certificate for the
 * CONNECT host, anything else is read as HTTP; every request inside is then checked by
 * onInnerRequest. No upstream is dialled until a request inside is allowed.
 */
export async function openInspected(
  core: Core,
  socket: Socket,
  head: Buffer,
  exchange: Exchange,
  outcome: Extract<Outcome, { kind: 'inspect' }>,
): Promise<void> {
  const { options, inner, events, tunnels } = core;
  const { facts, read, release } = outcome;
  const host = read.target.host;
  const tunnel: Tunnel = {
    facts,
    target: read.target,
    authority: read.authority,
    certificateHost: host.kind === 'name' ? host.name : formatAddress(host.bytes),
    requestId: exchange.requestId,
  };
  const entry = { facts, sockets: [socket] };
  const unbind = core.bind(entry);
  events.publishTunnel({ phase: 'open', mode: 'inspected' });
  socket.once('close', () => {
    unbind();
    release();
    events.publishTunnel({ phase: 'close', mode: 'inspected' });
  });
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  // The CONNECT's own row, at once: what goes through the tunnel is each inner request's row.
  exchange.finish(null, 200);
  const first = await firstBytes(socket, head);
  if (first === null) {
    // The client ended the tunnel before sending anything. The gateway's sockets are half-open
    // capable (HTTP servers keep writing after a client's FIN), so this end alone would never
    // close it: the tunnel's slot and binding would stay taken until the idle timeout.
    socket.destroy();
    return;
  }
  if (!looksLikeTls(first)) {
    const stream = replayed(socket, first);
    tunnels.set(stream, tunnel);
    inner.emit('connection', stream);
    return;
  }
  const interceptor = options.interceptor;
  if (interceptor === undefined) {
    socket.destroy();
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
      // Refused in the handshake: no HTTP answer is possible, so the row has no status.
      const refused = core.begin('request', true);
      refused.facts = facts;
      refused.target = read.target;
      refused.finish('sni_mismatch', null, 'the TLS SNI does not name the CONNECT host');
      callback(new Error('the SNI does not name the CONNECT host'), undefined);
    },
  });
  tls.on('error', () => socket.destroy());
  entry.sockets.push(tls as unknown as Socket);
  tunnels.set(tls, tunnel);
  inner.emit('connection', tls);
}

/** One request inside an inspected tunnel: the tunnel's token, the tunnel's origin only. */
export async function onInnerRequest(core: Core, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const tunnel = core.tunnels.get(req.socket);
  if (tunnel === undefined) {
    req.socket.destroy();
    return;
  }
  const scheme = (req.socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http';
  await onRequest(core, req, res, { tunnel, scheme });
}
