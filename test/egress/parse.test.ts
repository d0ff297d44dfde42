import { describe, expect, it } from 'vitest';
import { formatRule, parseRule } from '../../src/egress/index.ts';

describe('parsing a valid rule', () => {
  it.each([
    ['POST,GET https://api.stripe.com/v1/', 'GET,POST https://api.stripe.com/v1'],
    ['GET https://**.wikipedia.org/', 'GET https://**.wikipedia.org/'],
    ['https://*.example.com', 'https://*.example.com/'],
    ['HTTPS://API.EXAMPLE.COM:443/', 'https://api.example.com/'],
    ['http://api.example.com:8080/x/', 'http://api.example.com:8080/x'],
    ['https://Bücher.example./a', 'https://xn--bcher-kva.example/a'],
    ['https://10.1.2.0/24', 'https://10.1.2.0/24/'],
    ['https://10.1.2.0/24/v1', 'https://10.1.2.0/24/v1'],
    ['https://10.1.2.3/32/2024', 'https://10.1.2.3/32/2024'],
    ['https://10.1.2.3:8443/2024', 'https://10.1.2.3:8443/2024'],
    ['https://[FD00::/64]', 'https://[fd00::/64]/'],
    ['https://[2001:0db8::0001]:8443/x', 'https://[2001:db8::1]:8443/x'],
    // IPv4-compatible, not IPv4-mapped (ipaddr.js would read ::ffff:1.2.3.4): RFC 5952 hex form.
    ['https://[::1.2.3.4]', 'https://[::102:304]/'],
    ['GET,GET https://a.example.com', 'GET https://a.example.com/'],
    ['PROPFIND https://dav.example.com/', 'PROPFIND https://dav.example.com/'],
    ['https://a.example.com/%7euser/caf%c3%a9', 'https://a.example.com/~user/caf%C3%A9'],
    ['https://a.example.com/café', 'https://a.example.com/caf%C3%A9'],
  ])('%s is read as %s', (text, canonical) => {
    const result = parseRule(text);
    expect(result.ok && formatRule(result.rule)).toBe(canonical);
    expect(parseRule(canonical)).toEqual(result);
  });
});

describe('parsing a rule with a mistake', () => {
  // Each row: the text, the 1-based column of the mistake, and words the message must contain
  // (what to write instead).
  it.each([
    ['get https://a.example.com', 1, 'write GET'],
    ['GET,,POST https://a.example.com', 5, 'method is missing'],
    ['GET  https://a.example.com', 5, 'single space'],
    ['api.example.com/v1', 1, 'write https://api.example.com/v1'],
    ['ftp://a.example.com', 1, 'https or http'],
    ['https://', 9, 'host is missing'],
    ['https://a.*.example.com', 11, 'whole first label'],
    ['https://*example.com', 9, 'whole first label'],
    ['https://user@a.example.com', 13, 'user information'],
    ['https://a.example.com:0', 23, 'from 1 to 65535'],
    ['https://a.example.com:99999', 23, 'from 1 to 65535'],
    ['https://a.example.com:x', 23, 'from 1 to 65535'],
    ['https://a.example.com/v1?x=1', 25, 'query string'],
    ['https://a.example.com/#top', 23, 'fragment'],
    ['https://a.example.com/a%2fb', 24, "encoded '/'"],
    ['https://a.example.com/a%5Cb', 24, "encoded '\\'"],
    ['https://a.example.com/a%00', 24, 'NUL'],
    ['https://a.example.com/a\\b', 24, "'\\'"],
    ['https://a.example.com/a%zz', 24, 'two hex digits'],
    ['https://a.example.com/v1/../x', 26, 'write the path as it resolves: /x'],
    ['https://a.example.com/v1//x', 26, 'empty and dot segments'],
    ['https://10.1.2.3/24', 9, 'write the network address: 10.1.2.0/24'],
    ['https://[fd00::1/64]', 9, 'write the network address: [fd00::/64]'],
    ['https://10.1.2.0/33', 18, 'from 0 to 32'],
    ['https://0x7f.0.0.1', 9, 'dotted-decimal'],
    ['https://010.1.2.3', 9, 'without leading zeros'],
    ['https://[fe80::1%eth0]', 17, 'zone ids'],
    ['https://[::ffff:010.1.1.1]', 10, "'::ffff:010.1.1.1' is not a valid IPv6 address"],
    ['https://[fd00::1', 9, 'not closed'],
    ['https://exa mple.com', 12, 'at most one space'],
    [' https://a.example.com', 1, 'remove the spaces'],
    ['', 1, 'empty'],
  ])('%s is refused at column %i with "%s"', (text, column, words) => {
    const result = parseRule(text);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.message).toContain(words);
      expect(result.error.column).toBe(column);
    }
  });
});

describe('the canonical text of IPv4-mapped IPv6 rules', () => {
  it('uses the mixed notation RFC 5952 §5 recommends, and reads back the same', () => {
    const result = parseRule('https://[::FFFF:0A01:0203]:8443/x');
    expect(result.ok && formatRule(result.rule)).toBe('https://[::ffff:10.1.2.3]:8443/x');
    const again = result.ok ? parseRule(formatRule(result.rule)) : result;
    expect(again).toEqual(result);
  });
});
