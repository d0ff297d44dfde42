// normaliseTarget: a request's method, scheme, host, port and path → a canonical Target, or the
// reason it cannot be one. Hosts are read as a WHATWG URL parser (what curl, browsers and Node
// read) would read them, so `0x7f.1` is the address 127.0.0.1 here too and cannot slip past
// address checks as a "name".
import ipaddr from 'ipaddr.js';
import { parseAddress } from './address.ts';
import { normaliseName, type TargetHost } from './host.ts';
import type { Target } from './match.ts';
import { formatPath, type PathProblem, parseRequestPath } from './path.ts';
import { DEFAULT_PORTS, type Scheme } from './rule.ts';

export interface RawTarget {
  readonly method: string;
  readonly scheme: string;
  /** The host as the request names it: a DNS name, an IPv4 literal, or an IPv6 literal in brackets. */
  readonly host: string;
  /** Omitted, null or '' means the scheme's default. */
  readonly port?: number | string | null;
  /** Origin-form path; a query string, if present, is cut off and not matched. */
  readonly path: string;
}

export type TargetProblem = 'bad_method' | 'bad_scheme' | 'bad_host' | 'bad_port' | PathProblem;

export type TargetResult =
  | {
      ok: true;
      target: Target;
      /** The canonical path and the query (see normaliseQuery) to send upstream. */
      forwardPath: string;
    }
  | { ok: false; problem: TargetProblem; message: string };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function normaliseTarget(raw: RawTarget): TargetResult {
  if (typeof raw.method !== 'string' || !TOKEN.test(raw.method)) {
    return { ok: false, problem: 'bad_method', message: 'the method is not an HTTP token' };
  }
  const scheme = typeof raw.scheme === 'string' ? raw.scheme.toLowerCase() : '';
  if (scheme !== 'http' && scheme !== 'https') {
    return { ok: false, problem: 'bad_scheme', message: `only http and https are supported` };
  }
  const host = normaliseTargetHost(raw.host);
  if (host === null)
    return { ok: false, problem: 'bad_host', message: 'the host is not a valid name or address' };

  const port = normalisePort(raw.port, scheme);
  if (port === null)
    return { ok: false, problem: 'bad_port', message: 'the port must be a number from 1 to 65535' };

  if (typeof raw.path !== 'string')
    return { ok: false, problem: 'escapes_root', message: 'the path is missing' };
  const hash = raw.path.indexOf('#');
  if (hash >= 0)
    return { ok: false, problem: 'bad_character', message: 'a fragment is not allowed in a request' };
  const queryAt = raw.path.indexOf('?');
  const pathOnly = queryAt >= 0 ? raw.path.slice(0, queryAt) : raw.path;
  const path = parseRequestPath(pathOnly === '' ? '/' : pathOnly);
  if (!path.ok) return { ok: false, problem: path.problem, message: path.message };
  const query = queryAt >= 0 ? normaliseQuery(raw.path.slice(queryAt)) : '';
  if (query === null)
    return { ok: false, problem: 'bad_character', message: 'the query is not well-formed Unicode' };

  return {
    ok: true,
    target: { method: raw.method, scheme, host, port, path: path.segments },
    forwardPath: formatPath(path.segments) + query,
  };
}

/**
 * The query (with its `?`) as it may be forwarded. It is not matched, but it is written into the
 * upstream request line (`GET ${forwardPath} HTTP/1.1`): a raw CR LF, space or NUL there would
 * let the agent end the checked request line and inject headers or a second, unchecked request,
 * and a non-ASCII character written as Latin-1 can become one (U+010A is 0x0A). So the
 * characters a WHATWG URL parser encodes in a query (controls, space, `"`, `'`, `<`, `>`, DEL and
 * everything beyond ASCII) are percent-encoded as UTF-8; everything else, existing `%XX`
 * included, is kept byte for byte. null for a lone surrogate, which has no UTF-8 form.
 */
function normaliseQuery(query: string): string | null {
  if (!query.isWellFormed()) return null;
  let out = '';
  for (const ch of query) {
    const code = ch.codePointAt(0) as number;
    if (code <= 0x20 || code >= 0x7f || ch === '"' || ch === '<' || ch === '>') out += encodeURIComponent(ch);
    else if (ch === "'") out += '%27';
    else out += ch;
  }
  return out;
}

function normalisePort(port: RawTarget['port'], scheme: Scheme): number | null {
  if (port === undefined || port === null || port === '') return DEFAULT_PORTS[scheme];
  // Only numbers and strings: String() of an arbitrary object may throw or read as a port.
  if (typeof port !== 'number' && typeof port !== 'string') return null;
  const text = String(port);
  if (!/^[0-9]{1,5}$/.test(text)) return null;
  const value = Number(text);
  return value >= 1 && value <= 65535 ? value : null;
}

/** A request's host → name or address; null when it is neither. */
export function normaliseTargetHost(text: string): TargetHost | null {
  if (typeof text !== 'string' || text === '') return null;
  if (text.startsWith('[')) {
    if (!text.endsWith(']')) return null;
    // The strict parser, as for rules: ipaddr.js reads [::1.2.3.4] as ::ffff:1.2.3.4 and an
    // embedded 010.1.1.1 as 10.1.1.1. It refuses zone ids too, which name an interface of the
    // gateway's own machine: never a destination. In brackets it reads IPv6 only (16 octets).
    const bytes = parseAddress(text);
    return bytes === null ? null : { kind: 'ip', family: 6, bytes };
  }
  if (/[^A-Za-z0-9.\-_\u0080-\uffff]/.test(text)) return null;
  const name = normaliseName(text);
  if (name !== null) return { kind: 'name', name };
  // Not a name: the only other thing it may be is an IPv4 address, in any form a WHATWG URL
  // parser accepts (decimal, octal, hex, fewer than four parts).
  let hostname: string;
  try {
    hostname = new URL(`http://${text}/`).hostname;
  } catch {
    return null;
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(hostname)) return null;
  return { kind: 'ip', family: 4, bytes: ipaddr.IPv4.parse(hostname).toByteArray() };
}
