// The event stream between the gateway and whatever watches it: every listener hears each event
// as published, a faulty listener harms nobody, and back-pressure holds until every slow listener
// has room again.
import { describe, expect, it } from 'vitest';
import { type ExchangeEvent, ExchangeStream } from '../../src/gateway/events.ts';
import { Exchange } from '../../src/gateway/exchange.ts';

function event(requestId: string): ExchangeEvent {
  return {
    kind: 'request',
    tunnel: null,
    time: new Date(0),
    requestId,
    tenant: 'acme',
    agent: 'worker',
    subject: 'worker',
    delegationChain: null,
    jti: 'j1',
    method: 'GET',
    scheme: 'http',
    host: 'api.test',
    port: 80,
    path: '/',
    decision: 'allowed',
    reason: null,
    matchedRule: 'http://api.test/',
    resolvedAddress: '127.0.0.1',
    inspected: false,
    status: 200,
    bytesIn: 0,
    bytesOut: 0,
    durationMs: 1,
    decisionMs: 0.5,
    upstreamMs: 0.2,
    detail: null,
  };
}

/** A promise and the functions that settle it. */
function deferred() {
  let resolve = () => {};
  let reject = (_: unknown) => {};
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('the exchange stream', () => {
  it('hands every listener the same event, frozen, so that no listener changes what another sees', () => {
    const stream = new ExchangeStream();
    const seen: ExchangeEvent[] = [];
    stream.subscribe((e) => {
      // A listener that tries to rewrite the event (strict mode: a TypeError) is contained.
      (e as { reason: string | null }).reason = 'no_matching_rule';
    });
    stream.subscribe((e) => {
      seen.push(e);
    });
    stream.publish(event('r1'));
    expect(seen).toHaveLength(1);
    expect(Object.isFrozen(seen[0])).toBe(true);
    expect(seen[0]?.reason).toBeNull();
  });

  it('takes no harm from a listener that throws or rejects, and keeps telling the others', async () => {
    const stream = new ExchangeStream();
    const seen: string[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      stream.subscribe(() => {
        throw new Error('a broken listener');
      });
      stream.subscribe(() => Promise.reject(new Error('a broken slow listener')));
      stream.subscribe((e) => {
        seen.push(e.requestId);
      });
      stream.publish(event('r1'));
      stream.publish(event('r2'));
      await stream.room();
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(seen).toEqual(['r1', 'r2']);
    expect(unhandled).toEqual([]);
    expect(stream.room()).toBeUndefined();
  });

  it('holds back-pressure until every slow listener has room, not only the first', async () => {
    const stream = new ExchangeStream();
    const first = deferred();
    const second = deferred();
    let calls = 0;
    stream.subscribe(() => (++calls === 1 ? first.promise : second.promise));
    stream.publish(event('r1'));
    stream.publish(event('r2'));
    let roomy = false;
    const room = stream.room()?.then(() => {
      roomy = true;
    });
    expect(room).toBeDefined();
    first.resolve();
    await new Promise((resolve) => setImmediate(resolve));
    expect(roomy).toBe(false);
    second.resolve();
    await room;
    expect(roomy).toBe(true);
    expect(stream.room()).toBeUndefined();
  });
});

describe('an exchange', () => {
  it('is published once, and lets go of its transport when it ends', () => {
    const stream = new ExchangeStream();
    const heard: ExchangeEvent[] = [];
    stream.subscribe((e) => {
      heard.push(e);
    });
    const inFlight = new Set<Exchange>();
    const exchange = new Exchange('request', stream, inFlight, new Date(0));
    const cuts: string[] = [];
    // What a transport sets while it streams: a closure over its sockets and messages. Whatever
    // still holds the finished exchange (a keep-alive connection's last request does, until the
    // next one) must not hold those too: they would outlive the young generation, every request's.
    exchange.abort = (reason) => cuts.push(reason);
    expect(inFlight.has(exchange)).toBe(true);
    exchange.finish(null, 200);
    exchange.finish('client_closed', null);
    exchange.cut('shutdown');
    expect(exchange.abort).toBeUndefined();
    expect(inFlight.has(exchange)).toBe(false);
    expect(cuts).toEqual([]);
    expect(heard.map((e) => [e.status, e.reason])).toEqual([[200, null]]);
  });
});
