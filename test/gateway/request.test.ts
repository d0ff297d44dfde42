// Reading a proxy request (src/gateway/proxy-auth.ts, src/gateway/request-target.ts): where the
// token is, and what the request asks for, refusing what could be read two ways.
import { describe, expect, it } from 'vitest';
import { proxyCredential } from '../../src/gateway/proxy-auth.ts';
import { readAbsoluteTarget, readConnectTarget } from '../../src/gateway/request-target.ts';

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
const basic = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;

describe('the proxy credential', () => {
  it.each([
    ['Bearer', [`Bearer ${TOKEN}`]],
    ['lower-case bearer', [`bearer ${TOKEN}`]],
    ['Basic with the token as the password', [basic(`agent:${TOKEN}`)]],
    ['Basic with the token as the user name and no password', [basic(`${TOKEN}:`)]],
  ])('is read from %s', (_name, values) => {
    expect(proxyCredential(values)).toEqual({ ok: true, token: TOKEN });
  });

  it.each([
    ['no header', [], 'missing'],
    ['two headers', [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`], 'multiple'],
    ['a Bearer and a Basic header', [`Bearer ${TOKEN}`, basic(`agent:${TOKEN}`)], 'multiple'],
    // Not Basic at all (RFC 7617 §2: user-id ":" password): which half is the token is a guess.
    ['Basic of the bare token, without a colon', [basic(TOKEN)], 'malformed'],
    ['Basic of a user name and an empty password', [basic('agent:')], 'malformed'],
    ['another scheme', [`Digest ${TOKEN}`], 'malformed'],
    ['an empty Bearer', ['Bearer '], 'missing'],
    ['Basic that is not base64', ['Basic !!!'], 'malformed'],
    ['Basic with a password but no user name', [basic(`:${TOKEN}`)], 'malformed'],
    ['something that is not a JWS', ['Bearer not-a-token'], 'malformed'],
    ['an oversized token', [`Bearer ${'a'.repeat(9000)}.b.c`], 'malformed'],
  ])('is refused for %s', (_name, values, problem) => {
    expect(proxyCredential(values)).toMatchObject({ ok: false, problem });
  });
});

describe('an absolute-form target', () => {
  it('is normalised: case, default port, dot segments, and the query kept for forwarding only', () => {
    const read = readAbsoluteTarget('GET', 'HTTP://API.Example.COM:80/v1/./a/../b?x=1', []);
    expect(read).toMatchObject({
      ok: true,
      target: { method: 'GET', scheme: 'http', port: 80, path: ['v1', 'b'] },
      forwardPath: '/v1/b?x=1',
    });
  });

  it('accepts a Host header naming the same origin, default port or not', () => {
    expect(readAbsoluteTarget('GET', 'http://api.example.com/v1', ['api.example.com:80']).ok).toBe(true);
    expect(readAbsoluteTarget('GET', 'https://api.example.com/v1', ['API.example.com']).ok).toBe(true);
  });

  it.each([
    ['userinfo', 'http://user:pw@api.example.com/', []],
    ['a fragment', 'http://api.example.com/a#frag', []],
    ['a Host naming another host', 'http://api.example.com/', ['evil.example']],
    ['a Host naming another port', 'http://api.example.com/', ['api.example.com:8080']],
    ['two Host headers', 'http://api.example.com/', ['api.example.com', 'api.example.com']],
    ['an encoded slash', 'http://api.example.com/v1%2fadmin', []],
    ['a backslash', 'http://api.example.com/v1\\admin', []],
    ['dot segments escaping the root', 'http://api.example.com/../admin', []],
  ])('is refused as ambiguous with %s', (_name, url, hosts) => {
    expect(readAbsoluteTarget('GET', url, hosts)).toMatchObject({ ok: false, reason: 'ambiguous_target' });
  });

  it('is refused without a Host in HTTP/1.1 (missing_host), and read without one in HTTP/1.0', () => {
    expect(readAbsoluteTarget('GET', 'http://api.example.com/v1', [], true)).toMatchObject({
      ok: false,
      reason: 'missing_host',
    });
    expect(readAbsoluteTarget('GET', 'http://api.example.com/v1', [], false).ok).toBe(true);
  });

  it.each([
    ['origin-form', '/v1/x'],
    ['another scheme', 'ftp://api.example.com/'],
    ['no host', 'http:///x'],
    ['a bad port', 'http://api.example.com:99999/'],
    ['a space in the host', 'http://api example.com/'],
  ])('is refused as malformed with %s', (_name, url) => {
    expect(readAbsoluteTarget('GET', url, [])).toMatchObject({ ok: false, reason: 'malformed' });
  });
});

describe('a CONNECT target', () => {
  it('names host and port, IPv6 in brackets', () => {
    expect(readConnectTarget('api.example.com:443', 'https')).toMatchObject({
      ok: true,
      target: { method: 'CONNECT', scheme: 'https', port: 443, path: [] },
      authority: 'api.example.com:443',
    });
    expect(readConnectTarget('[2001:db8::1]:8443', 'https')).toMatchObject({ ok: true });
  });

  it.each([
    ['no port', 'api.example.com'],
    ['a path', 'api.example.com:443/x'],
    ['userinfo', 'u@api.example.com:443'],
  ])('is refused with %s', (_name, url) => {
    expect(readConnectTarget(url, 'https').ok).toBe(false);
  });
});

describe('a CONNECT target’s Host header', () => {
  it('may name the target with or without its port', () => {
    for (const host of ['api.example.com:443', 'API.example.com.:443', 'api.example.com']) {
      expect(readConnectTarget('api.example.com:443', 'https', [host], true).ok, host).toBe(true);
    }
    expect(readConnectTarget('[2001:db8::1]:8443', 'https', ['[2001:db8:0::1]:8443'], true).ok).toBe(true);
  });

  it.each([
    ['another host', ['evil.example:443']],
    ['another port', ['api.example.com:8443']],
    ['an address instead of the name', ['93.184.216.34:443']],
    ['userinfo', ['u@api.example.com:443']],
    ['two Host headers', ['api.example.com:443', 'api.example.com:443']],
  ])('is refused as ambiguous when it names %s', (_name, hosts) => {
    expect(readConnectTarget('api.example.com:443', 'https', hosts, true)).toMatchObject({
      ok: false,
      reason: 'ambiguous_target',
    });
  });

  it('is required in HTTP/1.1 (missing_host), not in HTTP/1.0', () => {
    expect(readConnectTarget('api.example.com:443', 'https', [], true)).toMatchObject({
      ok: false,
      reason: 'missing_host',
    });
    expect(readConnectTarget('api.example.com:443', 'https', [], false).ok).toBe(true);
  });
});
