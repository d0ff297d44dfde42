import { describe, expect, it } from 'vitest';
import {
  compileRuleSet,
  findMatch,
  matchRule,
  normaliseTarget,
  parseRule,
  type Rule,
} from '../../src/egress/index.ts';

function rule(text: string): Rule {
  const result = parseRule(text);
  if (!result.ok) throw new Error(`${text}: ${result.error.message}`);
  return result.rule;
}

/** 'GET https://a.example.com/v1/x' → does the rule match it? */
function matches(ruleText: string, request: string): boolean {
  const [method = '', url = ''] = request.split(' ');
  const m = /^(https?):\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/.exec(url);
  if (!m) throw new Error(`bad request in test: ${request}`);
  const target = normaliseTarget({
    method,
    scheme: m[1] ?? '',
    host: m[2] ?? '',
    port: m[3],
    path: m[4] ?? '/',
  });
  if (!target.ok) throw new Error(`${request}: ${target.message}`);
  return matchRule(rule(ruleText), target.target);
}

type Row = readonly [name: string, rule: string, request: string, expected: boolean];

const table: Record<string, readonly Row[]> = {
  'wildcard depth and the apex': [
    [
      'a single-label wildcard matches one extra label',
      'https://*.example.com',
      'GET https://a.example.com/',
      true,
    ],
    [
      'a single-label wildcard does not match two extra labels',
      'https://*.example.com',
      'GET https://a.b.example.com/',
      false,
    ],
    [
      'a single-label wildcard does not match the apex',
      'https://*.example.com',
      'GET https://example.com/',
      false,
    ],
    [
      'an any-depth wildcard matches one extra label',
      'https://**.example.com',
      'GET https://a.example.com/',
      true,
    ],
    [
      'an any-depth wildcard matches many extra labels',
      'https://**.example.com',
      'GET https://a.b.c.example.com/',
      true,
    ],
    [
      'an any-depth wildcard does not match the apex',
      'https://**.example.com',
      'GET https://example.com/',
      false,
    ],
    [
      'a wildcard does not match a look-alike suffix',
      'https://**.example.com',
      'GET https://evilexample.com/',
      false,
    ],
    ['an exact name does not match a subdomain', 'https://example.com', 'GET https://a.example.com/', false],
  ],
  'host normalisation': [
    ['names compare case-insensitively', 'https://API.Example.com', 'GET https://api.EXAMPLE.com/', true],
    [
      'one trailing dot on the request is ignored',
      'https://api.example.com',
      'GET https://api.example.com./',
      true,
    ],
    [
      'one trailing dot on the rule is ignored',
      'https://api.example.com.',
      'GET https://api.example.com/',
      true,
    ],
    [
      'an IDN rule matches the punycode request',
      'https://bücher.example',
      'GET https://xn--bcher-kva.example/',
      true,
    ],
    [
      'a punycode rule matches the IDN request',
      'https://xn--bcher-kva.example',
      'GET https://BÜCHER.example/',
      true,
    ],
    [
      'an IDN wildcard base matches below it',
      'https://*.bücher.example',
      'GET https://shop.xn--bcher-kva.example/',
      true,
    ],
  ],
  ports: [
    ['the https default port is 443', 'https://api.example.com', 'GET https://api.example.com:443/', true],
    ['the http default port is 80', 'http://api.example.com:80', 'GET http://api.example.com/', true],
    [
      'another port does not match the default',
      'https://api.example.com',
      'GET https://api.example.com:8443/',
      false,
    ],
    [
      'an explicit port matches only itself',
      'https://api.example.com:8443',
      'GET https://api.example.com:8443/',
      true,
    ],
    ['the scheme must be equal', 'https://api.example.com', 'GET http://api.example.com:443/', false],
  ],
  'path segment boundaries': [
    ['a prefix matches itself', 'https://a.example.com/v1', 'GET https://a.example.com/v1', true],
    [
      'a prefix matches itself with a trailing slash',
      'https://a.example.com/v1',
      'GET https://a.example.com/v1/',
      true,
    ],
    ['a prefix matches below it', 'https://a.example.com/v1', 'GET https://a.example.com/v1/charges', true],
    [
      'a prefix does not match a longer segment',
      'https://a.example.com/v1',
      'GET https://a.example.com/v10',
      false,
    ],
    [
      'a rule written with a trailing slash matches the bare prefix',
      'https://a.example.com/v1/',
      'GET https://a.example.com/v1',
      true,
    ],
    ['the root matches every path', 'https://a.example.com/', 'GET https://a.example.com/any/thing', true],
    ['paths are case-sensitive', 'https://a.example.com/v1', 'GET https://a.example.com/V1', false],
    [
      'the query string is not part of matching',
      'https://a.example.com/v1',
      'GET https://a.example.com/v1?x=/v2',
      true,
    ],
    [
      'an empty segment is a different path',
      'https://a.example.com/v1/x',
      'GET https://a.example.com/v1//x',
      false,
    ],
  ],
  'percent-encoding and dot segments': [
    [
      'encoded unreserved characters match their plain form',
      'https://a.example.com/~user',
      'GET https://a.example.com/%7Euser',
      true,
    ],
    [
      'plain unreserved characters match their encoded rule',
      'https://a.example.com/%7euser',
      'GET https://a.example.com/~user',
      true,
    ],
    [
      'encoded letters are decoded before matching',
      'https://a.example.com/v1',
      'GET https://a.example.com/%761',
      true,
    ],
    [
      'hex case of reserved encodings does not matter',
      'https://a.example.com/a%3ab',
      'GET https://a.example.com/a%3Ab',
      true,
    ],
    [
      'an encoded reserved character is not its plain form',
      'https://a.example.com/a:b',
      'GET https://a.example.com/a%3Ab',
      false,
    ],
    [
      'dot segments are removed before matching',
      'https://a.example.com/v1/x',
      'GET https://a.example.com/v1/y/../x',
      true,
    ],
    [
      'dot segments cannot climb out of a prefix',
      'https://a.example.com/v1',
      'GET https://a.example.com/v1/../admin',
      false,
    ],
    [
      'encoded dots are dot segments too',
      'https://a.example.com/v1',
      'GET https://a.example.com/v1/%2e%2e/admin',
      false,
    ],
    [
      'a single dot segment is removed',
      'https://a.example.com/v1/x',
      'GET https://a.example.com/v1/./x',
      true,
    ],
  ],
  'IP literals, CIDR ranges and names': [
    ['an IPv4 literal matches itself', 'https://10.1.2.3', 'GET https://10.1.2.3/', true],
    ['an IPv4 literal does not match its neighbour', 'https://10.1.2.3', 'GET https://10.1.2.4/', false],
    ['a CIDR matches an address inside it', 'https://10.1.2.0/24', 'GET https://10.1.2.77/', true],
    [
      'a CIDR does not match the first address outside it',
      'https://10.1.2.0/24',
      'GET https://10.1.3.0/',
      false,
    ],
    [
      'a CIDR with a path matches below the path',
      'https://10.1.2.0/24/v1',
      'GET https://10.1.2.9/v1/x',
      true,
    ],
    [
      'an IPv6 literal matches its other spellings',
      'https://[2001:db8::1]',
      'GET https://[2001:0db8:0:0::0001]/',
      true,
    ],
    ['an IPv6 CIDR matches inside it', 'https://[fd00::/64]', 'GET https://[fd00::abcd:1]/', true],
    ['an IPv6 CIDR does not match outside it', 'https://[fd00::/64]', 'GET https://[fd00:0:0:1::1]/', false],
    [
      'an IPv4 rule does not match an IPv4-mapped IPv6 request',
      'https://10.1.2.3',
      'GET https://[::ffff:10.1.2.3]/',
      false,
    ],
    ['a name rule never matches an IP literal', 'https://localhost', 'GET https://127.0.0.1/', false],
    ['an IP rule never matches a name', 'https://127.0.0.1', 'GET https://localhost/', false],
    ['a hex IPv4 spelling is read as the address it means', 'https://127.0.0.1', 'GET https://0x7f.1/', true],
    [
      'an octal IPv4 spelling is read as the address it means',
      'https://10.0.0.0/8',
      'GET https://012.1.2.3/',
      true,
    ],
  ],
  methods: [
    [
      'a rule without methods matches any method',
      'https://a.example.com',
      'DELETE https://a.example.com/',
      true,
    ],
    ['a listed method matches', 'GET,POST https://a.example.com', 'POST https://a.example.com/', true],
    [
      'an unlisted method does not match',
      'GET,POST https://a.example.com',
      'DELETE https://a.example.com/',
      false,
    ],
    ['methods are case-sensitive', 'GET https://a.example.com', 'get https://a.example.com/', false],
  ],
};

