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
      /** The batch's exchanges, packed (packExchanges): one flat array, not an object each. */
      readonly exchanges: readonly unknown[];
      readonly tunnels: readonly TunnelEvent[];
      readonly hits: number;
      readonly misses: number;
    }
  | { readonly type: 'closed' };

// Exchanges cross as one flat array of their fields' values, in this order, the time as epoch
// milliseconds: structured clone then writes no property names and no Date per exchange. Objects
// each took a tenth of a gateway thread's time in postMessage (docs/performance.md).
const EXCHANGE_FIELDS = [
  'kind',
  'tunnel',
  'time',
  'requestId',
  'tenant',
  'agent',
  'subject',
  'delegationChain',
  'jti',
  'method',
  'scheme',
  'host',
  'port',
  'path',
  'decision',
  'reason',
  'matchedRule',
  'resolvedAddress',
  'inspected',
  'status',
  'bytesIn',
  'bytesOut',
  'durationMs',
  'decisionMs',
  'upstreamMs',
  'detail',
] as const satisfies readonly (keyof ExchangeEvent)[];

/** A compile-time check that EXCHANGE_FIELDS names every field: an event never loses one on the way. */
type Unpacked = Exclude<keyof ExchangeEvent, (typeof EXCHANGE_FIELDS)[number]>;
const everyField: [Unpacked] extends [never] ? true : never = true;
void everyField;

const WIDTH = EXCHANGE_FIELDS.length;

/** Appends `event`'s values to `into` (a batch being gathered). */
export function packExchange(event: ExchangeEvent, into: unknown[]): void {
  for (const field of EXCHANGE_FIELDS) into.push(field === 'time' ? event.time.getTime() : event[field]);
}

/** Where each field sits in a packed exchange. */
const AT = Object.fromEntries(EXCHANGE_FIELDS.map((field, i) => [field, i])) as Record<
  (typeof EXCHANGE_FIELDS)[number],
  number
>;

/**
 * The exchanges of a packed batch, as the thread published them. One object literal per exchange
 * (every field named, so the compiler checks none is missed): filling an empty object field by
 * field cost the main thread 5 µs an exchange.
 */
export function unpackExchanges(packed: readonly unknown[]): ExchangeEvent[] {
  const events: ExchangeEvent[] = [];
  for (let at = 0; at + WIDTH <= packed.length; at += WIDTH) {
    const v = (field: (typeof EXCHANGE_FIELDS)[number]) => packed[at + AT[field]] as never;
    events.push({
      kind: v('kind'),
      tunnel: v('tunnel'),
      time: new Date(v('time') as number),
      requestId: v('requestId'),
      tenant: v('tenant'),
      agent: v('agent'),
      subject: v('subject'),
      delegationChain: v('delegationChain'),
      jti: v('jti'),
      method: v('method'),
      scheme: v('scheme'),
      host: v('host'),
      port: v('port'),
      path: v('path'),
      decision: v('decision'),
      reason: v('reason'),
      matchedRule: v('matchedRule'),
      resolvedAddress: v('resolvedAddress'),
      inspected: v('inspected'),
      status: v('status'),
      bytesIn: v('bytesIn'),
      bytesOut: v('bytesOut'),
      durationMs: v('durationMs'),
      decisionMs: v('decisionMs'),
      upstreamMs: v('upstreamMs'),
      detail: v('detail'),
    });
  }
  return events;
}
