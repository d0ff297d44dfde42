// The load generator of bench/gateway. autocannon cannot speak to a proxy, so this drives one
// undici Client per connection (keep-alive, no pipelining), each sending the next request as
// soon as the previous answer has been read. Requests to a proxy are absolute-form
// (`GET http://upstream.test:PORT/small HTTP/1.1`, undici sends a path that is an absolute URL
// as is), with `Host` and, for reins, `Proxy-Authorization`. Latency is measured per request,
// from the call to the last byte of the body.
import { type buildConnector, Client } from 'undici';

export interface LoadTarget {
  /** Where the connections go: the proxy, or the upstream itself. */
  readonly origin: string;
  /** The request target: `/small` to the upstream, `http://upstream.test:PORT/small` to a proxy. */
  readonly path: string;
  /** Headers of the n-th request sent (all connections count together). */
  readonly headers: (n: number) => Record<string, string>;
  /**
   * How each connection is made, when not to `origin` itself: for HTTPS, a TLS socket over a
   * tunnel (bench/gateway-tls.ts). The origin then only names the host the requests are for.
   */
  readonly connect?: buildConnector.connector;
}

export interface Cell {
  readonly requestsPerSecond: number;
  /** Milliseconds. */
  readonly p50: number;
  readonly p99: number;
  readonly requests: number;
}

export class Load {
  readonly #clients: Client[];
  #sent = 0;

  constructor(
    private readonly target: LoadTarget,
    readonly connections: number,
  ) {
    this.#clients = Array.from(
      { length: connections },
      () =>
        new Client(target.origin, {
          pipelining: 1,
          keepAliveTimeout: 60_000,
          keepAliveMaxTimeout: 60_000,
          connect: target.connect ?? { noDelay: true },
        }),
    );
  }

  /** Requests sent so far, warm-ups included. */
  get sent(): number {
    return this.#sent;
  }

  /** Keeps every connection busy for `seconds`; fails on any error or non-200 answer. */
  async run(seconds: number): Promise<Cell> {
    const latencies: number[] = [];
    const problems = new Map<string, number>();
    const start = performance.now();
    const deadline = start + seconds * 1000;
    const { path, headers } = this.target;
    const worker = async (client: Client) => {
      while (performance.now() < deadline) {
        const began = performance.now();
        try {
          const answer = await client.request({ method: 'GET', path, headers: headers(this.#sent++) });
          await answer.body.dump();
          if (answer.statusCode !== 200) {
            const key = `status ${answer.statusCode}`;
            problems.set(key, (problems.get(key) ?? 0) + 1);
            continue;
          }
        } catch (err) {
          const key = (err as { code?: string }).code ?? String(err);
          problems.set(key, (problems.get(key) ?? 0) + 1);
          continue;
        }
        latencies.push(performance.now() - began);
      }
    };
    await Promise.all(this.#clients.map(worker));
    const elapsed = (performance.now() - start) / 1000;
    if (problems.size > 0) {
      const list = [...problems].map(([key, n]) => `${n}× ${key}`).join(', ');
      throw new Error(`${this.target.origin}: ${list}`);
    }
    latencies.sort((a, b) => a - b);
    return {
      requestsPerSecond: latencies.length / elapsed,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      requests: latencies.length,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.#clients.map((client) => client.close()));
  }
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] as number;
}
