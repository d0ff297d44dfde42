// What the process's main thread and its gateway threads say to each other
// (gateway-workers.ts starts the threads, gateway-thread.ts is a thread). Everything here crosses
// by structured clone: plain data, Dates, Uint8Arrays and the CA's CryptoKey.
import type { Opening } from '../egress/index.ts';
import type { PortableSigningCa } from '../gateway/ca/index.ts';
import type { GatewayLimits } from '../gateway/core.ts';
import type { InterceptMode } from '../gateway/evaluate.ts';
import type { ExchangeEvent, TunnelEvent } from '../gateway/events.ts';
import type { LiveSnapshot, LiveUpdate } from '../gateway/live-state.ts';

/** What every gateway thread serves with: the gateway's settings, the same for all of them. */
export interface GatewayThreadSettings {
  readonly host: string;
  /** The port every thread listens on (the first thread's, when the setting was 0). */
  readonly port: number;
  readonly issuer: string;
  readonly audience: string;
  readonly openings: readonly Opening[];
  readonly upstreamCa: string | undefined;
  readonly intercept: InterceptMode;
  readonly limits: Partial<GatewayLimits>;
  readonly ca: PortableSigningCa;
  /**
   * Names answered from this table instead of DNS (benchmarks and tests on a machine whose
   * resolver must not be asked); absent: the system resolver.
   */
  readonly hosts?: Readonly<Record<string, readonly string[]>>;
}

/** A thread's start-up: the settings, and the live state as it was when the thread was started. */
export interface GatewayThreadData extends GatewayThreadSettings {
  readonly index: number;
  /** Whether the port is shared with the other threads (SO_REUSEPORT): only when there are others. */
  readonly reusePort: boolean;
  readonly live: LiveSnapshot;
  /** Exchanges a thread may have sent and not had acknowledged before it waits (back-pressure). */
  readonly maxUnacked: number;
}

export type ToThread =
  /** A change of the live state, in the order the main thread's LiveState made them. */
  | { readonly type: 'live'; readonly update: LiveUpdate }
  /** The answer to a `keys` request. */
  | { readonly type: 'keys'; readonly id: number; readonly jwks?: unknown; readonly error?: string }
  /** So many exchanges have been taken in by the audit writer's queue. */
  | { readonly type: 'ack'; readonly count: number }
  /** Stop: drain as the gateway does on SIGTERM, send what is left, then say `closed`. */
  | { readonly type: 'close' };

export type FromThread =
  | { readonly type: 'listening'; readonly port: number }
  /** The listener did not start; `code` as Node gave it (EADDRINUSE, EACCES, …). */
  | { readonly type: 'failed'; readonly message: string; readonly code: string | undefined }
  /** The published key set, please (a token named a kid this thread does not hold). */
  | { readonly type: 'keys'; readonly id: number }
  | {
      readonly type: 'events';
      readonly exchanges: readonly ExchangeEvent[];
      readonly tunnels: readonly TunnelEvent[];
      readonly hits: number;
      readonly misses: number;
    }
  | { readonly type: 'closed' };
