// Adversarial inputs: what an attacker steering an agent's HTTP requests could send to make the
// gateway check one host or path while the upstream server sees another, forward a request line
// it did not check, widen a grant through intersection, or stall the gateway.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compileRuleSet,
  findMatch,
  formatRule,
  intersectRules,
  normaliseTarget,
  parseRule,
  type RawTarget,
  type Rule,
  ruleContains,
  simplifyRules,
} from '../../src/egress/index.ts';
import { ruleSet } from './arbitraries.ts';

const base: RawTarget = { method: 'GET', scheme: 'https', host: 'api.example.com', path: '/' };

function rule(text: string): Rule {
  const result = parseRule(text);
  if (!result.ok) throw new Error(`${text}: ${result.error.message}`);
  return result.rule;
}

function forwarded(path: string): string {
  const result = normaliseTarget({ ...base, path });
  if (!result.ok) throw new Error(`${path}: ${result.message}`);
  return result.forwardPath;
}

/** What the gateway writes upstream: `${method} ${forwardPath} HTTP/1.1`. */
const REQUEST_TARGET = /^\/[\x21-\x7e]*$/;

describe('the forwarded request target', () => {
  it('percent-encodes a CR LF in the query instead of forwarding a second header line', () => {
    expect(forwarded('/v1?a=1\r\nHost: evil.example')).toBe('/v1?a=1%0D%0AHost:%20evil.example');
  });

  it('percent-encodes spaces, NUL and other controls in the query', () => {
    expect(forwarded('/?a b\u0000c\td\u007f')).toBe('/?a%20b%00c%09d%7F');
  });

  it('percent-encodes non-ASCII characters in the query as UTF-8 (U+010A is 0x0A in Latin-1)', () => {
    expect(forwarded('/?q=\u010a\u00e9\u{1f600}')).toBe('/?q=%C4%8A%C3%A9%F0%9F%98%80');
  });

  it('percent-encodes the characters a URL parser encodes in a query', () => {
    expect(forwarded(`/?a="<x>'`)).toBe('/?a=%22%3Cx%3E%27');
  });

  it('keeps an already valid query byte for byte, encodings included', () => {
    expect(forwarded('/v1?x=%2F&y=a/b?c&z=[1]&w=%zz;+!$')).toBe('/v1?x=%2F&y=a/b?c&z=[1]&w=%zz;+!$');
  });

  it('refuses a lone surrogate in the query', () => {
    expect(normaliseTarget({ ...base, path: '/?q=\ud800' })).toMatchObject({
      ok: false,
      problem: 'bad_character',
    });
  });

  it('percent-encodes raw spaces and controls in the path', () => {
    expect(forwarded('/a b/c\r\nd')).toBe('/a%20b/c%0D%0Ad');
  });

  it('is always printable ASCII without spaces, whatever the path and query', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (path, query) => {
        const result = normaliseTarget({ ...base, path: `/${path}?${query}` });
        if (result.ok) expect(result.forwardPath).toMatch(REQUEST_TARGET);
      }),
      { numRuns: 3_000 },
    );
  });
});

describe('characters beyond the Basic Multilingual Plane in a path', () => {
  // They are two UTF-16 code units; encoding them one unit at a time threw a URIError.
  it('are percent-encoded as UTF-8 in a request instead of throwing', () => {
    expect(forwarded('/v1/\u{1f600}x/\u{10000}')).toBe('/v1/%F0%9F%98%80x/%F0%90%80%80');
  });

  it('are percent-encoded as UTF-8 in a rule instead of throwing', () => {
    expect(formatRule(rule('https://a.example.com/\u{1f600}'))).toBe('https://a.example.com/%F0%9F%98%80');
  });

  it('do not shift the column of a later mistake', () => {
    expect(parseRule('https://a.example.com/\u{1f600}%zz')).toMatchObject({
      ok: false,
      error: { column: 25 },
    });
  });

  it('never make normalising a request or parsing a rule throw', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expect(() => normaliseTarget({ ...base, path: `/${text}` })).not.toThrow();
        expect(() => parseRule(`https://a.example.com/${text}`)).not.toThrow();
      }),
      { numRuns: 3_000 },
    );
  });
});

