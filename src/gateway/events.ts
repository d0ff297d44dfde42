// The gateway's event stream: each finished exchange is published once, as one immutable event,
// and everything that watches the gateway subscribes — the audit writer, the ECS log line, the
// metrics, and next monitoring and the decision API's callers. Nothing in the request path logs
// or counts directly (as undici publishes its events on diagnostics_channel instead of logging).
//
// Each gateway has its own stream (several run in one process in tests and in `serve`), and every
// event is also published on the process-wide diagnostics_channel `reins:gateway:exchange` for
// tools that attach from outside (APM agents, a debugger); publishing there costs nothing while
// nobody listens.
//
// Back-pressure: a subscriber that cannot keep up (the audit writer with a full queue) returns a
// promise from its listener; until it settles, room() returns a promise too, and the gateway awaits
// it before taking the next request (a decision that could not be audited must not be taken).
import diagnostics from 'node:diagnostics_channel';
import type { Reason } from './reasons.ts';

/** What kind of exchange: a request (absolute-form or inside an inspected tunnel), or a CONNECT. */
export type ExchangeKind = 'request' | 'connect';

/** What a CONNECT opened: a plain tunnel, an inspected one, or none (refused, upstream failed). */
export type TunnelMode = 'plain' | 'inspected' | 'none';

/** One finished exchange: what was asked, by whom, what was decided and what happened. */
export interface ExchangeEvent {
  readonly kind: ExchangeKind;
  /** Set on a CONNECT's event: the tunnel it opened, or `none`. */
  readonly tunnel: TunnelMode | null;
  /** When the exchange began (the request head was read). */
  readonly time: Date;
  /** The id the gateway answered with (the `request_id` of a refusal's body, `x-request-id`). */
  readonly requestId: string;
  /** Null only when no token could be verified (a 407): such a request belongs to no tenant. */
  readonly tenant: string | null;
  /** The acting agent: the client itself for client credentials, act.sub for token exchange. */
  readonly agent: string | null;
  /** The token's `sub`: the agent, or the user it acts for. */
  readonly subject: string | null;
  /** The token's RFC 8693 `act` claim as issued, newest actor outermost. */
  readonly delegationChain: unknown;
  readonly jti: string | null;
  readonly method: string | null;
  readonly scheme: string | null;
  /** As normalised by the gateway: a DNS name or an IP literal. */
  readonly host: string | null;
  readonly port: number | null;
  /** The path only, never the query. */
  readonly path: string | null;
  readonly decision: 'allowed' | 'denied';
  /** Why it ended as it did (reasons.ts); null for an exchange that went as asked. */
  readonly reason: Reason | null;
  /** The grant's rule that allowed it, in its canonical text. */
  readonly matchedRule: string | null;
  /** The address the gateway checked and dialled. */
  readonly resolvedAddress: string | null;
  /** Whether the request was read inside an inspected CONNECT tunnel (or, for a CONNECT, opened one). */
  readonly inspected: boolean;
  /** The status answered to the client; null when none was (a refused handshake, a cut connection). */
  readonly status: number | null;
  /** Bytes received back from the destination (toward the agent). */
  readonly bytesIn: number;
  /** Bytes sent out toward the destination (the agent's request and upload). */
  readonly bytesOut: number;
  readonly durationMs: number;
  /** From the request head to the decision (token, policy, DNS); null when no decision was made. */
  readonly decisionMs: number | null;
  /** From dialling the upstream to its response head or the tunnel opening; null when none. */
  readonly upstreamMs: number | null;
  /**
   * What more is known of a refusal: a 407's credential problem (missing, malformed, multiple,
   * invalid, expired, wrong_audience, revoked, …), a 400's fault in words. Never a token, a header
   * value or a query.
   */
  readonly detail: string | null;
}

/** A tunnel opened or closed (the active-tunnels gauge follows these). */
export interface TunnelEvent {
  readonly phase: 'open' | 'close';
  readonly mode: 'plain' | 'inspected';
}

export type ExchangeListener = (event: ExchangeEvent) => Promise<void> | undefined | void;
export type TunnelListener = (event: TunnelEvent) => void;

/** The process-wide channel every gateway also publishes on. */
export const EXCHANGE_CHANNEL = 'reins:gateway:exchange';
const channel = diagnostics.channel(EXCHANGE_CHANNEL);

export class ExchangeStream {
  #listeners: ExchangeListener[] = [];
  #tunnelListeners: TunnelListener[] = [];
  /** Every listener's promise not yet settled: room() waits until none is left. */
  readonly #pressure = new Set<Promise<void>>();

  /** Hears every exchange from now on; returns the unsubscribe. */
  subscribe(listener: ExchangeListener): () => void {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  onTunnel(listener: TunnelListener): () => void {
    this.#tunnelListeners = [...this.#tunnelListeners, listener];
    return () => {
      this.#tunnelListeners = this.#tunnelListeners.filter((l) => l !== listener);
    };
  }

  publish(event: ExchangeEvent): void {
    // Frozen: every listener sees the event as published, whatever another one does with it.
    Object.freeze(event);
    // A listener that throws or rejects is a bug in it; it must not take the request (or other
    // listeners) down, nor leave an unhandled rejection that would end the process.
    for (const listener of this.#listeners) {
      let full: unknown;
      try {
        full = listener(event);
      } catch {
        continue;
      }
      if (!(full instanceof Promise)) continue;
      const settled: Promise<void> = full.then(
        () => undefined,
        () => undefined,
      );
      this.#pressure.add(settled);
      void settled.then(() => this.#pressure.delete(settled));
    }
    if (channel.hasSubscribers) channel.publish(event);
  }

  publishTunnel(event: TunnelEvent): void {
    for (const listener of this.#tunnelListeners) {
      try {
        listener(event);
      } catch {
        // As above.
      }
    }
  }

  /** Undefined while every subscriber keeps up; else settles once they have room again. */
  room(): Promise<void> | undefined {
    if (this.#pressure.size === 0) return undefined;
    return (async () => {
      while (this.#pressure.size > 0) await Promise.all(this.#pressure);
    })();
  }
}
