// Address classification: is this IP address a destination the gateway may dial?
//
// Pure: no I/O, no clock, no logging, and it never throws on bad input (a bad input is the
// verdict `invalid`). This is what stands between an agent and server-side request forgery:
// the gateway resolves a name once, classifies every answer here, and dials only an address
// that came back `public` (or that an operator opened, see `isOpened` in opening.ts).
//
// The decision is a longest-prefix match over ADDRESS_RANGES (address-ranges.ts), one row per
// range, each citing its RFC. An address no row covers is public. Rows whose range embeds an
// IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are unwrapped and the
// embedded IPv4 is classified too; see `unwrap` for which forms follow the embedded verdict and
// which are refused outright. docs/addresses.md is the operator-facing account of the same table.
import ipaddr from 'ipaddr.js';
import { ADDRESS_RANGES, type AddressClass, type AddressRange, type Embedding } from './address-ranges.ts';

export interface AddressVerdict {
  /** Canonical text: dotted quad, or RFC 5952 (`::ffff:a.b.c.d` for IPv4-mapped). The input for `invalid`. */
  readonly address: string;
  readonly class: AddressClass;
  readonly public: boolean;
  /** The CIDR of the table row that decided. */
  readonly range?: string;
  readonly rfc?: string;
  /** The unwrapped IPv4's own verdict, when the address embeds one. */
  readonly embedded?: AddressVerdict;
}

/** An address as octets: 4 for IPv4, 16 for IPv6. */
export type Bytes = readonly number[];

interface CompiledRange {
  readonly row: AddressRange;
  readonly network: Bytes;
  readonly prefix: number;
}

// Longest prefix first, so the first match is the most specific row.
const COMPILED: readonly CompiledRange[] = ADDRESS_RANGES.map((row) => {
  const [network, prefix] = ipaddr.parseCIDR(row.cidr);
  return { row, network: network.toByteArray(), prefix };
}).sort((a, b) => b.prefix - a.prefix);

/**
 * Classifies an IP address. A string is a canonical dotted quad or any RFC 4291 IPv6 text form
 * (brackets allowed around IPv6); an array is 4 or 16 octets. Never throws.
 */
export function classifyAddress(address: string | readonly number[]): AddressVerdict {
  const bytes = parseAddress(address);
  if (bytes === null) {
    return { address: typeof address === 'string' ? address : '', class: 'invalid', public: false };
  }
  return classifyBytes(bytes);
}

export function isPublicAddress(address: string): boolean {
  return classifyAddress(address).public;
}

function classifyBytes(bytes: Bytes): AddressVerdict {
  const address = formatAddress(bytes);
  const hit = COMPILED.find((range) => within(bytes, range.network, range.prefix));
  if (hit === undefined) return { address, class: 'public', public: true };
  const { row } = hit;
  const verdict: AddressVerdict = { address, class: row.class, public: false, range: row.cidr, rfc: row.rfc };
  return row.embeds === undefined ? verdict : unwrap(verdict, row.embeds, bytes);
}

/**
 * Decides an address that embeds an IPv4, from the embedded IPv4's own verdict.
 *
 * IPv4-mapped is the embedded IPv4 itself (a dual-stack socket connects to a.b.c.d), so it
 * takes that verdict whole: ::ffff:8.8.8.8 is public, ::ffff:10.0.0.1 is private.
 *
 * Every other form is refused whatever it embeds: IPv4-compatible, NAT64, 6to4 and Teredo reach
 * their IPv4 through a tunnel or translator the gateway cannot see. A NAT64 or 6to4 relay inside
 * the operator's network forwards to whatever IPv4 the attacker wrote, including private space
 * behind it that no IPv4 check ever saw; the local-use NAT64 prefix places the IPv4 where its
 * operator chose; Teredo relays carry it over UDP. A public host is reachable by its plain IPv4
 * anyway. When the embedded IPv4 is refused its class is the reason, as it names the sharper
 * danger (64:ff9b::169.254.169.254 is `metadata`).
 */
function unwrap(verdict: AddressVerdict, form: Embedding, bytes: Bytes): AddressVerdict {
  const embedded = embeddedVerdict(form, bytes);
  if (form === 'mapped') return { ...verdict, class: embedded.class, public: embedded.public, embedded };
  return { ...verdict, class: embedded.public ? verdict.class : embedded.class, embedded };
}

