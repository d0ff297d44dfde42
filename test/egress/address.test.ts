import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { classifyAddress, isPublicAddress } from '../../src/egress/address.ts';
import { ADDRESS_CLASSES } from '../../src/egress/address-ranges.ts';

const octet = fc.integer({ min: 0, max: 255 });
const ipv4Octets = fc.tuple(octet, octet, octet, octet);
const ipv4Text = ipv4Octets.map((octets) => octets.join('.'));
const hex = (value: number) => value.toString(16);

describe('public addresses', () => {
  it.each(['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '2001:4860:4860::8888', '[2606:4700:4700::1111]'])(
    '%s is public',
    (address) => {
      expect(classifyAddress(address)).toMatchObject({ class: 'public', public: true });
      expect(isPublicAddress(address)).toBe(true);
    },
  );

  it('a public verdict names no range', () => {
    expect(classifyAddress('8.8.8.8')).toEqual({ address: '8.8.8.8', class: 'public', public: true });
  });
});

describe('cloud metadata addresses', () => {
  it.each([
    ['169.254.169.254', '169.254.169.254/32'],
    ['169.254.169.253', '169.254.169.253/32'],
    ['169.254.170.2', '169.254.170.2/32'],
    ['169.254.170.23', '169.254.170.23/32'],
    ['168.63.129.16', '168.63.129.16/32'],
    ['100.100.100.200', '100.100.100.200/32'],
    ['fd00:ec2::254', 'fd00:ec2::254/128'],
    ['fd00:ec2::253', 'fd00:ec2::253/128'],
    ['fd00:ec2::23', 'fd00:ec2::23/128'],
  ])('%s is refused as metadata, ahead of its broader range', (address, range) => {
    expect(classifyAddress(address)).toMatchObject({ class: 'metadata', public: false, range });
  });

  it('the Azure WireServer is refused although its address is public', () => {
    expect(classifyAddress('168.63.129.0').public).toBe(true);
    expect(isPublicAddress('168.63.129.16')).toBe(false);
  });

  it.each([
    '::ffff:169.254.169.254',
    '::ffff:a9fe:a9fe',
    '::169.254.169.254',
    '64:ff9b::169.254.169.254',
    '64:ff9b:1::a9fe:a9fe',
    '2002:a9fe:a9fe::1',
    '2001:0:4136:e378:8000:63bf:5601:5601',
    '::ffff:168.63.129.16',
  ])('%s is metadata once unwrapped', (address) => {
    expect(classifyAddress(address)).toMatchObject({ class: 'metadata', public: false });
  });
});

describe('IPv4-mapped addresses', () => {
  it('take the verdict of the IPv4 they embed, public included', () => {
    expect(classifyAddress('::ffff:8.8.8.8')).toEqual({
      address: '::ffff:8.8.8.8',
      class: 'public',
      public: true,
      range: '::ffff:0:0/96',
      rfc: 'RFC 4291',
      embedded: { address: '8.8.8.8', class: 'public', public: true },
    });
  });

  it.each([
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['0:0:0:0:0:ffff:a00:1', 'private'],
    ['::FFFF:A00:1', 'private'],
    ['[::ffff:192.168.1.1]', 'private'],
    ['::ffff:100.64.0.1', 'cgnat'],
    ['::ffff:0.0.0.0', 'unspecified'],
    ['::ffff:224.0.0.1', 'multicast'],
  ])('%s is %s, like the IPv4 it embeds', (address, expected) => {
    const verdict = classifyAddress(address);
    expect(verdict).toMatchObject({ class: expected, public: false, range: '::ffff:0:0/96' });
    expect(verdict.embedded?.class).toBe(expected);
  });

  it('are written in mixed notation', () => {
    expect(classifyAddress('::ffff:7f00:1').address).toBe('::ffff:127.0.0.1');
    expect(classifyAddress('0:0:0:0:0:ffff:808:808').embedded?.address).toBe('8.8.8.8');
  });

  it('does not treat the SIIT form ::ffff:0:a.b.c.d as mapped', () => {
    expect(classifyAddress('::ffff:0:8.8.8.8')).toMatchObject({ class: 'reserved', range: '::/3' });
  });

  it('classifies alike for every IPv4 address (property)', () => {
    fc.assert(
      fc.property(ipv4Text, (address) => {
        const plain = classifyAddress(address);
        const mapped = classifyAddress(`::ffff:${address}`);
        expect(mapped.public).toBe(plain.public);
        expect(mapped.class).toBe(plain.class);
        expect(mapped.embedded).toEqual(plain);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('IPv4-compatible addresses', () => {
  it('are refused even when the embedded IPv4 is public', () => {
    expect(classifyAddress('::8.8.8.8')).toMatchObject({
      address: '::808:808',
      class: 'ipv4_embedded',
      public: false,
      range: '::/96',
      embedded: { address: '8.8.8.8', class: 'public', public: true },
    });
  });

  it('are not read as IPv4-mapped (unlike ipaddr.js, which rewrites ::a.b.c.d)', () => {
    expect(classifyAddress('::1.2.3.4').range).toBe('::/96');
    expect(classifyAddress('::1.2.3.4').address).toBe('::102:304');
  });

  it.each([
    ['::127.0.0.1', 'loopback'],
    ['::10.0.0.1', 'private'],
    ['::a9fe:a9fe', 'metadata'],
  ])('%s names the refused IPv4 it embeds: %s', (address, expected) => {
    expect(classifyAddress(address)).toMatchObject({ class: expected, public: false, range: '::/96' });
  });

  it('leave :: and ::1 to their own rows', () => {
    expect(classifyAddress('::0.0.0.0')).toMatchObject({ class: 'unspecified', range: '::/128' });
    expect(classifyAddress('::0.0.0.1')).toMatchObject({ class: 'loopback', range: '::1/128' });
  });
});

describe('NAT64 addresses', () => {
  it.each([
    ['64:ff9b::8.8.8.8', '64:ff9b::/96', 'RFC 6052'],
    ['64:ff9b:1::8.8.8.8', '64:ff9b:1::/48', 'RFC 8215'],
    ['64:ff9b:1:abcd::808:808', '64:ff9b:1::/48', 'RFC 8215'],
  ])('%s is refused although the IPv4 it embeds is public', (address, range, rfc) => {
    expect(classifyAddress(address)).toMatchObject({
      class: 'translation',
      public: false,
      range,
      rfc,
      embedded: { address: '8.8.8.8', public: true },
    });
  });

  it.each([
    ['64:ff9b::10.0.0.1', 'private'],
    ['64:ff9b::127.0.0.1', 'loopback'],
    ['64:ff9b::100.64.0.1', 'cgnat'],
    ['64:ff9b:1::192.168.0.1', 'private'],
    ['64:ff9b:1::7f00:1', 'loopback'],
  ])('%s names the refused IPv4 it embeds: %s', (address, expected) => {
    expect(classifyAddress(address)).toMatchObject({ class: expected, public: false });
  });

  it('is never public whatever IPv4 it embeds (property)', () => {
    fc.assert(
      fc.property(ipv4Text, (address) => {
        expect(classifyAddress(`64:ff9b::${address}`).public).toBe(false);
        expect(classifyAddress(`64:ff9b:1::${address}`).public).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('6to4 addresses', () => {
  it('are refused although the IPv4 they embed is public', () => {
    expect(classifyAddress('2002:808:808::1')).toMatchObject({
      class: 'translation',
      public: false,
      range: '2002::/16',
      rfc: 'RFC 3056',
      embedded: { address: '8.8.8.8', public: true },
    });
  });

  it.each([
    ['2002:a00:1::', 'private'],
    ['2002:c0a8:101:1::1', 'private'],
    ['2002:7f00:1::1', 'loopback'],
    ['2002:a9fe:a9fe::', 'metadata'],
    ['2002:6440:1::', 'cgnat'],
  ])('%s names the refused IPv4 in bits 16-47: %s', (address, expected) => {
    expect(classifyAddress(address)).toMatchObject({ class: expected, public: false });
  });

  it('are never public whatever IPv4 they embed (property)', () => {
    fc.assert(
      fc.property(ipv4Octets, fc.integer({ min: 0, max: 0xffff }), ([a, b, c, d], subnet) => {
        const address = `2002:${hex((a << 8) | b)}:${hex((c << 8) | d)}:${hex(subnet)}::1`;
        expect(classifyAddress(address).public).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('Teredo addresses', () => {
  // RFC 4380 §4: 2001:0:SERVER:FLAGS:~PORT:~CLIENT. The example server is 65.54.227.120.
  const teredo = (server: string, client: string) => {
    const obfuscated = client.split('.').map((part) => Number(part) ^ 0xff);
    const word = (high: number, low: number) => hex((high << 8) | low);
    const [s1, s2, s3, s4] = server.split('.').map(Number) as [number, number, number, number];
    const [c1, c2, c3, c4] = obfuscated as [number, number, number, number];
    return `2001:0:${word(s1, s2)}:${word(s3, s4)}:8000:63bf:${word(c1, c2)}:${word(c3, c4)}`;
  };

  it('unwrap the obfuscated client address (RFC 4380 example: 192.0.2.45)', () => {
    expect(classifyAddress('2001:0:4136:e378:8000:63bf:3fff:fdd2')).toMatchObject({
      class: 'documentation',
      public: false,
      range: '2001::/32',
      embedded: { address: '192.0.2.45', class: 'documentation' },
    });
  });

  it('are refused although the client IPv4 is public', () => {
    expect(classifyAddress(teredo('65.54.227.120', '8.8.8.8'))).toMatchObject({
      class: 'translation',
      public: false,
      rfc: 'RFC 4380',
      embedded: { address: '8.8.8.8', public: true },
    });
  });

  it.each([
    ['10.0.0.1', 'private'],
    ['127.0.0.1', 'loopback'],
    ['169.254.169.254', 'metadata'],
  ])('name a refused client %s: %s', (client, expected) => {
    expect(classifyAddress(teredo('65.54.227.120', client))).toMatchObject({
      class: expected,
      embedded: { address: client },
    });
  });

  it('name a refused server when the client is public', () => {
    expect(classifyAddress(teredo('10.0.0.1', '8.8.8.8'))).toMatchObject({
      class: 'private',
      public: false,
      embedded: { address: '10.0.0.1', class: 'private' },
    });
  });

  it('are never public whatever they embed (property)', () => {
    fc.assert(
      fc.property(ipv4Text, ipv4Text, (server, client) => {
        expect(classifyAddress(teredo(server, client)).public).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('parsing', () => {
  it.each([
    ['0x7f.0.0.1', 'hex octet'],
    ['0x7f000001', 'single hex number'],
    ['2130706433', 'single decimal number'],
    ['0177.0.0.1', 'octal octet'],
    ['010.0.0.1', 'leading zero'],
    ['127.1', 'short form'],
    ['127.0.1', 'three parts'],
    ['1.2.3.4.5', 'five parts'],
    ['256.0.0.1', 'octet above 255'],
    ['1.2.3.', 'empty octet'],
    [' 1.2.3.4', 'leading space'],
    ['1.2.3.4 ', 'trailing space'],
    ['+1.2.3.4', 'sign'],
    ['1.2.3.４', 'non-ASCII digit'],
    ['[1.2.3.4]', 'IPv4 in brackets'],
    ['fe80::1%eth0', 'zone id'],
    ['[fe80::1%25eth0]', 'zone id in brackets'],
    ['1::2::3', 'two ::'],
    [':::', 'three colons'],
    [':1::', 'leading single colon'],
    ['1::2:', 'trailing single colon'],
    ['1:2:3:4:5:6:7', 'seven groups'],
    ['1:2:3:4:5:6:7:8:9', 'nine groups'],
    ['::1:2:3:4:5:6:7:8', ':: standing for no group'],
    ['12345::', 'group of five digits'],
    ['g::', 'non-hex digit'],
    ['::ffff:1.2.3', 'short embedded quad'],
    ['::ffff:01.2.3.4', 'leading zero in embedded quad'],
    ['::ffff:0x7f.0.0.1', 'hex in embedded quad'],
    ['1.2.3.4::', 'quad before ::'],
    ['::1.2.3.4:5', 'quad not last'],
    ['1:2:3:4:5:6:7:1.2.3.4', 'quad as ninth and tenth group'],
    ['[::1', 'unclosed bracket'],
    ['::1]', 'stray bracket'],
    ['[[::1]]', 'double brackets'],
    ['', 'empty'],
    ['localhost', 'a name'],
    ['::1/128', 'a CIDR'],
  ])('%s is invalid (%s)', (address) => {
    expect(classifyAddress(address)).toEqual({ address, class: 'invalid', public: false });
  });

  it.each([
    ['2001:4860:4860:0:0:0:0:8888', '2001:4860:4860::8888'],
    ['2001:4860:4860:0000:0000:0000:0000:8888', '2001:4860:4860::8888'],
    ['2001:4860:4860::8888', '2001:4860:4860::8888'],
    ['2606:4700:4700:0:0:0:0:1111', '2606:4700:4700::1111'],
    ['2606:4700:4700::0:1111', '2606:4700:4700::1111'],
    ['2606:4700:4700::1111', '2606:4700:4700::1111'],
    ['2606:4700:4700::1111'.toUpperCase(), '2606:4700:4700::1111'],
    ['[2606:4700:4700::1111]', '2606:4700:4700::1111'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8::0:1', '2001:db8::1'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
    ['1::1.2.3.4', '1::102:304'],
    ['0:0:0:0:0:0:0:1', '::1'],
  ])('%s is read and written as %s', (text, canonical) => {
    expect(classifyAddress(text).address).toBe(canonical);
  });

  it.each([
    [[8, 8, 8, 8], '8.8.8.8', 'public'],
    [[127, 0, 0, 1], '127.0.0.1', 'loopback'],
    [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], '::1', 'loopback'],
    [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 1], '::ffff:10.0.0.1', 'private'],
  ])('octets %j are %s, %s', (bytes, address, expected) => {
    expect(classifyAddress(bytes)).toMatchObject({ address, class: expected });
  });

  it.each([
    [[]],
    [[1, 2, 3]],
    [[1, 2, 3, 4, 5]],
    [[1, 2, 3, 256]],
    [[1, 2, 3, -1]],
    [[1, 2, 3, 1.5]],
    [[1, 2, 3, Number.NaN]],
    [Array.from({ length: 15 }, () => 0)],
  ])('octets %j are invalid', (bytes) => {
    expect(classifyAddress(bytes)).toEqual({ address: '', class: 'invalid', public: false });
  });

  it('never throws on values that are not addresses at all', () => {
    for (const value of [
      null,
      undefined,
      42,
      {},
      { length: 4 },
      ['1', '2', '3', '4'],
      [Symbol('x'), 0, 0, 0],
    ]) {
      expect(classifyAddress(value as unknown as string).class).toBe('invalid');
    }
  });

  it('never throws on arbitrary strings (property)', () => {
    const alphabet = fc.constantFrom(...'0123456789abcdefABCDEFx:.[]%/ '.split(''));
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 60 }), fc.string({ unit: alphabet, maxLength: 50 })),
        (text) => {
          const verdict = classifyAddress(text);
          expect(ADDRESS_CLASSES).toContain(verdict.class);
          expect(verdict.public).toBe(verdict.class === 'public');
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('accepts exactly the IPv6 texts ipaddr.js accepts, over hex digits and colons (property)', () => {
    // Groups joined by colons: empty groups make `::`, `:::` and stray colons; counts run 1 to 11.
    const group = fc.constantFrom('', '', '0', '1', 'f', 'ff', '1f0', '0000', 'ffff', '10000', 'g');
    const text = fc.array(group, { minLength: 1, maxLength: 11 }).map((groups) => groups.join(':'));
    fc.assert(
      fc.property(text, (text) => {
        const ours = classifyAddress(text).class !== 'invalid';
        expect(ours, text).toBe(ipaddr.IPv6.isValid(text));
      }),
      { numRuns: 5000 },
    );
  });

  it('reads back its own canonical text as the same address (property)', () => {
    fc.assert(
      fc.property(fc.array(octet, { minLength: 16, maxLength: 16 }), (bytes) => {
        const verdict = classifyAddress(bytes);
        const again = classifyAddress(verdict.address);
        expect(again).toEqual(verdict);
        expect(ipaddr.parse(verdict.address).toByteArray()).toEqual(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it('reads the full, zero-padded, upper-case form of any address (property)', () => {
    fc.assert(
      fc.property(fc.array(octet, { minLength: 16, maxLength: 16 }), fc.boolean(), (bytes, upper) => {
        const groups = Array.from({ length: 8 }, (_, index) =>
          hex(((bytes[2 * index] ?? 0) << 8) | (bytes[2 * index + 1] ?? 0)).padStart(4, '0'),
        );
        const text = groups.join(':');
        expect(classifyAddress(upper ? text.toUpperCase() : text)).toEqual(classifyAddress(bytes));
      }),
      { numRuns: 1000 },
    );
  });

  it('never calls anything outside 2000::/3 public, IPv4-mapped aside (property)', () => {
    fc.assert(
      fc.property(fc.array(octet, { minLength: 16, maxLength: 16 }), (bytes) => {
        const first = bytes[0] ?? 0;
        fc.pre(first < 0x20 || first >= 0x40);
        fc.pre(!classifyAddress(bytes).address.startsWith('::ffff:'));
        expect(classifyAddress(bytes).public).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });
});
