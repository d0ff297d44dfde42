// Host patterns: parsing a rule's host, normalising a request's host, and the set algebra
// (match, contain, intersect) over names, wildcards and IP ranges.
//
// Names and IPs never meet: a name pattern never matches an IP literal and an IP range never
// matches a name, because a name's addresses are only known after resolution (and are checked
// separately by address classification, not by the grant).
import { domainToASCII } from 'node:url';
import ipaddr from 'ipaddr.js';
import { formatAddress, parseAddress } from './address.ts';
import type { HostPattern } from './rule.ts';

export type HostName = { readonly kind: 'name'; readonly name: string };
export type HostAddress = { readonly kind: 'ip'; readonly family: 4 | 6; readonly bytes: readonly number[] };
/** A request's host after normalisation: one name or one address. */
export type TargetHost = HostName | HostAddress;

export type HostParse = { ok: true; host: HostPattern } | { ok: false; offset: number; message: string };

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const NUMERIC_LABEL = /^(?:0x[0-9a-f]*|[0-9]+)$/i;

/**
 * Normalises a DNS name: one trailing dot removed, IDNA to A-labels, lower case, every label
 * letters/digits/hyphen/underscore. Returns null when the text is not a name.
 */
export function normaliseName(text: string): string | null {
  const trimmed = text.endsWith('.') ? text.slice(0, -1) : text;
  if (trimmed === '' || /[\s/\\@:?#[\]%*]/.test(trimmed)) return null;
  const ascii = domainToASCII(trimmed);
  if (ascii === '' || ascii.length > 253) return null;
  const labels = ascii.split('.');
  if (!labels.every((label) => LABEL.test(label))) return null;
  // A name whose last label is numeric is an IPv4 address in some URL parser's eyes
  // (WHATWG reads `0x7f.1` as 127.0.0.1): it is not a name.
  if (NUMERIC_LABEL.test(labels.at(-1) ?? '')) return null;
  return ascii;
}

/** Parses the host part of a rule (between `scheme://` and the port or path). */
export function parseHostPattern(text: string): HostParse {
  if (text === '')
    return { ok: false, offset: 0, message: 'the host is missing; write e.g. https://api.example.com/' };
  if (text.startsWith('[')) return parseIpv6Range(text);
  if (/^[0-9.]+(?:\/[0-9]+)?$/.test(text) || /^0x/i.test(text)) return parseIpv4Range(text);
  let depth: 'one' | 'many' | null = null;
  let base = text;
  if (text.startsWith('**.')) {
    depth = 'many';
    base = text.slice(3);
  } else if (text.startsWith('*.')) {
    depth = 'one';
    base = text.slice(2);
  }
  const starAt = base.indexOf('*');
  if (starAt >= 0) {
    const offset = text.length - base.length + starAt;
    return {
      ok: false,
      offset,
      message: `a wildcard must be the whole first label: write *.${stripStars(base)} (one label) or **.${stripStars(base)} (any depth)`,
    };
  }
  const name = normaliseName(base);
  if (name === null) {
    return {
      ok: false,
      offset: text.length - base.length,
      message: `'${base}' is not a valid host name; write a DNS name such as api.example.com, an IPv4 address, or an IPv6 address in brackets`,
    };
  }
  return depth === null
    ? { ok: true, host: { kind: 'name', name } }
    : { ok: true, host: { kind: 'wildcard', base: name, depth } };
}

function stripStars(base: string): string {
  const kept = base
    .split('.')
    .filter((label) => !label.includes('*'))
    .join('.');
  return kept === '' ? 'example.com' : kept;
}

function parseIpv4Range(text: string): HostParse {
  const [address = '', prefixText] = text.split('/');
  if (!ipaddr.IPv4.isValidFourPartDecimal(address) || !canonicalQuad(address)) {
    return {
      ok: false,
      offset: 0,
      message: `'${address}' is not an IPv4 address in dotted-decimal form; write four decimal numbers 0-255 without leading zeros, e.g. 10.1.2.3`,
    };
  }
  return withPrefix(4, ipaddr.IPv4.parse(address).toByteArray(), prefixText, address.length + 1, address);
}

function canonicalQuad(address: string): boolean {
  return address.split('.').every((part) => part === String(Number(part)));
}

function parseIpv6Range(text: string): HostParse {
  const close = text.indexOf(']');
  if (close < 0)
    return {
      ok: false,
      offset: 0,
      message: `the IPv6 address is not closed; write it as [${text.slice(1)}]`,
    };
  if (close !== text.length - 1) {
    return {
      ok: false,
      offset: close + 1,
      message: 'unexpected text after the IPv6 address; write [address] or [address/prefix]',
    };
  }
  const inner = text.slice(1, close);
  const [address = '', prefixText] = inner.split('/');
  if (address.includes('%')) {
    return {
      ok: false,
      offset: 1 + address.indexOf('%'),
      message: 'zone ids (%eth0) are not allowed in rules; remove it',
    };
  }
  // The strict parser, not ipaddr.js: that one reads [::1.2.3.4] as ::ffff:1.2.3.4 and an
  // embedded 010.1.1.1 as 10.1.1.1, so a rule would name another host than the one written.
  const bytes = parseAddress(`[${address}]`);
  if (bytes === null) {
    return { ok: false, offset: 1, message: `'${address}' is not a valid IPv6 address` };
  }
  return withPrefix(6, bytes, prefixText, 1 + address.length + 1, address);
}

function withPrefix(
  family: 4 | 6,
  bytes: readonly number[],
  prefixText: string | undefined,
  prefixOffset: number,
  address: string,
): HostParse {
  const bits = family === 4 ? 32 : 128;
  if (prefixText === undefined) return { ok: true, host: { kind: 'ip', family, bytes, prefix: bits } };
  if (!/^(?:0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > bits) {
    return {
      ok: false,
      offset: prefixOffset,
      message: `the prefix length must be a number from 0 to ${bits}`,
    };
  }
  const prefix = Number(prefixText);
  const network = maskBytes(bytes, prefix);
  if (network.some((byte, i) => byte !== bytes[i])) {
    const written = formatAddress(network);
    const shown = family === 4 ? `${written}/${prefix}` : `[${written}/${prefix}]`;
    return {
      ok: false,
      offset: 0,
      message: `${address}/${prefix} has host bits set; write the network address: ${shown}`,
    };
  }
  return { ok: true, host: { kind: 'ip', family, bytes: network, prefix } };
}

export function maskBytes(bytes: readonly number[], prefix: number): number[] {
  return bytes.map((byte, i) => {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    return byte & ((0xff << (8 - keep)) & 0xff);
  });
}

export function formatHostPattern(host: HostPattern): string {
  switch (host.kind) {
    case 'name':
      return host.name;
    case 'wildcard':
      return `${host.depth === 'one' ? '*' : '**'}.${host.base}`;
    case 'ip': {
      const address = formatAddress(host.bytes);
      if (host.family === 4) return host.prefix === 32 ? address : `${address}/${host.prefix}`;
      return host.prefix === 128 ? `[${address}]` : `[${address}/${host.prefix}]`;
    }
  }
}

/** Does `pattern` match the (normalised) request host? */
export function hostMatches(pattern: HostPattern, host: TargetHost): boolean {
  switch (pattern.kind) {
    case 'name':
      return host.kind === 'name' && host.name === pattern.name;
    case 'wildcard':
      return host.kind === 'name' && underBase(host.name, pattern.base, pattern.depth);
    case 'ip':
      return (
        host.kind === 'ip' &&
        host.family === pattern.family &&
        inRange(host.bytes, pattern.bytes, pattern.prefix)
      );
  }
}

/** Is `name` exactly one label (depth 'one') or one or more labels (depth 'many') below `base`? */
function underBase(name: string, base: string, depth: 'one' | 'many'): boolean {
  if (name.length <= base.length + 1 || !name.endsWith(base) || name[name.length - base.length - 1] !== '.') {
    return false;
  }
  return depth === 'many' || !name.slice(0, name.length - base.length - 1).includes('.');
}

function inRange(bytes: readonly number[], network: readonly number[], prefix: number): boolean {
  const masked = maskBytes(bytes, prefix);
  return masked.every((byte, i) => byte === network[i]);
}

/** Does every host that `inner` matches also match `outer`? */
export function hostContains(outer: HostPattern, inner: HostPattern): boolean {
  if (outer.kind === 'ip' || inner.kind === 'ip') {
    return (
      outer.kind === 'ip' &&
      inner.kind === 'ip' &&
      outer.family === inner.family &&
      outer.prefix <= inner.prefix &&
      inRange(inner.bytes, outer.bytes, outer.prefix)
    );
  }
  if (outer.kind === 'name') return inner.kind === 'name' && inner.name === outer.name;
  if (inner.kind === 'name') return underBase(inner.name, outer.base, outer.depth);
  if (outer.depth === 'one') return inner.depth === 'one' && inner.base === outer.base;
  // outer is **.b: it holds *.b, **.b, and any wildcard based strictly below b.
  return inner.base === outer.base || underBase(inner.base, outer.base, 'many');
}

/** The pattern matching exactly the hosts both match, or null when none. Exact, never widening. */
export function intersectHosts(a: HostPattern, b: HostPattern): HostPattern | null {
  if (hostContains(a, b)) return b;
  if (hostContains(b, a)) return a;
  if (a.kind === 'ip' || b.kind === 'ip') return null; // CIDRs either nest or are disjoint
  // Neither contains the other. The remaining overlaps are a name or `*.` inside the other's
  // `**.`, which containment already covered; two wildcards that do not nest are disjoint
  // (e.g. *.example.com and **.a.example.com: one label versus at least two).
  return null;
}

/**
 * The DNS name a pattern is anchored at (its name or wildcard base), or null for IP ranges.
 * Two name patterns can only overlap when one anchor is an ancestor-or-self of the other,
 * which lets rule sets be indexed by anchor.
 */
export function anchorOf(host: HostPattern): string | null {
  return host.kind === 'name' ? host.name : host.kind === 'wildcard' ? host.base : null;
}

/** `a.b.c` → [`b.c`, `c`]: the proper ancestors of a DNS name, nearest first. */
export function ancestorsOf(name: string): string[] {
  const out: string[] = [];
  for (let dot = name.indexOf('.'); dot >= 0; dot = name.indexOf('.', dot + 1)) out.push(name.slice(dot + 1));
  return out;
}
