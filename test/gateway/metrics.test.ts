// The gateway's Prometheus counters (src/gateway/metrics.ts): requests and tunnels are counted
// apart, so an inspected tunnel whose every request was refused shows as one tunnel opened and
// its refused requests, never as allowed traffic.
import net from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayMetrics, gatewayMetrics } from '../../src/gateway/metrics.ts';
import { testBackends } from '../support/db.ts';
import { type Harness, startHarness, within } from './support.ts';
import { makeCa, testInterceptor } from './tls-support.ts';

const [pglite] = testBackends();

type Labels = Record<string, string>;

/** The counter's value for exactly these labels (0 when never counted). */
async function count(metrics: GatewayMetrics, name: 'decisions' | 'tunnelsOpened', labels: Labels) {
  const { values } = await metrics[name].get();
  const found = values.find(
    (value) =>
      Object.keys(value.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(
        ([key, expected]) => String((value.labels as Record<string, unknown>)[key]) === expected,
      ),
  );
  return found?.value ?? 0;
}

/** Sends `bytes`, collects the answer until `done` matches it, then closes. */
function exchange(port: number, bytes: string[], done: RegExp): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let next = 0;
    socket.on('connect', () => socket.write(bytes[next++] as string));
    socket.on('data', (d) => {
      text += d.toString('latin1');
      if (done.test(text)) socket.destroy();
      // The next part once the previous was answered (a CONNECT's 200 before the requests inside).
      else if (next < bytes.length && /\r\n\r\n/.test(text)) socket.write(bytes[next++] as string);
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve(text));
  });
}

describe('gateway metrics', () => {
  let h: Harness;
  let token: string;
  let metrics: GatewayMetrics;

  beforeAll(async () => {
    if (pglite === undefined) throw new Error('no PGlite');
    metrics = gatewayMetrics(new Registry(), () => 0);
    h = await startHarness(pglite, {
      metrics,
      interceptor: testInterceptor(await makeCa('metrics test CA')),
    });
    token = await h.workerToken();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('counts an inspected tunnel whose every request is refused as a tunnel opened and refused requests, never as an allowed request', async () => {
    const api = `api.test:${h.upstream.port}`;
    const answer = await exchange(
      h.gateway.port,
      [
        `CONNECT ${api} HTTP/1.1\r\nHost: ${api}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
        `GET /v2/a HTTP/1.1\r\nHost: ${api}\r\n\r\nDELETE /v1/b HTTP/1.1\r\nHost: ${api}\r\n\r\n`,
      ],
      /method_not_allowed[^}]*\}/,
    );
    expect([...answer.matchAll(/HTTP\/1\.1 ([0-9]{3})/g)].map((m) => m[1])).toEqual(['200', '403', '403']);
    expect(
      await count(metrics, 'tunnelsOpened', { outcome: 'allowed', reason: 'none', mode: 'inspected' }),
    ).toBe(1);
    expect(await count(metrics, 'decisions', { outcome: 'denied', reason: 'path_not_allowed' })).toBe(1);
    expect(await count(metrics, 'decisions', { outcome: 'denied', reason: 'method_not_allowed' })).toBe(1);
    expect(await count(metrics, 'decisions', { outcome: 'allowed', reason: 'none' })).toBe(0);
  });

  it('counts a refused CONNECT and a plain tunnel as tunnels, an allowed request as a request', async () => {
    const whole = `whole.test:${h.upstream.port}`;
    const refused = await exchange(
      h.gateway.port,
      [
        `CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
      ],
      /\}$/,
    );
    expect(refused).toMatch(/^HTTP\/1\.1 403 egress denied: no_matching_rule/);
    await exchange(
      h.gateway.port,
      [
        `CONNECT ${whole} HTTP/1.1\r\nHost: ${whole}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
        `GET /inside HTTP/1.1\r\nHost: ${whole}\r\n\r\n`,
      ],
      /HTTP\/1\.1 200 OK/,
    );
    await exchange(
      h.gateway.port,
      [
        `GET http://api.test:${h.upstream.port}/v1/ok HTTP/1.1\r\nHost: api.test:${h.upstream.port}\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
      ],
      /HTTP\/1\.1 200 OK[\s\S]*\r\n\r\n/,
    );
    expect(
      await count(metrics, 'tunnelsOpened', { outcome: 'denied', reason: 'no_matching_rule', mode: 'none' }),
    ).toBe(1);
    expect(await count(metrics, 'decisions', { outcome: 'denied', reason: 'no_matching_rule' })).toBe(0);
    // A plain tunnel is counted when it closes, with its audit row.
    await within(2_000, async () =>
      (await count(metrics, 'tunnelsOpened', { outcome: 'allowed', reason: 'none', mode: 'plain' })) === 1
        ? true
        : undefined,
    );
    expect(await count(metrics, 'decisions', { outcome: 'allowed', reason: 'none' })).toBe(1);
    // Low cardinality: no host, agent or tenant ever becomes a label.
    for (const { labels } of (await metrics.tunnelsOpened.get()).values) {
      expect(Object.keys(labels).sort()).toEqual(['mode', 'outcome', 'reason']);
    }
  });
});
