import { describe, expect, it } from 'vitest';
import { normaliseTarget, type RawTarget, type TargetProblem } from '../../src/egress/index.ts';

const base: RawTarget = { method: 'GET', scheme: 'https', host: 'api.example.com', path: '/' };

describe('a request that cannot be a target', () => {
  // One row per problem; the guard below fails when a problem has no row.
  const rows: Record<TargetProblem, ReadonlyArray<[string, Partial<RawTarget>]>> = {
    bad_method: [
      ['a method with a space', { method: 'GE T' }],
      ['an empty method', { method: '' }],
    ],
    bad_scheme: [['a scheme other than http or https', { scheme: 'ftp' }]],
    bad_host: [
      ['an empty host', { host: '' }],
      ['a host with userinfo', { host: 'user@api.example.com' }],
      ['a host with a percent-encoding', { host: 'api%2eexample.com' }],
      ['a host with a slash', { host: 'api.example.com/x' }],
      ['an IPv6 literal with a zone id', { host: '[fe80::1%25eth0]' }],
      ['an unbracketed IPv6 literal', { host: 'fd00::1' }],
      ['an IPv6 literal embedding an IPv4 with a leading zero', { host: '[::ffff:010.1.1.1]' }],
      ['an IPv4 literal in brackets', { host: '[1.2.3.4]' }],
      ['an IPv4 literal out of range', { host: '256.1.1.1' }],
      ['a wildcard', { host: '*.example.com' }],
    ],
    bad_port: [
      ['port zero', { port: 0 }],
      ['a port above 65535', { port: 65536 }],
      ['a port that is not a number', { port: 'http' }],
    ],
    encoded_separator: [
      ['an encoded slash', { path: '/v1%2F..%2Fadmin' }],
      ['an encoded backslash', { path: '/v1%5cadmin' }],
      ['an encoded NUL', { path: '/v1%00' }],
    ],
    backslash: [['a raw backslash', { path: '/v1\\..\\admin' }]],
    bad_percent_encoding: [['a broken percent-encoding', { path: '/v1/%g1' }]],
    bad_character: [
      ['a fragment', { path: '/v1#x' }],
      ['a lone surrogate', { path: '/\ud800' }],
    ],
    dot_segment: [],
    escapes_root: [
      ['a dot-dot above the root', { path: '/../etc/passwd' }],
      ['an encoded dot-dot above the root', { path: '/v1/%2E%2E/%2e%2e/x' }],
      ['a dot-dot after an empty segment', { path: '/public//../admin' }],
      ['a path that does not start with a slash', { path: 'v1/x' }],
    ],
  };

  it('has a row for every problem a request can have (dot segments are resolved, not refused)', () => {
    const covered = Object.entries(rows)
      .filter(([, cases]) => cases.length > 0)
      .map(([problem]) => problem);
    expect(covered.sort()).toEqual(
      Object.keys(rows)
        .filter((p) => p !== 'dot_segment')
        .sort(),
    );
  });

  for (const [problem, cases] of Object.entries(rows)) {
    if (cases.length === 0) continue;
    it.each(cases)(`refuses %s as ${problem}`, (_name, change) => {
      const result = normaliseTarget({ ...base, ...change });
      expect(result).toMatchObject({ ok: false, problem });
    });
  }
});

describe('a request that is a target', () => {
  it('is normalised once: host, default port, dot segments and unreserved encodings', () => {
    const result = normaliseTarget({
      method: 'POST',
      scheme: 'HTTPS',
      host: 'API.Example.COM.',
      path: '/v1/./a/../%7Eb?x=%2F',
    });
    expect(result).toEqual({
      ok: true,
      target: {
        method: 'POST',
        scheme: 'https',
        host: { kind: 'name', name: 'api.example.com' },
        port: 443,
        path: ['v1', '~b'],
      },
      forwardPath: '/v1/~b?x=%2F',
    });
  });

  it('reads numeric host spellings as the IPv4 address a URL parser would dial', () => {
    for (const host of ['2130706433', '0x7f000001', '0177.0.0.1', '127.1']) {
      expect(normaliseTarget({ ...base, host })).toMatchObject({
        ok: true,
        target: { host: { kind: 'ip', family: 4, bytes: [127, 0, 0, 1] } },
      });
    }
  });

  it('reads bracketed IPv6 literals, including IPv4-mapped ones, as IPv6', () => {
    expect(normaliseTarget({ ...base, host: '[::ffff:169.254.169.254]' })).toMatchObject({
      ok: true,
      target: { host: { kind: 'ip', family: 6 } },
    });
  });

  it('reads [::a.b.c.d] as IPv4-compatible, not as the IPv4-mapped ::ffff:a.b.c.d', () => {
    expect(normaliseTarget({ ...base, host: '[::1.2.3.4]' })).toMatchObject({
      ok: true,
      target: { host: { kind: 'ip', family: 6, bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4] } },
    });
  });

  it('keeps a trailing slash and empty segments distinct from the bare path', () => {
    expect(normaliseTarget({ ...base, path: '/v1/' })).toMatchObject({ target: { path: ['v1', ''] } });
    expect(normaliseTarget({ ...base, path: '/v1//x' })).toMatchObject({ target: { path: ['v1', '', 'x'] } });
  });

  it('takes a port given as text', () => {
    expect(normaliseTarget({ ...base, port: '8443' })).toMatchObject({ target: { port: 8443 } });
  });
});