describe('a NUL in a path', () => {
  it('is refused raw in a request, as it is when encoded (%00)', () => {
    expect(normaliseTarget({ ...base, path: '/v1/a\u0000b' })).toMatchObject({
      ok: false,
      problem: 'bad_character',
    });
  });

  it('is refused raw in a rule, as it is when encoded (%00)', () => {
    const result = parseRule('https://a.example.com/v1/a\u0000b');
    expect(result).toMatchObject({ ok: false, error: { column: 27 } });
    expect(!result.ok && result.error.message).toContain('NUL');
  });
});

describe('dot segments with path parameters', () => {
  // Tomcat and Jetty strip `;params` from a segment before resolving dot segments, so they read
  // `/v1/..;/admin` as `/admin` while a prefix check sees a segment named `..;` under /v1.
  it.each([
    ['/v1/..;/admin'],
    ['/v1/..;jsessionid=x/admin'],
    ['/v1/%2e%2e;/admin'],
    ['/v1/.%2E;x/admin'],
    ['/v1/..%3b/admin'],
    ['/v1/..%3B'],
  ])('refuses %s, which some servers read as a climb out of /v1', (path) => {
    expect(normaliseTarget({ ...base, path })).toMatchObject({ ok: false, problem: 'escapes_root' });
  });

  it('does not let a rule for /v1 reach what such a server reads as /admin', () => {
    const set = compileRuleSet([rule('GET https://api.example.com/v1')]);
    const result = normaliseTarget({ ...base, path: '/v1/..;/admin' });
    expect(result.ok && findMatch(set, result.target)).toBeFalsy();
  });

  it('resolves a plain dot-dot after a segment with parameters, and forwards the result', () => {
    expect(forwarded('/v1;x/../admin')).toBe('/admin');
  });

  it('keeps other segments with parameters as they are', () => {
    expect(forwarded('/v1;x/a;b=c/;/...;')).toBe('/v1;x/a;b=c/;/...;');
  });

  it.each([
    ['https://a.example.com/v1/..;/x', 26],
    ['https://a.example.com/v1/.;x', 26],
    ['https://a.example.com/v1/%2e%2e%3Bx', 26],
  ])('refuses %s in a rule at column %i', (text, column) => {
    const result = parseRule(text);
    expect(result).toMatchObject({ ok: false, error: { column } });
    expect(!result.ok && result.error.message).toContain('dot segments');
  });
});

describe('a rule with encoded dot segments', () => {
  it('is refused with the path it resolves to, not the encoded spelling again', () => {
    const result = parseRule('https://a.example.com/v1/%2e%2e/x');
    expect(!result.ok && result.error.message).toContain('write the path as it resolves: /x');
  });
});

describe('percent-encodings that are fine to forward', () => {
  it('decodes only once: a double-encoded slash is a literal %2F to the upstream, and stays encoded', () => {
    expect(forwarded('/v1/a%252Fb')).toBe('/v1/a%252Fb');
    expect(forwarded('/v1/%252e%252e/admin')).toBe('/v1/%252e%252e/admin');
  });

  it('encodes fullwidth look-alikes of dots and percent signs as UTF-8, never as dots', () => {
    expect(forwarded('/v1/\uff0e\uff0e/x')).toBe('/v1/%EF%BC%8E%EF%BC%8E/x');
    expect(forwarded('/v1/\uff05\uff12\uff45/x')).toBe('/v1/%EF%BC%85%EF%BC%92%EF%BD%85/x');
  });

  it('reads encoded dots in any case as dot segments', () => {
    for (const dots of ['%2e%2e', '%2E%2E', '%2e%2E', '.%2e', '%2E.'])
      expect(forwarded(`/v1/x/${dots}/y`)).toBe('/v1/y');
  });
});

