// A minimum data rate for request bodies on their way upstream. Threat: a body sent at one byte
// a second never trips the idle timeout (each byte resets it) and holds an upstream connection
// for as long as the client likes; a few hundred such bodies held every connection of a pool.
// (Heads have a total deadline already: headersTimeoutMs, proxy.ts.)
//
// The rule: every window of `windowMs` while a body streams, the first one included, must carry
// at least `minBytesPerSecond` on average, or the body is too slow (408 `body_too_slow`: the
// caller cuts the exchange). A window rather than the whole body's average, so that a burst
// early on buys no licence to trickle afterwards; a rate rather than a total deadline, so that a
// large upload on a slow but honest link is never cut (a deadline short enough to stop a trickle
// would stop those, one long enough for them would let a trickle hold a connection for as long).
// A body that is paused because the upstream is not reading (back-pressure through pipe) is not
// the client's fault: a window that ends paused starts again.
//
// Cost: no timer per request. The caller adds each chunk's length from the 'data' listener it
// already has; one coarse shared tick (`check()`) walks the bodies in flight — a few hundred at
// 5k req/s — and the rule holds to within that tick.

export interface BodyRateLimits {
  /** Bytes a second a body must average over each window. 0 turns the rule off. */
  readonly minBytesPerSecond: number;
  /** The window the average is taken over; also the grace a body has before it is first judged. */
  readonly windowMs: number;
}

/**
 * 1 KiB/s over 10 s windows: a body must bring 10 KiB every 10 s until it ends. Any real link does
 * (a 56k modem brings 7 KiB/s), and a body smaller than that is complete within its first
 * window. It costs a trickle 1 KiB/s per connection held instead of 1 byte; the upstream shares
 * (upstream-share.ts) bound how many connections even a paying trickle can hold.
 */
export const DEFAULT_BODY_RATE: BodyRateLimits = { minBytesPerSecond: 1024, windowMs: 10_000 };

/** What the guard reads of the stream: `false` while paused (pipe does so on back-pressure). */
export interface FlowingState {
  readonly readableFlowing: boolean | null;
}

/** One body watched. `count` from the body's 'data' listener; `end` once it ended or was cut. */
export interface BodyWatch {
  count(bytes: number): void;
  end(): void;
}

export interface BodyRateGuard {
  readonly limits: BodyRateLimits;
  /** Bodies being watched (a gauge for metrics). */
  readonly watching: number;
  /** Starts watching a body as it begins to stream upstream; `onTooSlow` is called at most once. */
  watch(stream: FlowingState, onTooSlow: () => void): BodyWatch;
  /** The shared tick: judges every body whose window has ended. */
  check(): void;
}

export interface BodyRateOptions {
  /** Milliseconds on a monotonic clock; performance.now by default. */
  readonly now?: () => number;
}

export function createBodyRateGuard(limits: BodyRateLimits, options: BodyRateOptions = {}): BodyRateGuard {
  return new Guard(limits, options.now ?? (() => performance.now()));
}

class Watch implements BodyWatch {
  received = 0;
  /** `received` when the current window began. */
  mark = 0;
  constructor(
    private readonly guard: Guard,
    readonly stream: FlowingState,
    readonly onTooSlow: () => void,
    public windowStart: number,
  ) {}
  count(bytes: number): void {
    this.received += bytes;
  }
  end(): void {
    this.guard.forget(this);
  }
}

/** Watches nothing: returned when the rule is off, so callers need no second path. */
const UNWATCHED: BodyWatch = { count() {}, end() {} };

class Guard implements BodyRateGuard {
  readonly #bodies = new Set<Watch>();

  constructor(
    readonly limits: BodyRateLimits,
    private readonly now: () => number,
  ) {}

  get watching(): number {
    return this.#bodies.size;
  }

  watch(stream: FlowingState, onTooSlow: () => void): BodyWatch {
    if (this.limits.minBytesPerSecond <= 0) return UNWATCHED;
    const watch = new Watch(this, stream, onTooSlow, this.now());
    this.#bodies.add(watch);
    return watch;
  }

  forget(watch: Watch): void {
    this.#bodies.delete(watch);
  }

  check(): void {
    if (this.#bodies.size === 0) return;
    const now = this.now();
    const { minBytesPerSecond, windowMs } = this.limits;
    for (const watch of this.#bodies) {
      const elapsed = now - watch.windowStart;
      if (elapsed < windowMs) continue;
      // The average over the time that actually passed: a tick may come a little late.
      const enough =
        watch.stream.readableFlowing === false ||
        watch.received - watch.mark >= (minBytesPerSecond * elapsed) / 1000;
      if (enough) {
        watch.mark = watch.received;
        watch.windowStart = now;
        continue;
      }
      this.#bodies.delete(watch);
      watch.onTooSlow();
    }
  }
}
