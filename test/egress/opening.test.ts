import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classifyAddress } from '../../src/egress/address.ts';
import { isOpened, type Opening, parseOpening } from '../../src/egress/opening.ts';

const octet = fc.integer({ min: 0, max: 255 });
const ipv4Octets = fc.tuple(octet, octet, octet, octet);

describe('operator openings', () => {
  const opened = (...texts: string[]): Opening[] =>
    texts.map((text) => {
      const parsed = parseOpening(text);
      if (!parsed.ok) throw new Error(parsed.error.message);
      return parsed.opening;
    });

  it.each([
    ['10.0.0.0/8', '10.0.0.0/8'],
    [' 10.0.0.0/8 ', '10.0.0.0/8'],
    ['10.1.2.3', '10.1.2.3/32'],
    ['10.1.2.3:8443', '10.1.2.3/32:8443'],
    ['10.0.0.0/8:443', '10.0.0.0/8:443'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['fd00::/64', '[fd00::/64]'],
    ['FD00:0:0:0::/64', '[fd00::/64]'],
    ['[fd00::/64]', '[fd00::/64]'],
    ['[fd00::/64]:443', '[fd00::/64]:443'],
    ['[fd00::1]:443', '[fd00::1/128]:443'],
    ['fd00::1:443', '[fd00::1:443/128]'],
  ])('%s is read as %s', (text, canonical) => {
    const parsed = parseOpening(text);
    expect(parsed.ok && parsed.opening.text).toBe(canonical);
    if (parsed.ok) expect(parseOpening(parsed.opening.text)).toEqual(parsed);
  });

  it.each([
    ['', 'invalid_address'],
    ['example.com', 'invalid_address'],
    ['010.0.0.0/8', 'invalid_address'],
    ['fe80::1%eth0', 'invalid_address'],
    ['::ffff:10.0.0.0/104', 'invalid_address'],
    ['10.0.0.0/08', 'invalid_prefix'],
    ['10.0.0.0/33', 'invalid_prefix'],
    ['10.0.0.0/', 'invalid_prefix'],
    ['[fd00::/129]', 'invalid_prefix'],
    ['10.1.2.3/8', 'host_bits_set'],
    ['[fd00::1/64]:443', 'host_bits_set'],
    ['10.0.0.0/8:', 'invalid_port'],
    ['10.0.0.0/8:0', 'invalid_port'],
    ['10.0.0.0/8:65536', 'invalid_port'],
    ['10.0.0.0/8:08443', 'invalid_port'],
    ['[fd00::/64]:', 'invalid_port'],
    ['[fd00::/64', 'invalid_syntax'],
    ['[fd00::/64]443', 'invalid_syntax'],
    ['[10.0.0.0/8]', 'invalid_syntax'],
  ])('%s is refused: %s', (text, code) => {
    const parsed = parseOpening(text);
    expect(parsed.ok ? null : parsed.error.code).toBe(code);
  });

  it('says what to write instead of a range with host bits set', () => {
    const parsed = parseOpening('10.1.2.3/8');
    expect(parsed.ok ? '' : parsed.error.message).toContain('10.0.0.0/8');
  });

  it('a CIDR without a port opens every port inside it, nothing outside', () => {
    const openings = opened('10.0.0.0/8');
    expect(isOpened(openings, '10.1.2.3', 443)).toBe(true);
    expect(isOpened(openings, '10.255.255.255', 1)).toBe(true);
    expect(isOpened(openings, '11.0.0.0', 443)).toBe(false);
    expect(isOpened(openings, '9.255.255.255', 443)).toBe(false);
  });

  it('a port restricts the opening to that port', () => {
    const openings = opened('10.1.2.3:8443', '[fd00::/64]:443');
    expect(isOpened(openings, '10.1.2.3', 8443)).toBe(true);
    expect(isOpened(openings, '10.1.2.3', 443)).toBe(false);
    expect(isOpened(openings, '10.1.2.4', 8443)).toBe(false);
    expect(isOpened(openings, 'fd00::1', 443)).toBe(true);
    expect(isOpened(openings, [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7], 443)).toBe(true);
    expect(isOpened(openings, 'fd00::1', 80)).toBe(false);
    expect(isOpened(openings, 'fd00:0:0:1::1', 443)).toBe(false);
  });

  it('an IPv4-mapped address is opened by its IPv4 opening, never by an IPv6 one', () => {
    expect(isOpened(opened('10.0.0.0/8'), '::ffff:10.1.2.3', 443)).toBe(true);
    expect(isOpened(opened('::/0'), '::ffff:10.1.2.3', 443)).toBe(false);
    expect(isOpened(opened('::/0'), '10.1.2.3', 443)).toBe(false);
    expect(isOpened(opened('0.0.0.0/0'), 'fd00::1', 443)).toBe(false);
  });

  it('a metadata address is opened only by an opening that names it exactly', () => {
    expect(isOpened(opened('169.254.0.0/16'), '169.254.1.1', 80)).toBe(true);
    expect(isOpened(opened('169.254.0.0/16'), '169.254.169.254', 80)).toBe(false);
    expect(isOpened(opened('169.254.0.0/16'), '::ffff:169.254.169.254', 80)).toBe(false);
    expect(isOpened(opened('0.0.0.0/0'), '168.63.129.16', 80)).toBe(false);
    expect(isOpened(opened('fd00::/8'), 'fd00:ec2::254', 80)).toBe(false);
    expect(isOpened(opened('64:ff9b::/96'), '64:ff9b::169.254.169.254', 80)).toBe(false);
    expect(isOpened(opened('169.254.169.254'), '169.254.169.254', 80)).toBe(true);
    expect(isOpened(opened('[fd00:ec2::254]:80'), 'fd00:ec2::254', 80)).toBe(true);
  });

  it('an invalid address or port is never opened', () => {
    const openings = opened('0.0.0.0/0', '::/0');
    expect(isOpened(openings, '010.0.0.1', 443)).toBe(false);
    expect(isOpened(openings, 'fe80::1%eth0', 443)).toBe(false);
    for (const port of [0, -1, 65536, 1.5, Number.NaN])
      expect(isOpened(openings, '10.0.0.1', port)).toBe(false);
    expect(isOpened([], '10.0.0.1', 443)).toBe(false);
  });

  it('opens an address exactly when it lies inside the CIDR (property)', () => {
    fc.assert(
      fc.property(ipv4Octets, ipv4Octets, fc.integer({ min: 0, max: 32 }), (network, address, prefix) => {
        const mask = (index: number) => (0xff << (8 - Math.min(8, Math.max(0, prefix - index * 8)))) & 0xff;
        const base = network.map((value, index) => value & mask(index));
        const inside = address.every((value, index) => (value & mask(index)) === base[index]);
        const target = classifyAddress(address);
        fc.pre(target.class !== 'metadata');
        expect(isOpened(opened(`${base.join('.')}/${prefix}`), address, 443)).toBe(inside);
      }),
      { numRuns: 1000 },
    );
  });
});
