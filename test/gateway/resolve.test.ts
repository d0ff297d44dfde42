// The gateway's DNS: the system resolver with its answers kept a few seconds, one lookup at a time
// per name.
import { describe, expect, it } from 'vitest';
import { cachedResolver, tableResolver } from '../../src/gateway/resolve.ts';

/** A resolver that counts its lookups and answers when told to. */
function countingResolver(table: Record<string, string[]>) {
  const calls: string[] = [];
  const waiting: (() => void)[] = [];
  let held = false;
  const inner = tableResolver(table);
  return {
    calls,
    hold: () => {
      held = true;
    },
    release: () => {
      held = false;
      for (const go of waiting.splice(0)) go();
    },
    resolve: async (name: string) => {
      calls.push(name);
      if (held) await new Promise<void>((go) => waiting.push(go));
      return inner(name);
    },
  };
}

describe('the cached resolver', () => {
  it('reuses an answer until its time is up, then asks again', async () => {
    let clock = 0;
    const inner = countingResolver({ 'api.test': ['192.0.2.1'] });
    const resolve = cachedResolver(inner.resolve, { ttlMs: 5_000, now: () => clock });
    expect(await resolve('api.test')).toEqual(['192.0.2.1']);
    clock = 4_999;
    expect(await resolve('api.test')).toEqual(['192.0.2.1']);
    expect(inner.calls).toEqual(['api.test']);
    clock = 5_000;
    await resolve('api.test');
    expect(inner.calls).toEqual(['api.test', 'api.test']);
  });

  it('keeps "does not resolve" for less time than an answer', async () => {
    let clock = 0;
    const inner = countingResolver({});
    const resolve = cachedResolver(inner.resolve, { ttlMs: 5_000, negativeTtlMs: 1_000, now: () => clock });
    expect(await resolve('nowhere.test')).toEqual([]);
    clock = 999;
    await resolve('nowhere.test');
    expect(inner.calls).toHaveLength(1);
    clock = 1_000;
    await resolve('nowhere.test');
    expect(inner.calls).toHaveLength(2);
  });

  it('lets concurrent requests for one name share one lookup', async () => {
    const inner = countingResolver({ 'api.test': ['192.0.2.1', '2001:db8::1'] });
    const resolve = cachedResolver(inner.resolve);
    inner.hold();
    const answers = Promise.all(Array.from({ length: 50 }, () => resolve('api.test')));
    inner.release();
    expect(await answers).toEqual(Array.from({ length: 50 }, () => ['192.0.2.1', '2001:db8::1']));
    expect(inner.calls).toEqual(['api.test']);
  });

  it('keeps names apart, and forgets the oldest answer beyond its size', async () => {
    const inner = countingResolver({
      'a.test': ['192.0.2.1'],
      'b.test': ['192.0.2.2'],
      'c.test': ['192.0.2.3'],
    });
    const resolve = cachedResolver(inner.resolve, { maxEntries: 2 });
    expect(await resolve('a.test')).toEqual(['192.0.2.1']);
    expect(await resolve('b.test')).toEqual(['192.0.2.2']);
    expect(await resolve('c.test')).toEqual(['192.0.2.3']);
    await resolve('b.test');
    await resolve('c.test');
    expect(inner.calls).toEqual(['a.test', 'b.test', 'c.test']);
    await resolve('a.test');
    expect(inner.calls).toEqual(['a.test', 'b.test', 'c.test', 'a.test']);
  });

  it('asks again after a lookup that failed outright', async () => {
    let fail = true;
    const resolve = cachedResolver(async () => {
      if (fail) throw new Error('resolver down');
      return ['192.0.2.1'];
    });
    await expect(resolve('api.test')).rejects.toThrow('resolver down');
    fail = false;
    expect(await resolve('api.test')).toEqual(['192.0.2.1']);
  });
});
