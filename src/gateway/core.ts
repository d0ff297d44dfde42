// What the gateway's transports share: options and limits, the evaluation context, the pooled
// upstream connections, the connections and tunnels bound to tokens (closed when a token dies),
// the exchanges in flight (for a graceful stop), the event stream, and the server that reads
// requests inside inspected tunnels.
import type http from 'node:http';
import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Target } from '../egress/index.ts';
import { type BodyRateGuard, createBodyRateGuard } from './body-rate.ts';
import type { CheckContext } from './check.ts';
import type { EvaluationContext, InterceptMode, Tunnel } from './evaluate.ts';
import { type ExchangeKind, ExchangeStream } from './events.ts';
import { Exchange } from './exchange.ts';
import type { Upstreams } from './forward.ts';
import type { TokenFacts } from './token.ts';
import { TunnelSlots } from './tunnel-slots.ts';
import { createUpstreamShare, type UpstreamShare } from './upstream-share.ts';

/** Issues TLS server contexts for hosts, signed by the interception CA (ca/leaf.ts). */
export interface Interceptor {
  secureContextFor(host: string): Promise<SecureContext>;
}

export interface GatewayOptions extends CheckContext {
  readonly host: string;
  /** 0: an ephemeral port. */
  readonly port: number;
  /**
   * Shares the port with other listeners of this process that set it too (SO_REUSEPORT, Linux):
   * the kernel spreads new connections over them (one gateway per thread, REINS_GATEWAY_WORKERS).
   */
  readonly reusePort?: boolean;
  /**
   * Where every finished exchange is published (events.ts); the audit writer, log line and
   * metrics subscribe to it. Default: a stream of the gateway's own (Gateway.events).
   */
  readonly events?: ExchangeStream;
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
  /** On stop, how long exchanges in flight may take to finish before they are cut. */
  readonly shutdownGraceMs: number;
  /** Connections per upstream pool (address, port, TLS name): the agents' maxSockets. */
  readonly upstreamSocketsPerOrigin: number;
  /** Concurrent exchanges one token may have with one upstream pool (upstream-share.ts). */
  readonly upstreamPerToken: number;
  /** Concurrent exchanges one tenant's tokens together may have with one upstream pool. */
  readonly upstreamPerTenant: number;
  /** How long a request beyond its share waits for a slot before 429 `upstream_busy`. */
  readonly upstreamWaitMs: number;
  /** The minimum rate of a request body streaming upstream (body-rate.ts); 0 turns it off. */
  readonly bodyMinRateBytesPerSecond: number;
  /** The window that rate is averaged over, the first one included (the grace). */
  readonly bodyRateWindowMs: number;
}

export const DEFAULT_LIMITS: GatewayLimits = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  upstreamTimeoutMs: 30_000,
  tunnelsPerToken: 128,
  maxConnections: 20_000,
  shutdownGraceMs: 10_000,
  // Why these: defaultShareLimits (upstream-share.ts) and DEFAULT_BODY_RATE (body-rate.ts).
  upstreamSocketsPerOrigin: 256,
  upstreamPerToken: 32,
  upstreamPerTenant: 128,
  upstreamWaitMs: 10_000,
  bodyMinRateBytesPerSecond: 1024,
  bodyRateWindowMs: 10_000,
};

/** A client connection or tunnel bound to a token: closed when the token dies. */
export interface Bound {
  facts: TokenFacts;
  readonly sockets: Socket[];
  /** A plain tunnel's destination: re-decided when the policy changes. */
  readonly tunnel?: Target;
}

export interface Core extends EvaluationContext {
  readonly options: GatewayOptions;
  readonly limits: GatewayLimits;
  readonly upstreams: Upstreams;
  readonly events: ExchangeStream;
  readonly bound: Set<Bound>;
  /** Exchanges begun and not finished: a stop lets them finish, then cuts what is left. */
  readonly inFlight: Set<Exchange>;
  /**
   * Set when a stop begins: no request or CONNECT that comes after it is forwarded, and no
   * answer keeps its connection alive (clients move to another gateway instead of being cut).
   */
  stopping: boolean;
  /** Reads the requests inside inspected tunnels. */
  readonly inner: http.Server;
  /** The tunnel each stream handed to `inner` belongs to. */
  readonly tunnels: WeakMap<object, Tunnel>;
  /** Slots of the upstream pools, shared out per token and tenant. */
  readonly share: UpstreamShare;
  /** The minimum rate of request bodies streaming upstream. */
  readonly bodies: BodyRateGuard;
  begin(kind: ExchangeKind, inspected?: boolean): Exchange;
  /** Keep-alive connections belong to the token of their latest request. */
  bindSocket(socket: Socket, facts: TokenFacts): void;
  /** Binds sockets to a token until `unbind` is called (or they close). */
  bind(entry: Bound): () => void;
}

export function createCore(
  options: GatewayOptions,
  limits: GatewayLimits,
  upstreams: Upstreams,
  inner: http.Server,
): Core {
  const now = options.now ?? (() => new Date());
  const events = options.events ?? new ExchangeStream();
  const bound = new Set<Bound>();
  const inFlight = new Set<Exchange>();
  const connections = new WeakMap<Socket, Bound>();

  function bindSocket(socket: Socket, facts: TokenFacts): void {
    const existing = connections.get(socket);
    if (existing !== undefined) {
      existing.facts = facts;
      return;
    }
    const entry: Bound = { facts, sockets: [socket] };
    connections.set(socket, entry);
    bound.add(entry);
    socket.once('close', () => bound.delete(entry));
  }

  return {
    verifier: options.verifier,
    live: options.live,
    openings: options.openings,
    resolve: options.resolve,
    now,
    intercept: options.intercept ?? 'auto',
    canInspect: options.interceptor !== undefined,
    tunnelSlots: new TunnelSlots(limits.tunnelsPerToken),
    options,
    limits,
    upstreams,
    events,
    bound,
    inFlight,
    stopping: false,
    inner,
    tunnels: new WeakMap(),
    share: createUpstreamShare({
      perToken: limits.upstreamPerToken,
      perTenant: limits.upstreamPerTenant,
      perPool: limits.upstreamSocketsPerOrigin,
      waitMs: limits.upstreamWaitMs,
    }),
    bodies: createBodyRateGuard({
      minBytesPerSecond: limits.bodyMinRateBytesPerSecond,
      windowMs: limits.bodyRateWindowMs,
    }),
    begin: (kind, inspected = false) => new Exchange(kind, events, inFlight, now(), { inspected }),
    bindSocket,
    bind(entry) {
      bound.add(entry);
      return () => bound.delete(entry);
    },
  };
}
