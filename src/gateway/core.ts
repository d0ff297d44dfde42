// What the gateway's handlers share: options and limits, the pooled upstream connections, the
// connections and tunnels bound to tokens (closed when a token dies), the audit trail with its
// back-pressure, and the server that reads requests inside inspected tunnels.
import type http from 'node:http';
import type { Socket } from 'node:net';
import { formatAddress } from '../egress/address.ts';
import type { Target } from '../egress/index.ts';
import type { AuditEvent } from './audit.ts';
import type { CheckContext } from './check.ts';
import type { Upstreams } from './forward.ts';
import type { InterceptMode, Interceptor } from './inspect.ts';
import { type GatewayMetrics, outcomeOf, type TunnelMode } from './metrics.ts';
import type { TargetRead } from './request-target.ts';
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

export const DEFAULT_LIMITS: GatewayLimits = {
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
export interface Bound {
  facts: TokenFacts;
  readonly sockets: Socket[];
  /** A plain tunnel's destination: re-decided when the policy changes. */
  readonly tunnel?: Target;
}

/** Extra facts of an audit row beyond the decision. */
export interface RecordExtra {
  readonly address?: string;
  readonly rule?: string;
  readonly bytesIn?: number;
  readonly bytesOut?: number;
  readonly inspected?: boolean;
  /**
   * Set on the row of a CONNECT: the tunnel it opened (`plain`, `inspected`) or `none`. Such rows
   * are counted in reins_gateway_tunnels_total, apart from the requests' decisions.
   */
  readonly tunnel?: TunnelMode;
  /** What more is known of a refusal: a 407's credential problem, a 400's fault. */
  readonly detail?: string;
}

export interface Core {
  readonly options: GatewayOptions;
  readonly limits: GatewayLimits;
  readonly now: () => Date;
  readonly upstreams: Upstreams;
  readonly bound: Set<Bound>;
  readonly tunnelsByJti: Map<string, number>;
  /** Reads the requests inside inspected tunnels. */
  readonly inner: http.Server;
  /** Resolves once the audit queue has room (back-pressure). */
  auditRoom(): Promise<void>;
  record(
    requestId: string,
    facts: TokenFacts | null,
    read: TargetRead | null,
    decision: 'allowed' | 'denied',
    reason: string | null,
    status: number | null,
    started: number,
    extra?: RecordExtra,
  ): void;
  bindSocket(socket: Socket, facts: TokenFacts): void;
}

export function createCore(
  options: GatewayOptions,
  limits: GatewayLimits,
  upstreams: Upstreams,
  inner: http.Server,
): Core {
  const now = options.now ?? (() => new Date());
  const bound = new Set<Bound>();
  // Back-pressure from the audit writer: while its queue is full, new requests wait for room
  // before they are decided (a decision that could not be audited must not be taken).
  let auditPressure: Promise<void> | undefined;
  const auditRoom = async () => {
    while (auditPressure !== undefined) await auditPressure;
  };

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
    extra: RecordExtra = {},
  ): void {
    const target = read?.ok ? read.target : null;
    const outcome = outcomeOf(decision, status);
    if (extra.tunnel === undefined) options.metrics?.decisions.inc({ outcome, reason: reason ?? 'none' });
    else options.metrics?.tunnelsOpened.inc({ outcome, reason: reason ?? 'none', mode: extra.tunnel });
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
      detail: extra.detail ?? null,
    };
    // The event is queued either way and never dropped; a promise means the queue is full.
    const full = options.audit.record(event);
    if (full !== undefined && auditPressure === undefined) {
      auditPressure = full.finally(() => {
        auditPressure = undefined;
      });
    }
  }

  return {
    options,
    limits,
    now,
    upstreams,
    bound,
    tunnelsByJti: new Map<string, number>(),
    inner,
    auditRoom,
    record,
    bindSocket,
  };
}