for (const [concept, rows] of Object.entries(table)) {
  describe(concept, () => {
    it.each(rows)('%s', (_name, ruleText, request, expected) => {
      expect(matches(ruleText, request)).toBe(expected);
    });
  });
}

describe('a compiled rule set', () => {
  const set = compileRuleSet(
    [
      'https://**.example.com',
      'https://*.example.com',
      'GET https://api.example.com/v1',
      'https://10.0.0.0/8',
    ].map(rule),
  );
  const target = (host: string, path = '/') => {
    const result = normaliseTarget({ method: 'GET', scheme: 'https', host, path });
    if (!result.ok) throw new Error(result.message);
    return result.target;
  };

  it('reports the most specific matching rule: the exact name first', () => {
    expect(findMatch(set, target('api.example.com', '/v1/x'))?.host).toEqual({
      kind: 'name',
      name: 'api.example.com',
    });
  });

  it('falls back to the one-label wildcard, then the any-depth wildcard', () => {
    expect(findMatch(set, target('api.example.com', '/v2'))?.host).toMatchObject({ depth: 'one' });
    expect(findMatch(set, target('a.b.example.com'))?.host).toMatchObject({ depth: 'many' });
  });

  it('matches addresses only against IP rules', () => {
    expect(findMatch(set, target('10.9.9.9'))?.host).toMatchObject({ kind: 'ip' });
    expect(findMatch(set, target('11.0.0.1'))).toBeNull();
  });
});
