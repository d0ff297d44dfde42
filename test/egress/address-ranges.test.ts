import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { classifyAddress } from '../../src/egress/address.ts';
import { ADDRESS_CLASSES, ADDRESS_RANGES, type AddressClass } from '../../src/egress/address-ranges.ts';

const F4 = 'ffff:ffff:ffff:ffff';
const F5 = `ffff:${F4}`;
const F6 = `ffff:${F5}`;
const F7 = `ffff:${F6}`;

// One row per boundary: for every table row, its first and last address and the addresses just
// before and just after it, each with the class written by hand (the guard test below fails when
// a table row has a boundary missing here).
const BOUNDARIES: ReadonlyArray<readonly [string, AddressClass]> = [
  // 0.0.0.0/8 and 0.0.0.0/32
  ['0.0.0.0', 'unspecified'],
  ['0.0.0.1', 'reserved'],
  ['0.255.255.255', 'reserved'],
  ['1.0.0.0', 'public'],
  // 10.0.0.0/8
  ['9.255.255.255', 'public'],
  ['10.0.0.0', 'private'],
  ['10.255.255.255', 'private'],
  ['11.0.0.0', 'public'],
  // 100.64.0.0/10
  ['100.63.255.255', 'public'],
  ['100.64.0.0', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['100.128.0.0', 'public'],
  // 127.0.0.0/8
  ['126.255.255.255', 'public'],
  ['127.0.0.0', 'loopback'],
  ['127.255.255.255', 'loopback'],
  ['128.0.0.0', 'public'],
  // 169.254.0.0/16
  ['169.253.255.255', 'public'],
  ['169.254.0.0', 'link_local'],
  ['169.254.255.255', 'link_local'],
  ['169.255.0.0', 'public'],
  // 172.16.0.0/12
  ['172.15.255.255', 'public'],
  ['172.16.0.0', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.0', 'public'],
  // 192.0.0.0/24 and its sub-entries
  ['191.255.255.255', 'public'],
  ['192.0.0.0', 'special_purpose'],
  ['192.0.0.7', 'special_purpose'],
  ['192.0.0.8', 'special_purpose'],
  ['192.0.0.9', 'special_purpose'],
  ['192.0.0.10', 'special_purpose'],
  ['192.0.0.11', 'special_purpose'],
  ['192.0.0.169', 'special_purpose'],
  ['192.0.0.170', 'special_purpose'],
  ['192.0.0.171', 'special_purpose'],
  ['192.0.0.172', 'special_purpose'],
  ['192.0.0.255', 'special_purpose'],
  ['192.0.1.0', 'public'],
  // 192.0.2.0/24
  ['192.0.1.255', 'public'],
  ['192.0.2.0', 'documentation'],
  ['192.0.2.255', 'documentation'],
  ['192.0.3.0', 'public'],
  // 192.31.196.0/24
  ['192.31.195.255', 'public'],
  ['192.31.196.0', 'special_purpose'],
  ['192.31.196.255', 'special_purpose'],
  ['192.31.197.0', 'public'],
  // 192.52.193.0/24
  ['192.52.192.255', 'public'],
  ['192.52.193.0', 'special_purpose'],
  ['192.52.193.255', 'special_purpose'],
  ['192.52.194.0', 'public'],
  // 192.88.99.0/24 and 192.88.99.2/32
  ['192.88.98.255', 'public'],
  ['192.88.99.0', 'translation'],
  ['192.88.99.1', 'translation'],
  ['192.88.99.2', 'translation'],
  ['192.88.99.3', 'translation'],
  ['192.88.99.255', 'translation'],
  ['192.88.100.0', 'public'],
  // 192.168.0.0/16
  ['192.167.255.255', 'public'],
  ['192.168.0.0', 'private'],
  ['192.168.255.255', 'private'],
  ['192.169.0.0', 'public'],
  // 192.175.48.0/24
  ['192.175.47.255', 'public'],
  ['192.175.48.0', 'special_purpose'],
  ['192.175.48.255', 'special_purpose'],
  ['192.175.49.0', 'public'],
  // 198.18.0.0/15
  ['198.17.255.255', 'public'],
  ['198.18.0.0', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['198.20.0.0', 'public'],
  // 198.51.100.0/24
  ['198.51.99.255', 'public'],
  ['198.51.100.0', 'documentation'],
  ['198.51.100.255', 'documentation'],
  ['198.51.101.0', 'public'],
  // 203.0.113.0/24
  ['203.0.112.255', 'public'],
  ['203.0.113.0', 'documentation'],
  ['203.0.113.255', 'documentation'],
  ['203.0.114.0', 'public'],
  // 224.0.0.0/4, 240.0.0.0/4, 255.255.255.255/32
  ['223.255.255.255', 'public'],
  ['224.0.0.0', 'multicast'],
  ['239.255.255.255', 'multicast'],
  ['240.0.0.0', 'reserved'],
  ['255.255.255.254', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  // IPv4 metadata
  ['169.254.169.252', 'link_local'],
  ['169.254.169.253', 'metadata'],
  ['169.254.169.254', 'metadata'],
  ['169.254.169.255', 'link_local'],
  ['169.254.170.1', 'link_local'],
  ['169.254.170.2', 'metadata'],
  ['169.254.170.3', 'link_local'],
  ['169.254.170.22', 'link_local'],
  ['169.254.170.23', 'metadata'],
  ['169.254.170.24', 'link_local'],
  ['168.63.129.15', 'public'],
  ['168.63.129.16', 'metadata'],
  ['168.63.129.17', 'public'],
  ['100.100.100.199', 'cgnat'],
  ['100.100.100.200', 'metadata'],
  ['100.100.100.201', 'cgnat'],
  // Outside 2000::/3: ::/3, 4000::/2, 8000::/1
  [`1fff:${F7}`, 'reserved'],
  ['2000::', 'public'],
  [`3fff:${F7}`, 'public'],
  ['4000::', 'reserved'],
  [`7fff:${F7}`, 'reserved'],
  ['8000::', 'reserved'],
  [`ffff:${F7}`, 'multicast'],
  // ::/128, ::1/128, ::/96 (IPv4-compatible: the embedded IPv4 names the class)
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['::2', 'reserved'],
  ['::ffff:ffff', 'broadcast'],
  ['::1:0:0', 'reserved'],
  // ::ffff:0:0/96 (IPv4-mapped)
  ['::fffe:ffff:ffff', 'reserved'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['::ffff:255.255.255.255', 'broadcast'],
  ['::1:0:0:0', 'reserved'],
  // 64:ff9b::/96 and 64:ff9b:1::/48 (NAT64)
  [`64:ff9a:${F6}`, 'reserved'],
  ['64:ff9b::', 'unspecified'],
  ['64:ff9b::ffff:ffff', 'broadcast'],
  ['64:ff9b::1:0:0', 'reserved'],
  [`64:ff9b:0:${F5}`, 'reserved'],
  ['64:ff9b:1::', 'unspecified'],
  [`64:ff9b:1:${F5}`, 'broadcast'],
  ['64:ff9b:2::', 'reserved'],
  // 100::/64 and 100:0:0:1::/64
  [`ff:${F7}`, 'reserved'],
  ['100::', 'special_purpose'],
  [`100::${F4}`, 'special_purpose'],
  ['100:0:0:1::', 'special_purpose'],
  [`100::1:${F4}`, 'special_purpose'],
  ['100:0:0:2::', 'reserved'],
  // 2001::/23 and its sub-entries (2001::/32 is Teredo: the embedded client names the class)
  [`2000:${F7}`, 'public'],
  ['2001::', 'broadcast'],
  [`2001:0:${F6}`, 'unspecified'],
  ['2001:1::', 'special_purpose'],
  ['2001:1::1', 'special_purpose'],
  ['2001:1::2', 'special_purpose'],
  ['2001:1::3', 'special_purpose'],
  ['2001:1::4', 'special_purpose'],
  [`2001:1:${F6}`, 'special_purpose'],
  ['2001:2::', 'benchmarking'],
  [`2001:2:0:${F5}`, 'benchmarking'],
  ['2001:2:1::', 'special_purpose'],
  [`2001:2:${F6}`, 'special_purpose'],
  ['2001:3::', 'special_purpose'],
  [`2001:3:${F6}`, 'special_purpose'],
  ['2001:4::', 'special_purpose'],
  [`2001:4:111:${F5}`, 'special_purpose'],
  ['2001:4:112::', 'special_purpose'],
  [`2001:4:112:${F5}`, 'special_purpose'],
  ['2001:4:113::', 'special_purpose'],
  [`2001:f:${F6}`, 'special_purpose'],
  ['2001:10::', 'special_purpose'],
  [`2001:1f:${F6}`, 'special_purpose'],
  ['2001:20::', 'special_purpose'],
  [`2001:2f:${F6}`, 'special_purpose'],
  ['2001:30::', 'special_purpose'],
  [`2001:3f:${F6}`, 'special_purpose'],
  ['2001:40::', 'special_purpose'],
  [`2001:1ff:${F6}`, 'special_purpose'],
  ['2001:200::', 'public'],
  // 2001:db8::/32
  [`2001:db7:${F6}`, 'public'],
  ['2001:db8::', 'documentation'],
  [`2001:db8:${F6}`, 'documentation'],
  ['2001:db9::', 'public'],
  // 2002::/16 (6to4: the embedded IPv4 names the class)
  [`2001:${F7}`, 'public'],
  ['2002::', 'unspecified'],
  [`2002:${F7}`, 'broadcast'],
  ['2003::', 'public'],
  // 2620:4f:8000::/48
  [`2620:4f:7fff:${F5}`, 'public'],
  ['2620:4f:8000::', 'special_purpose'],
  [`2620:4f:8000:${F5}`, 'special_purpose'],
  ['2620:4f:8001::', 'public'],
  // 3fff::/20
  [`3ffe:${F7}`, 'public'],
  ['3fff::', 'documentation'],
  [`3fff:fff:${F6}`, 'documentation'],
  ['3fff:1000::', 'public'],
  // 5f00::/16
  [`5eff:${F7}`, 'reserved'],
  ['5f00::', 'special_purpose'],
  [`5f00:${F7}`, 'special_purpose'],
  ['5f01::', 'reserved'],
  // fc00::/7, fe80::/10, fec0::/10, ff00::/8
  [`fbff:${F7}`, 'reserved'],
  ['fc00::', 'unique_local'],
  [`fdff:${F7}`, 'unique_local'],
  ['fe00::', 'reserved'],
  [`fe7f:${F7}`, 'reserved'],
  ['fe80::', 'link_local'],
  [`febf:${F7}`, 'link_local'],
  ['fec0::', 'site_local'],
  [`feff:${F7}`, 'site_local'],
  ['ff00::', 'multicast'],
  // IPv6 metadata
  ['fd00:ec2::22', 'unique_local'],
  ['fd00:ec2::23', 'metadata'],
  ['fd00:ec2::24', 'unique_local'],
  ['fd00:ec2::252', 'unique_local'],
  ['fd00:ec2::253', 'metadata'],
  ['fd00:ec2::254', 'metadata'],
  ['fd00:ec2::255', 'unique_local'],
];

// The IANA special-purpose registries (IPv4 and IPv6), entry by entry.
const IANA_REGISTRY = [
  '0.0.0.0/8',
  '0.0.0.0/32',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.0.0/29',
  '192.0.0.8/32',
  '192.0.0.9/32',
  '192.0.0.10/32',
  '192.0.0.170/32',
  '192.0.0.171/32',
  '192.0.2.0/24',
  '192.31.196.0/24',
  '192.52.193.0/24',
  '192.88.99.0/24',
  '192.88.99.2/32',
  '192.168.0.0/16',
  '192.175.48.0/24',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '240.0.0.0/4',
  '255.255.255.255/32',
  '::1/128',
  '::/128',
  '::ffff:0:0/96',
  '64:ff9b::/96',
  '64:ff9b:1::/48',
  '100::/64',
  '100:0:0:1::/64',
  '2001::/23',
  '2001::/32',
  '2001:1::1/128',
  '2001:1::2/128',
  '2001:1::3/128',
  '2001:2::/48',
  '2001:3::/32',
  '2001:4:112::/48',
  '2001:10::/28',
  '2001:20::/28',
  '2001:30::/28',
  '2001:db8::/32',
  '2002::/16',
  '2620:4f:8000::/48',
  '3fff::/20',
  '5f00::/16',
  'fc00::/7',
  'fe80::/10',
];

/** A CIDR's first and last address as integers, computed apart from the code under test. */
function span(cidr: string): { first: bigint; last: bigint; max: bigint; text: (value: bigint) => string } {
  const [network, prefix] = ipaddr.parseCIDR(cidr);
  const length = network.toByteArray().length;
  const width = BigInt(length * 8);
  const first = network.toByteArray().reduce((value, octet) => (value << 8n) | BigInt(octet), 0n);
  const text = (value: bigint) =>
    classifyAddress(
      Array.from({ length }, (_, index) => Number((value >> (8n * BigInt(length - 1 - index))) & 0xffn)),
    ).address;
  return { first, last: first + (1n << (width - BigInt(prefix))) - 1n, max: (1n << width) - 1n, text };
}

/** The first and last address of a CIDR and the addresses just outside it, canonical. */
function boundariesOf(cidr: string): string[] {
  const { first, last, max, text } = span(cidr);
  return [first - 1n, first, last, last + 1n].filter((value) => value >= 0n && value <= max).map(text);
}

describe('the range table', () => {
  it('has a row for every entry of the IANA special-purpose registries', () => {
    const cidrs = ADDRESS_RANGES.map((row) => row.cidr);
    expect(IANA_REGISTRY.filter((cidr) => !cidrs.includes(cidr))).toEqual([]);
  });

  it('also refuses multicast, site-local, IPv4-compatible and all space outside 2000::/3', () => {
    const cidrs = ADDRESS_RANGES.map((row) => row.cidr);
    for (const cidr of ['224.0.0.0/4', 'ff00::/8', 'fec0::/10', '::/96', '::/3', '4000::/2', '8000::/1']) {
      expect(cidrs).toContain(cidr);
    }
  });

  it('lists no range twice', () => {
    const cidrs = ADDRESS_RANGES.map((row) => row.cidr);
    expect(new Set(cidrs).size).toBe(cidrs.length);
  });

  it('writes every range as a network address with its host bits clear', () => {
    for (const row of ADDRESS_RANGES) {
      const [network, prefix] = ipaddr.parseCIDR(row.cidr);
      const kind = network.kind() === 'ipv4' ? ipaddr.IPv4 : ipaddr.IPv6;
      expect(kind.networkAddressFromCIDR(row.cidr).toString(), row.cidr).toBe(network.toString());
      expect(prefix).toBeGreaterThanOrEqual(1);
    }
  });

  it('cites an RFC on every row, and a vendor source on every metadata row', () => {
    for (const row of ADDRESS_RANGES) {
      if (row.class === 'metadata') expect(row.rfc, row.cidr).toMatch(/; \S/);
      else expect(row.rfc, row.cidr).toMatch(/^RFC \d{3,4}$/);
      expect(row.note.length, row.cidr).toBeGreaterThan(10);
    }
  });

  it('names only single addresses as metadata', () => {
    for (const row of ADDRESS_RANGES.filter((one) => one.class === 'metadata')) {
      expect(row.cidr).toMatch(/\/(32|128)$/);
    }
  });

  it.each(ADDRESS_RANGES.map((row) => [row.cidr, row.rfc, row]))(
    'refuses %s (%s) from its first to its last address',
    (cidr, _rfc, row) => {
      const { first: low, last: high, text } = span(cidr);
      const [first, last] = [text(low), text(high)];
      for (const address of [first, last]) {
        const verdict = classifyAddress(address);
        expect(verdict.public, address).toBe(false);
        expect(verdict.range, address).toBeDefined();
      }
      // The row decides its own network address unless a more specific row or an embedding does.
      const verdict = classifyAddress(first);
      const narrower = ADDRESS_RANGES.some(
        (other) => other !== row && other.cidr.split('/')[0] === cidr.split('/')[0],
      );
      if (!narrower && row.embeds === undefined) {
        expect(verdict).toMatchObject({ class: row.class, range: row.cidr, rfc: row.rfc });
      }
    },
  );

  it('has every row’s first, last and neighbouring addresses in the boundary table', () => {
    const written = new Set(BOUNDARIES.map(([address]) => address));
    const missing = ADDRESS_RANGES.flatMap((row) =>
      boundariesOf(row.cidr)
        .filter((address) => !written.has(address))
        .map((address) => `${row.cidr}: ${address}`),
    );
    expect(missing).toEqual([]);
  });

  it('is listed row by row, with class and RFC, in docs/addresses.md', () => {
    const docs = readFileSync(new URL('../../docs/addresses.md', import.meta.url), 'utf8');
    const rows = new Set(
      docs
        .split('\n')
        .filter((line) => line.startsWith('| `'))
        .map((line) =>
          line
            .split('|')
            .slice(1, 4)
            .map((cell) => cell.trim())
            .join(' | '),
        ),
    );
    const missing = ADDRESS_RANGES.filter(
      (row) => !rows.has(`\`${row.cidr}\` | \`${row.class}\` | ${row.rfc}`),
    );
    expect(missing.map((row) => row.cidr)).toEqual([]);
  });

  it('has an example of every address class', () => {
    const seen = new Set<AddressClass>(BOUNDARIES.map(([, one]) => one));
    seen.add('ipv4_embedded');
    seen.add('invalid');
    expect(ADDRESS_CLASSES.filter((one) => !seen.has(one))).toEqual([]);
    expect(classifyAddress('::8.8.8.8').class).toBe('ipv4_embedded');
    expect(classifyAddress('localhost').class).toBe('invalid');
  });
});

describe('range boundaries', () => {
  it.each(BOUNDARIES)('%s is %s', (address, expected) => {
    const verdict = classifyAddress(address);
    expect(verdict.class).toBe(expected);
    expect(verdict.public).toBe(expected === 'public');
    expect(verdict.address).toBe(address);
  });
});