function embeddedVerdict(form: Embedding, bytes: Bytes): AddressVerdict {
  switch (form) {
    case 'mapped':
    case 'compatible':
    case 'nat64':
    // RFC 6052 lets a local-use translator pick its prefix length inside 64:ff9b:1::/48; this reads
    // the /96 layout (the last 32 bits), the usual one. The range is refused whatever it holds.
    case 'nat64_local':
      return classifyBytes(bytes.slice(12, 16));
    case '6to4':
      // RFC 3056: 2002:AABB:CCDD::/48, the IPv4 in bits 16-47.
      return classifyBytes(bytes.slice(2, 6));
    case 'teredo': {
      // RFC 4380: server IPv4 in bits 32-63, client IPv4 (bitwise NOT) in bits 96-127. The client
      // is where the packet goes; a refused server is named when the client is public.
      const client = classifyBytes(bytes.slice(12, 16).map((octet) => octet ^ 0xff));
      const server = classifyBytes(bytes.slice(4, 8));
      return client.public && !server.public ? server : client;
    }
  }
}

/**
 * Parses an address to its octets (4 or 16), or null. Strict on purpose: ipaddr.js's own
 * parser accepts octal, hex and short IPv4 forms (0x7f.1 is 127.0.0.1 to some resolvers and
 * not to others), zone ids, and reads ::a.b.c.d as ::ffff:a.b.c.d, so strings never reach it.
 */
export function parseAddress(address: string | readonly number[]): Bytes | null {
  if (typeof address === 'string') return parseAddressText(address);
  if (!Array.isArray(address) || (address.length !== 4 && address.length !== 16)) return null;
  const octets: unknown[] = address;
  return octets.every(
    (octet) => Number.isInteger(octet) && (octet as number) >= 0 && (octet as number) <= 255,
  )
    ? (octets as number[])
    : null;
}

function parseAddressText(text: string): Bytes | null {
  // The longest IPv6 text is 45 characters (ffff:…:ffff:255.255.255.255) plus two brackets.
  if (text.length > 47) return null;
  if (text.startsWith('[') && text.endsWith(']')) {
    const inner = text.slice(1, -1);
    return inner.includes(':') ? parseIPv6(inner) : null;
  }
  return text.includes(':') ? parseIPv6(text) : parseIPv4(text);
}

const DEC_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** A canonical dotted quad: four decimal octets, no leading zeros. */
function parseIPv4(text: string): number[] | null {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((part) => DEC_OCTET.test(part))) return null;
  const octets = parts.map(Number);
  return octets.every((octet) => octet <= 255) ? octets : null;
}

/** RFC 4291 §2.2 text forms: eight groups, one `::`, a dotted quad as the last 32 bits. No zone id. */
function parseIPv6(text: string): number[] | null {
  const gap = text.indexOf('::');
  if (gap !== -1 && text.indexOf('::', gap + 1) !== -1) return null;
  const head = gap === -1 ? text : text.slice(0, gap);
  const tail = gap === -1 ? '' : text.slice(gap + 2);
  const headWords = parseGroups(head, gap === -1);
  const tailWords = parseGroups(tail, true);
  if (headWords === null || tailWords === null) return null;
  const count = headWords.length + tailWords.length;
  // `::` stands for at least one zero group; without it there must be exactly eight.
  if (gap === -1 ? count !== 8 : count > 7) return null;
  const words = [...headWords, ...new Array<number>(8 - count).fill(0), ...tailWords];
  return words.flatMap((word) => [word >> 8, word & 0xff]);
}

function parseGroups(text: string, quadAllowed: boolean): number[] | null {
  if (text === '') return [];
  const groups = text.split(':');
  const words: number[] = [];
  for (const [index, group] of groups.entries()) {
    if (quadAllowed && index === groups.length - 1 && group.includes('.')) {
      const quad = parseIPv4(group);
      if (quad === null) return null;
      words.push(((quad[0] ?? 0) << 8) | (quad[1] ?? 0), ((quad[2] ?? 0) << 8) | (quad[3] ?? 0));
    } else if (HEX_GROUP.test(group)) {
      words.push(Number.parseInt(group, 16));
    } else {
      return null;
    }
  }
  return words;
}

/** True for an IPv4-mapped address (::ffff:0:0/96): on a dual-stack socket, the IPv4 itself. */
export function isMapped(bytes: Bytes): boolean {
  return (
    bytes.length === 16 &&
    bytes.slice(0, 10).every((octet) => octet === 0) &&
    bytes[10] === 0xff &&
    bytes[11] === 0xff
  );
}

/** Canonical text: dotted quad, RFC 5952 for IPv6, mixed notation for IPv4-mapped. */
export function formatAddress(bytes: Bytes): string {
  if (bytes.length === 4) return bytes.join('.');
  // RFC 5952 §5: IPv4-mapped addresses are written in mixed notation.
  if (isMapped(bytes)) return `::ffff:${bytes.slice(12).join('.')}`;
  return (ipaddr.fromByteArray([...bytes]) as ipaddr.IPv6).toRFC5952String();
}

/** True when `bytes` lies inside `network/prefix` (same family). */
export function within(bytes: Bytes, network: Bytes, prefix: number): boolean {
  return (
    bytes.length === network.length &&
    ipaddr.fromByteArray([...bytes]).match(ipaddr.fromByteArray([...network]), prefix)
  );
}
