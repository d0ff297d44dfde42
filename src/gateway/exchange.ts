// One exchange as it happens: a request or a CONNECT from its head to its end, gathering what the
// event will say (who, where, what was decided, bytes, timings), and published exactly once when
// it ends however it ends (answered, refused, upstream failure, client gone, cut by shutdown).
// Transports fill it in; they never log, count or write audit rows themselves.
import { randomUUID } from 'node:crypto';
import { formatAddress } from '../egress/address.ts';
import type { Target } from '../egress/index.ts';
import type { ExchangeEvent, ExchangeKind, ExchangeStream, TunnelMode } from './events.ts';
import { REASONS, type Reason } from './reasons.ts';
import type { TokenFacts } from './token.ts';

export class Exchange {
  readonly requestId = randomUUID();
  readonly #started = performance.now();
  readonly #time: Date;
  readonly #stream: ExchangeStream;
  readonly #inFlight: Set<Exchange>;
  readonly kind: ExchangeKind;
  facts: TokenFacts | null = null;
  target: Target | null = null;
  rule: string | null = null;
  address: string | null = null;
  inspected: boolean;
  tunnel: TunnelMode | null;
  bytesIn = 0;
  bytesOut = 0;
  #decisionMs: number | null = null;
  #upstreamMs: number | null = null;
  #dialled = 0;
  #finished = false;
  /**
   * Set by the transport while the exchange streams: cuts it (shutdown). The transport's own end
   * handling then finishes the exchange with the reason given to cut().
   */
  abort: ((reason: Reason) => void) | undefined;

  constructor(
    kind: ExchangeKind,
    stream: ExchangeStream,
    inFlight: Set<Exchange>,
    now: Date,
    options: { inspected?: boolean } = {},
  ) {
    this.kind = kind;
    this.#stream = stream;
    this.#inFlight = inFlight;
    this.#time = now;
    this.inspected = options.inspected ?? false;
    this.tunnel = kind === 'connect' ? 'none' : null;
    inFlight.add(this);
  }

  get finished(): boolean {
    return this.#finished;
  }

  decided(): void {
    this.#decisionMs = performance.now() - this.#started;
  }

  dialling(): void {
    this.#dialled = performance.now();
  }

  upstreamAnswered(): void {
    this.#upstreamMs = performance.now() - this.#dialled;
  }

  /** Cuts a streaming exchange (shutdown): its transport finishes it with `reason`. */
  cut(reason: Reason): void {
    if (this.#finished) return;
    if (this.abort === undefined) this.finish(reason, null);
    else this.abort(reason);
  }

  /**
   * Publishes the event: once, whatever calls it later. `status` is what the client was answered
   * (null: nothing was); a refusal's status is its reason's (reasons.ts) unless none could be sent.
   */
  finish(reason: Reason | null, status: number | null, detail: string | null = null): void {
    if (this.#finished) return;
    this.#finished = true;
    // The transport's closure holds its sockets, messages and upstream request. A finished
    // exchange can stay reachable for a while (a keep-alive connection's last request listens to
    // it until the next one comes): dropping the closure lets all of that die young, where keeping
    // it promoted every request's objects to the old generation (docs/performance.md, issue 13).
    this.abort = undefined;
    this.#inFlight.delete(this);
    const { facts, target } = this;
    const event: ExchangeEvent = {
      kind: this.kind,
      tunnel: this.tunnel,
      time: this.#time,
      requestId: this.requestId,
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
      decision: reason === null ? 'allowed' : REASONS[reason].decision,
      reason,
      matchedRule: this.rule,
      resolvedAddress: this.address,
      inspected: this.inspected,
      status,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      durationMs: performance.now() - this.#started,
      decisionMs: this.#decisionMs,
      upstreamMs: this.#upstreamMs,
      detail,
    };
    this.#stream.publish(event);
  }
}
