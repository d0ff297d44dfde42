// parseRule: rule text → canonical Rule, or the column of the first mistake and what to write
// instead. Never throws. Grammar (SPEC.md):
//   rule    = [methods SP] scheme "://" host [":" port] [path]
//   methods = METHOD *("," METHOD)
import { parseHostPattern } from './host.ts';
import { parseRulePath } from './path.ts';
import { DEFAULT_PORTS, type Rule, type Scheme } from './rule.ts';

export interface RuleError {
  /** 1-based column in the rule text where the mistake starts. */
  readonly column: number;
  readonly message: string;
}

export type ParseResult = { ok: true; rule: Rule } | { ok: false; error: RuleError };

const METHOD = /^[A-Z][A-Z0-9_-]*$/;

function fail(offset: number, message: string): ParseResult {
  return { ok: false, error: { column: offset + 1, message } };
}

export function parseRule(text: string): ParseResult {
  if (typeof text !== 'string')
    return fail(0, 'a rule must be a string such as "GET https://api.example.com/v1/"');
  if (text.trim() === '') return fail(0, 'the rule is empty; write e.g. "GET https://api.example.com/v1/"');
  if (text !== text.trim()) {
    return fail(text === text.trimStart() ? text.trimEnd().length : 0, 'remove the spaces around the rule');
  }

  let methods: string[] | null = null;
  let offset = 0;
  const space = text.indexOf(' ');
  if (space >= 0) {
    if (/[:/]/.test(text.slice(0, space)))
      return fail(space, 'a rule has at most one space, after the methods');
    const parsed = parseMethods(text.slice(0, space));
    if (!parsed.ok) return fail(parsed.offset, parsed.message);
    methods = parsed.methods;
    offset = space + 1;
    if (text[offset] === ' ') return fail(offset, 'use a single space between the methods and the URL');
  }

  const url = text.slice(offset);
  const schemeEnd = url.indexOf('://');
  const scheme = schemeEnd >= 0 ? url.slice(0, schemeEnd).toLowerCase() : '';
  if (scheme !== 'https' && scheme !== 'http') {
    if (/\s/.test(url))
      return fail(offset + url.search(/\s/), 'a rule has at most one space, after the methods');
    return fail(
      offset,
      schemeEnd < 0
        ? `a rule needs a scheme; write https://${url} or http://${url}`
        : `the scheme must be https or http, not '${url.slice(0, schemeEnd)}'`,
    );
  }
  offset += schemeEnd + 3;
  const rest = text.slice(offset);

  const hostEnd = findHostEnd(rest);
  const hostText = rest.slice(0, hostEnd);
  if (hostText.includes('@')) {
    return fail(
      offset + hostText.indexOf('@'),
      'user information (user@) is not allowed in a rule; remove it',
    );
  }
  const host = parseHostPattern(hostText);
  if (!host.ok) return fail(offset + host.offset, host.message);

  let port = DEFAULT_PORTS[scheme as Scheme];
  let cursor = hostEnd;
  if (rest[cursor] === ':') {
    const portText = /^[0-9]*/.exec(rest.slice(cursor + 1))?.[0] ?? '';
    const value = Number(portText);
    if (portText === '' || portText.length > 5 || value < 1 || value > 65535) {
      return fail(offset + cursor + 1, 'the port must be a number from 1 to 65535');
    }
    port = value;
    cursor += 1 + portText.length;
  }

  const pathText = rest.slice(cursor);
  const special = pathText.search(/[?#\s]/);
  if (pathText !== '' && !pathText.startsWith('/') && special !== 0) {
    return fail(offset + cursor, `expected a path starting with '/' here, not '${pathText[0]}'`);
  }
  if (special >= 0) {
    const ch = pathText[special];
    return fail(
      offset + cursor + special,
      ch === '?'
        ? 'the query string is not part of matching; remove it from the rule'
        : ch === '#'
          ? 'a fragment is not part of matching; remove it from the rule'
          : 'a rule has at most one space, after the methods',
    );
  }
  const path = parseRulePath(pathText === '' ? '/' : pathText);
  if (!path.ok) return fail(offset + cursor + path.offset, path.message);

  return {
    ok: true,
    rule: { methods, scheme: scheme as Scheme, host: host.host, port, path: path.segments },
  };
}

function parseMethods(
  text: string,
): { ok: true; methods: string[] } | { ok: false; offset: number; message: string } {
  const methods = new Set<string>();
  let offset = 0;
  for (const method of text.split(',')) {
    if (method === '')
      return { ok: false, offset, message: 'a method is missing; write methods like GET,POST' };
    if (!METHOD.test(method)) {
      const upper = method.toUpperCase();
      return {
        ok: false,
        offset,
        message: METHOD.test(upper)
          ? `methods are case-sensitive and written in upper case: write ${upper}`
          : `'${method}' is not an HTTP method; write methods like GET,POST`,
      };
    }
    methods.add(method);
    offset += method.length + 1;
  }
  return { ok: true, methods: [...methods].sort() };
}

/**
 * Where the host ends. An IPv4 CIDR's `/prefix` belongs to the host when only digits follow the
 * slash up to the end, a ':' or the next '/': `https://10.1.2.0/24/v1` is the range 10.1.2.0/24
 * with the path /v1. (A path whose first segment is a number after an IPv4 literal is written
 * with an explicit /32: `https://10.1.2.3/32/2024`.)
 */
function findHostEnd(rest: string): number {
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    return close < 0 ? rest.search(/[/:]|$/) : close + 1;
  }
  const cidr = /^[0-9.]+\/[0-9]+(?=$|[:/])/.exec(rest);
  if (cidr) return cidr[0].length;
  const end = rest.search(/[/:?#\s]/);
  return end < 0 ? rest.length : end;
}