describe('unusual host spellings', () => {
  const host = (text: string) => {
    const result = normaliseTarget({ ...base, host: text });
    return result.ok ? result.target.host : null;
  };

  it('reads IDNA label separators (。．｡) as dots, so wildcard depth is counted after mapping', () => {
    expect(host('a\u3002example.com')).toEqual({ kind: 'name', name: 'a.example.com' });
    expect(host('a\uff0eb\uff61example.com')).toEqual({ kind: 'name', name: 'a.b.example.com' });
    const set = compileRuleSet([rule('https://*.example.com')]);
    const target = (name: string) => {
      const result = normaliseTarget({ ...base, host: name });
      if (!result.ok) throw new Error(result.message);
      return result.target;
    };
    expect(findMatch(set, target('a\u3002example.com'))).not.toBeNull();
    expect(findMatch(set, target('a\u3002b.example.com'))).toBeNull();
  });

  it.each([
    ['a trailing ideographic full stop', 'a.example.com\u3002'],
    ['two trailing dots', 'api.example.com..'],
    ['a leading dot', '.api.example.com'],
    ['an empty label', 'api..example.com'],
    ['a port', 'api.example.com:443'],
    ['a fullwidth colon and port', 'api.example.com\uff1a443'],
    ['a fullwidth slash', 'api.example.com\uff0fevil'],
    ['a fullwidth at sign', 'user\uff20api.example.com'],
    ['a lone surrogate', 'a\ud800.example.com'],
    ['a label longer than 63', `${'a'.repeat(64)}.example.com`],
    ['a name longer than 253', `${'a.'.repeat(127)}com`],
    ['a bare star', '*'],
    ['a numeric last label that is no IPv4 address', 'a.b.c.1'],
  ])('refuses %s', (_name, text) => {
    expect(normaliseTarget({ ...base, host: text })).toMatchObject({ ok: false, problem: 'bad_host' });
  });

  it('lower-cases punycode and keeps labels IDNA cannot decode as they are', () => {
    expect(host('XN--BCHER-KVA.example')).toEqual({ kind: 'name', name: 'xn--bcher-kva.example' });
    expect(host('xn--a.example')).toEqual({ kind: 'name', name: 'xn--a.example' });
    expect(rule('https://xn--a.example').host).toEqual({ kind: 'name', name: 'xn--a.example' });
  });

  it('accepts underscores in labels on both sides alike (DNS allows them)', () => {
    expect(host('_dmarc.a_b.example.com')).toEqual({ kind: 'name', name: '_dmarc.a_b.example.com' });
    expect(rule('https://*.a_b.example.com').host).toEqual({
      kind: 'wildcard',
      base: 'a_b.example.com',
      depth: 'one',
    });
  });

  it('drops the characters IDNA ignores (soft hyphen, zero-width space) on both sides alike', () => {
    expect(host('ex\u00adample.com')).toEqual({ kind: 'name', name: 'example.com' });
    expect(rule('https://ex\u00adample.com').host).toEqual({ kind: 'name', name: 'example.com' });
  });

  it('reads fullwidth digits as the IPv4 address a URL parser would dial, never as a name', () => {
    expect(host('\uff11\uff12\uff17.0.0.1')).toEqual({ kind: 'ip', family: 4, bytes: [127, 0, 0, 1] });
    expect(host('127\u30020\u30020\u30021')).toEqual({ kind: 'ip', family: 4, bytes: [127, 0, 0, 1] });
    expect(parseRule('https://\uff11\uff10.1.2.3').ok).toBe(false);
  });
});

describe('the method written into the request line', () => {
  it.each([['GET '], ['GET\t'], ['GET\r\nX-Injected: 1'], ['\u0000GET'], ['GÉT']])(
    'refuses %j, which is not an HTTP token',
    (method) => {
      expect(normaliseTarget({ ...base, method })).toMatchObject({ ok: false, problem: 'bad_method' });
    },
  );
});

