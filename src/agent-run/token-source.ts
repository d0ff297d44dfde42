// The agent's current access token, obtained by any ObtainToken (client credentials, a token
// command) and replaced before it expires. The clock and timers come in from outside, so the
// timing is tested without sleeping (test/agent-run/token-source.test.ts).
//
// - `start()` obtains the first token or fails: a wrong secret is reported before the agent's
//   command runs, not as a stream of refusals inside it.
// - Each token is replaced at `refreshAt` (token-timing.ts). A failed refresh is retried with
//   backoff; meanwhile the old token is handed out for as long as it is usable.
// - `current()` never hands out a token inside its expiry margin: callers wait (bounded) for
//   the next one instead. If the planned refresh is late (the machine slept), it starts now.
// - Tokens never leave through events or errors: observers learn times and error messages only.
import { AgentRunError } from './errors.ts';
import { type Lifetime, longEnough, refreshAt, retryDelay, usableUntil } from './token-timing.ts';

/** A token and when it expires, in milliseconds on the local clock. */
export interface ObtainedToken {
  readonly token: string;
  readonly expiresAt: number;
}

export type ObtainToken = () => Promise<ObtainedToken>;

/** The clock and a one-shot timer; `systemTimers` outside tests. */
export interface Timers {
  now(): number;
  /** Calls `fn` after `ms`; the result cancels it. */
  schedule(fn: () => void, ms: number): () => void;
}

export const systemTimers: Timers = {
  now: () => Date.now(),
  schedule(fn, ms) {
    const timer = setTimeout(fn, ms);
    // The refresh alone never keeps the process alive: the proxy and the command do.
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export type TokenSourceEvent =
  | { readonly type: 'obtained'; readonly expiresAt: number; readonly refreshAt: number }
  | {
      readonly type: 'refresh_failed';
      readonly message: string;
      readonly failures: number;
      readonly retryInMs: number;
    };

export interface TokenSourceOptions {
  readonly timers?: Timers;
  /** In [0, 1); the backoff's jitter. Default Math.random. */
  readonly random?: () => number;
  /** Told when a token arrives and when a refresh fails (for a line on stderr). */
  readonly onEvent?: (event: TokenSourceEvent) => void;
}

/** How long `current()` waits for a usable token by default. */
export const DEFAULT_WAIT_MS = 30_000;

interface Held {
  readonly token: string;
  readonly lifetime: Lifetime;
}

interface Waiter {
  resolve(token: string): void;
  reject(err: Error): void;
  cancelTimeout(): void;
}

export class TokenSource {
  private readonly timers: Timers;
  private readonly random: () => number;
  private held: Held | undefined;
  private obtaining = false;
  private planned: { readonly kind: 'refresh' | 'retry'; readonly cancel: () => void } | undefined;
  private failures = 0;
  private lastError: Error | undefined;
  private readonly waiters = new Set<Waiter>();
  private stopped = false;

  constructor(
    private readonly obtain: ObtainToken,
    private readonly options: TokenSourceOptions = {},
  ) {
    this.timers = options.timers ?? systemTimers;
    this.random = options.random ?? Math.random;
  }

  /** Obtains the first token; rejects with the obtainer's error if that fails. */
  async start(): Promise<void> {
    const startedAt = this.timers.now();
    const obtained = await this.obtain();
    const lifetime = { obtainedAt: startedAt, expiresAt: obtained.expiresAt };
    if (!longEnough(lifetime)) throw tooShort();
    this.accept(obtained.token, lifetime);
  }

  /** When the token handed out now expires (undefined before the first). */
  get expiresAt(): number | undefined {
    return this.held?.lifetime.expiresAt;
  }

  /** A token with time left; waits up to `waitMs` while there is none. */
  current(waitMs = DEFAULT_WAIT_MS): Promise<string> {
    if (this.stopped)
      return Promise.reject(new AgentRunError('token_unavailable', 'the token source is stopped'));
    const held = this.held;
    if (held !== undefined && this.timers.now() < usableUntil(held.lifetime)) {
      return Promise.resolve(held.token);
    }
    // Nothing usable. A retry already planned keeps its backoff; a planned refresh that has
    // not happened yet is late (timers do not run while the machine sleeps): start it now.
    if (!this.obtaining && this.planned?.kind !== 'retry') this.refresh();
    return new Promise<string>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        cancelTimeout: this.timers.schedule(() => {
          this.waiters.delete(waiter);
          const why = this.lastError === undefined ? '' : `: ${this.lastError.message}`;
          reject(new AgentRunError('token_unavailable', `no usable token within ${waitMs} ms${why}`));
        }, waitMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** Stops refreshing; whoever waits is refused. */
  stop(): void {
    this.stopped = true;
    this.planned?.cancel();
    this.planned = undefined;
    for (const waiter of this.waiters) {
      waiter.cancelTimeout();
      waiter.reject(new AgentRunError('token_unavailable', 'the token source is stopped'));
    }
    this.waiters.clear();
  }

  private refresh(): void {
    this.planned?.cancel();
    this.planned = undefined;
    this.obtaining = true;
    const startedAt = this.timers.now();
    Promise.resolve()
      .then(() => this.obtain())
      .then(
        (obtained) => {
          this.obtaining = false;
          if (this.stopped) return;
          const lifetime = { obtainedAt: startedAt, expiresAt: obtained.expiresAt };
          if (longEnough(lifetime)) this.accept(obtained.token, lifetime);
          else this.fail(tooShort());
        },
        (err: unknown) => {
          this.obtaining = false;
          if (this.stopped) return;
          this.fail(err instanceof Error ? err : new Error(String(err)));
        },
      );
  }

  private accept(token: string, lifetime: Lifetime): void {
    this.held = { token, lifetime };
    this.failures = 0;
    this.lastError = undefined;
    const at = refreshAt(lifetime);
    this.plan('refresh', at - this.timers.now());
    for (const waiter of this.waiters) {
      waiter.cancelTimeout();
      waiter.resolve(token);
    }
    this.waiters.clear();
    this.options.onEvent?.({ type: 'obtained', expiresAt: lifetime.expiresAt, refreshAt: at });
  }

  private fail(err: Error): void {
    this.failures++;
    this.lastError = err;
    const delay = retryDelay(this.failures, this.timers.now(), this.held?.lifetime, this.random());
    this.plan('retry', delay);
    this.options.onEvent?.({
      type: 'refresh_failed',
      message: err.message,
      failures: this.failures,
      retryInMs: delay,
    });
  }

  private plan(kind: 'refresh' | 'retry', ms: number): void {
    this.planned?.cancel();
    const cancel = this.timers.schedule(
      () => {
        this.planned = undefined;
        this.refresh();
      },
      Math.max(0, ms),
    );
    this.planned = { kind, cancel };
  }
}

function tooShort(): AgentRunError {
  return new AgentRunError(
    'token_response_invalid',
    'the token obtained expires within a second (is this machine’s clock right?)',
  );
}
