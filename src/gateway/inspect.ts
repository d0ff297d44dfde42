// Inspected tunnels (SPEC.md, "The gateway"): a CONNECT to an origin the token grants only in
// part is answered 200, and then what the client sends is read. A TLS ClientHello is
// terminated with a certificate for the CONNECT host from the interception CA; anything else is
// read as plain HTTP. Either way every request inside is checked like a forwarded one.
//
// What this file holds: the small pieces around that — the first bytes, the tunnel's identity,
// and the rule that the SNI and every inner Host name the CONNECT origin (threat: a tunnel
// opened to a granted origin used to talk to another one, e.g. domain fronting).
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { SecureContext } from 'node:tls';
import type { Target } from '../egress/index.ts';
import { normaliseTargetHost } from '../egress/index.ts';
import type { TokenFacts } from './token.ts';

/** Issues TLS server contexts for hosts, signed by the interception CA (ca/leaf.ts). */
export interface Interceptor {
  secureContextFor(host: string): Promise<SecureContext>;
}

export type InterceptMode = 'auto' | 'always' | 'never';

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
 * The client's stream with the bytes already read put in front. Node's TLS and HTTP servers read
 * a plain socket through its native handle, where bytes taken out in JavaScript cannot be put
 * back (socket.unshift is not seen there), so the tunnel is handed to them as this stream.
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