describe('a /0 range', () => {
  it('matches every address literal of its family, and never a name or the other family', () => {
    const set = compileRuleSet([rule('https://0.0.0.0/0')]);
    const target = (host: string) => {
      const result = normaliseTarget({ ...base, host });
      if (!result.ok) throw new Error(result.message);
      return result.target;
    };
    expect(findMatch(set, target('203.0.113.9'))).not.toBeNull();
    expect(findMatch(set, target('0x7f.1'))).not.toBeNull();
    expect(findMatch(set, target('api.example.com'))).toBeNull();
    expect(findMatch(set, target('[::ffff:203.0.113.9]'))).toBeNull();
  });
});

describe('untyped input', () => {
  it.each([
    ['an object without a string form', Object.create(null)],
    [
      'an object whose string form throws',
      {
        toString: () => {
          throw new Error('boom');
        },
      },
    ],
    ['an array', [443]],
    ['a boolean', true],
  ])('refuses %s as a port without throwing', (_name, port) => {
    expect(normaliseTarget({ ...base, port } as unknown as RawTarget)).toMatchObject({
      ok: false,
      problem: 'bad_port',
    });
  });

  it('reads a port with leading zeros as the number (what URL parsers do)', () => {
    expect(normaliseTarget({ ...base, port: '0443' })).toMatchObject({ ok: true, target: { port: 443 } });
    expect(parseRule('https://a.example.com:0443').ok && formatRule(rule('https://a.example.com:0443'))).toBe(
      'https://a.example.com/',
    );
  });
});

describe('simplification', () => {
  it('leaves no rule that another rule of the result contains (the index finds every container)', () => {
    fc.assert(
      fc.property(ruleSet, ruleSet, (a, b) => {
        const simplified = simplifyRules([...a, ...b]);
        for (const outer of simplified)
          for (const inner of simplified) if (outer !== inner) expect(ruleContains(outer, inner)).toBe(false);
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('big inputs', () => {
  const fast = (run: () => unknown) => {
    const start = performance.now();
    run();
    return performance.now() - start;
  };

  it('normalises 100,000-character paths, hosts and queries in linear time', () => {
    for (const path of [`/${'a/'.repeat(50_000)}`, `/${'a/../'.repeat(20_000)}x`, '/'.repeat(100_000)])
      expect(fast(() => normaliseTarget({ ...base, path }))).toBeLessThan(1_000);
    for (const host of [
      'a.'.repeat(50_000),
      '1'.repeat(100_000),
      `0x${'0'.repeat(100_000)}`,
      '.'.repeat(100_000),
    ])
      expect(fast(() => normaliseTarget({ ...base, host }))).toBeLessThan(1_000);
    expect(fast(() => normaliseTarget({ ...base, path: `/?${'\u00e9 '.repeat(100_000)}` }))).toBeLessThan(
      1_000,
    );
  });

  it('parses 100,000-character rules in linear time', () => {
    for (const text of [
      `https://a.example.com/${'a/'.repeat(50_000)}`,
      `https://${'1.'.repeat(50_000)}/${'1'.repeat(50_000)}x`,
      `https://${'*.'.repeat(50_000)}com`,
      `https://[${':'.repeat(100_000)}]`,
      `${'GET,'.repeat(25_000)}GET https://a.example.com`,
    ])
      expect(fast(() => parseRule(text))).toBeLessThan(1_000);
  });

  it('intersects and simplifies many rules on one host without comparing every pair', () => {
    // An agent may request a token for thousands of locations on one granted host; the token
    // endpoint and the gateway intersect them with the registration on every issue / request.
    const requested = Array.from({ length: 20_000 }, (_, i) => rule(`https://api.example.com/v1/x${i}`));
    const registered = [rule('https://api.example.com/v1'), rule('https://**.example.com/')];
    let result: Rule[] = [];
    expect(fast(() => (result = intersectRules(requested, registered)))).toBeLessThan(3_000);
    expect(result).toHaveLength(20_000);
    expect(fast(() => simplifyRules([...requested, ...requested]))).toBeLessThan(3_000);
  });
});
