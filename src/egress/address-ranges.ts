// The special-purpose range table: every range the gateway refuses to dial, one row per range,
// each citing the RFC (or, for cloud metadata endpoints, the vendor) that assigns it.
//
// Pure data. `classifyAddress` (address.ts) decides an address by the longest prefix among these
// rows; an address no row covers is public. docs/addresses.md lists the same rows for operators,
// and test/egress/address-ranges.test.ts fails when a row is missing there.

export const ADDRESS_CLASSES = [
  'public',
  'unspecified',
  'loopback',
  'private',
  'link_local',
  'cgnat',
  'metadata',
  'multicast',
  'broadcast',
  'reserved',
  'documentation',
  'benchmarking',
  'unique_local',
  'site_local',
  'ipv4_embedded',
  'translation',
  'special_purpose',
  'invalid',
] as const;

/** Why an address is (not) public: a closed set, so `switch (verdict.class)` is exhaustive. */
export type AddressClass = (typeof ADDRESS_CLASSES)[number];

/** How an IPv6 range embeds an IPv4 address; `unwrap` (address.ts) knows where the 32 bits sit. */
export type Embedding = 'mapped' | 'compatible' | 'nat64' | 'nat64_local' | '6to4' | 'teredo';

export interface AddressRange {
  readonly cidr: string;
  readonly class: Exclude<AddressClass, 'public' | 'invalid'>;
  /** The RFC that assigns the range (vendor documentation for cloud metadata endpoints). */
  readonly rfc: string;
  /** Why the range is refused. */
  readonly note: string;
  readonly embeds?: Embedding;
  /** IANA marks the range "Globally Reachable"; refused anyway, and `note` says why. */
  readonly globallyReachable?: true;
}

// Special-purpose blocks that IANA marks globally reachable are refused all the same: they are
// anycast protocol infrastructure (PCP, TURN, AS112, AMT, DNS-SD), not services an agent calls,
// and an egress firewall only needs to let out what is ordinary unicast.
const INFRASTRUCTURE = 'protocol infrastructure, not a service an agent has reason to call';

/** IANA IPv4 Special-Purpose Address Registry, plus multicast (RFC 5771). */
const IPV4_RANGES: readonly AddressRange[] = [
  {
    cidr: '0.0.0.0/8',
    class: 'reserved',
    rfc: 'RFC 791',
    note: '"this network": a source, never a destination',
  },
  {
    cidr: '0.0.0.0/32',
    class: 'unspecified',
    rfc: 'RFC 1122',
    note: 'Linux and macOS deliver a connection to 0.0.0.0 to the local host',
  },
  {
    cidr: '10.0.0.0/8',
    class: 'private',
    rfc: 'RFC 1918',
    note: 'private network: the operator’s own hosts',
  },
  {
    cidr: '100.64.0.0/10',
    class: 'cgnat',
    rfc: 'RFC 6598',
    note: 'shared address space: hosts behind a carrier or cloud NAT',
  },
  { cidr: '127.0.0.0/8', class: 'loopback', rfc: 'RFC 1122', note: 'the gateway host itself' },
  {
    cidr: '169.254.0.0/16',
    class: 'link_local',
    rfc: 'RFC 3927',
    note: 'link-local: the gateway’s own link, where cloud metadata services live',
  },
  {
    cidr: '172.16.0.0/12',
    class: 'private',
    rfc: 'RFC 1918',
    note: 'private network: the operator’s own hosts',
  },
  {
    cidr: '192.0.0.0/24',
    class: 'special_purpose',
    rfc: 'RFC 6890',
    note: 'IETF protocol assignments; the whole block is refused, sub-entries included',
  },
  {
    cidr: '192.0.0.0/29',
    class: 'special_purpose',
    rfc: 'RFC 7335',
    note: 'IPv4 service continuity prefix (DS-Lite B4/AFTR): the local tunnel endpoints',
  },
  {
    cidr: '192.0.0.8/32',
    class: 'special_purpose',
    rfc: 'RFC 7600',
    note: 'IPv4 dummy address, never a real host',
  },
  {
    cidr: '192.0.0.9/32',
    class: 'special_purpose',
    rfc: 'RFC 7723',
    note: `Port Control Protocol anycast: ${INFRASTRUCTURE}; it opens ports on the local NAT`,
    globallyReachable: true,
  },
  {
    cidr: '192.0.0.10/32',
    class: 'special_purpose',
    rfc: 'RFC 8155',
    note: `TURN anycast: ${INFRASTRUCTURE}; a relay would forward on the agent’s behalf`,
    globallyReachable: true,
  },
  {
    cidr: '192.0.0.170/32',
    class: 'special_purpose',
    rfc: 'RFC 8880',
    note: 'NAT64/DNS64 discovery (ipv4only.arpa), answered locally',
  },
  {
    cidr: '192.0.0.171/32',
    class: 'special_purpose',
    rfc: 'RFC 8880',
    note: 'NAT64/DNS64 discovery (ipv4only.arpa), answered locally',
  },
  { cidr: '192.0.2.0/24', class: 'documentation', rfc: 'RFC 5737', note: 'TEST-NET-1: examples only' },
  {
    cidr: '192.31.196.0/24',
    class: 'special_purpose',
    rfc: 'RFC 7535',
    note: `AS112-v4 (sink for reverse lookups of private space): ${INFRASTRUCTURE}`,
    globallyReachable: true,
  },
  {
    cidr: '192.52.193.0/24',
    class: 'special_purpose',
    rfc: 'RFC 7450',
    note: `Automatic Multicast Tunneling relays: ${INFRASTRUCTURE}`,
    globallyReachable: true,
  },
  {
    cidr: '192.88.99.0/24',
    class: 'translation',
    rfc: 'RFC 7526',
    note: 'deprecated 6to4 relay anycast: a translator the gateway cannot see past',
  },
  {
    cidr: '192.88.99.2/32',
    class: 'translation',
    rfc: 'RFC 6751',
    note: '6a44 relay anycast: a translator the gateway cannot see past',
  },
  {
    cidr: '192.168.0.0/16',
    class: 'private',
    rfc: 'RFC 1918',
    note: 'private network: the operator’s own hosts',
  },
  {
    cidr: '192.175.48.0/24',
    class: 'special_purpose',
    rfc: 'RFC 7534',
    note: `AS112 direct delegation: ${INFRASTRUCTURE}`,
    globallyReachable: true,
  },
  {
    cidr: '198.18.0.0/15',
    class: 'benchmarking',
    rfc: 'RFC 2544',
    note: 'benchmarking: lab networks, often inside the operator’s own',
  },
  { cidr: '198.51.100.0/24', class: 'documentation', rfc: 'RFC 5737', note: 'TEST-NET-2: examples only' },
  { cidr: '203.0.113.0/24', class: 'documentation', rfc: 'RFC 5737', note: 'TEST-NET-3: examples only' },
  { cidr: '224.0.0.0/4', class: 'multicast', rfc: 'RFC 5771', note: 'multicast: not a single destination' },
  {
    cidr: '240.0.0.0/4',
    class: 'reserved',
    rfc: 'RFC 1112',
    note: 'reserved for future use, some stacks route it',
  },
  {
    cidr: '255.255.255.255/32',
    class: 'broadcast',
    rfc: 'RFC 8190',
    note: 'limited broadcast: every host on the local link',
  },
];

/** IANA IPv6 Special-Purpose Address Registry, plus the rest of the address space outside 2000::/3. */
const IPV6_RANGES: readonly AddressRange[] = [
  // Outside global unicast (2000::/3) nothing is public; the more specific rows below say why.
  { cidr: '::/3', class: 'reserved', rfc: 'RFC 4291', note: 'outside global unicast 2000::/3' },
  { cidr: '4000::/2', class: 'reserved', rfc: 'RFC 4291', note: 'outside global unicast 2000::/3' },
  { cidr: '8000::/1', class: 'reserved', rfc: 'RFC 4291', note: 'outside global unicast 2000::/3' },
  {
    cidr: '::/128',
    class: 'unspecified',
    rfc: 'RFC 4291',
    note: 'the unspecified address reaches the local host',
  },
  { cidr: '::1/128', class: 'loopback', rfc: 'RFC 4291', note: 'the gateway host itself' },
  {
    cidr: '::/96',
    class: 'ipv4_embedded',
    rfc: 'RFC 4291',
    note: 'deprecated IPv4-compatible: some stacks tunnel it to the embedded IPv4 over IPv4',
    embeds: 'compatible',
  },
  {
    cidr: '::ffff:0:0/96',
    class: 'ipv4_embedded',
    rfc: 'RFC 4291',
    note: 'IPv4-mapped: the embedded IPv4 itself on a dual-stack socket',
    embeds: 'mapped',
  },
  {
    cidr: '64:ff9b::/96',
    class: 'translation',
    rfc: 'RFC 6052',
    note: 'NAT64 well-known prefix: a translator forwards to the embedded IPv4',
    embeds: 'nat64',
    globallyReachable: true,
  },
  {
    cidr: '64:ff9b:1::/48',
    class: 'translation',
    rfc: 'RFC 8215',
    note: 'NAT64 local-use prefix: an operator’s translator forwards to the embedded IPv4',
    embeds: 'nat64_local',
  },
  {
    cidr: '100::/64',
    class: 'special_purpose',
    rfc: 'RFC 6666',
    note: 'discard-only: a black hole by design',
  },
  {
    cidr: '100:0:0:1::/64',
    class: 'special_purpose',
    rfc: 'RFC 9780',
    note: 'dummy prefix, never a real host',
  },
  {
    cidr: '2001::/23',
    class: 'special_purpose',
    rfc: 'RFC 2928',
    note: 'IETF protocol assignments; the whole block is refused, sub-entries included',
  },
  {
    cidr: '2001::/32',
    class: 'translation',
    rfc: 'RFC 4380',
    note: 'Teredo: a relay tunnels to the embedded client IPv4 over UDP',
    embeds: 'teredo',
  },
  {
    cidr: '2001:1::1/128',
    class: 'special_purpose',
    rfc: 'RFC 7723',
    note: `Port Control Protocol anycast: ${INFRASTRUCTURE}; it opens ports on the local NAT`,
    globallyReachable: true,
  },
  {
    cidr: '2001:1::2/128',
    class: 'special_purpose',
    rfc: 'RFC 8155',
    note: `TURN anycast: ${INFRASTRUCTURE}; a relay would forward on the agent’s behalf`,
    globallyReachable: true,
  },
  {
    cidr: '2001:1::3/128',
    class: 'special_purpose',
    rfc: 'RFC 9665',
    note: `DNS-SD Service Registration Protocol anycast: ${INFRASTRUCTURE}`,
    globallyReachable: true,
  },
  { cidr: '2001:2::/48', class: 'benchmarking', rfc: 'RFC 5180', note: 'benchmarking: lab networks' },
  {
    cidr: '2001:3::/32',
    class: 'special_purpose',
    rfc: 'RFC 7450',
    note: `Automatic Multicast Tunneling: ${INFRASTRUCTURE}`,
    globallyReachable: true,
  },
  {
    cidr: '2001:4:112::/48',
    class: 'special_purpose',
    rfc: 'RFC 7535',
    note: `AS112-v6: ${INFRASTRUCTURE}`,
    globallyReachable: true,
  },
  {
    cidr: '2001:10::/28',
    class: 'special_purpose',
    rfc: 'RFC 4843',
    note: 'deprecated ORCHID: cryptographic identifiers, not locators',
  },
  {
    cidr: '2001:20::/28',
    class: 'special_purpose',
    rfc: 'RFC 7343',
    note: 'ORCHIDv2: cryptographic identifiers, not locators; routed only by overlay software',
    globallyReachable: true,
  },
  {
    cidr: '2001:30::/28',
    class: 'special_purpose',
    rfc: 'RFC 9374',
    note: 'drone remote ID entity tags: identifiers, not web services',
    globallyReachable: true,
  },
  { cidr: '2001:db8::/32', class: 'documentation', rfc: 'RFC 3849', note: 'documentation: examples only' },
  {
    cidr: '2002::/16',
    class: 'translation',
    rfc: 'RFC 3056',
    note: '6to4: a relay tunnels to the embedded IPv4',
    embeds: '6to4',
  },
  {
    cidr: '2620:4f:8000::/48',
    class: 'special_purpose',
    rfc: 'RFC 7534',
    note: `AS112 direct delegation: ${INFRASTRUCTURE}`,
    globallyReachable: true,
  },
  { cidr: '3fff::/20', class: 'documentation', rfc: 'RFC 9637', note: 'documentation: examples only' },
  {
    cidr: '5f00::/16',
    class: 'special_purpose',
    rfc: 'RFC 9602',
    note: 'SRv6 segment identifiers: instructions to routers inside one domain',
  },
  {
    cidr: 'fc00::/7',
    class: 'unique_local',
    rfc: 'RFC 4193',
    note: 'unique-local: the operator’s own hosts',
  },
  { cidr: 'fe80::/10', class: 'link_local', rfc: 'RFC 4291', note: 'link-local: the gateway’s own link' },
  {
    cidr: 'fec0::/10',
    class: 'site_local',
    rfc: 'RFC 3879',
    note: 'deprecated site-local: still routed inside some sites',
  },
  { cidr: 'ff00::/8', class: 'multicast', rfc: 'RFC 4291', note: 'multicast: not a single destination' },
];

// Cloud metadata endpoints hand out the host's credentials to whoever asks: the first target of
// every SSRF. Each is a /32 or /128, so the longest-prefix match makes `metadata` the reason
// even inside a broader refused range, and `isOpened` never lets a CIDR opening cover one.
const METADATA_RANGES: readonly AddressRange[] = [
  {
    cidr: '169.254.169.254/32',
    class: 'metadata',
    rfc: 'RFC 3927; AWS, GCP, Azure, OCI, OpenStack instance metadata',
    note: 'instance metadata service: hands out the host’s credentials',
  },
  {
    cidr: '169.254.169.253/32',
    class: 'metadata',
    rfc: 'RFC 3927; AWS VPC DNS resolver',
    note: 'the VPC resolver answers private names: a lookup channel out',
  },
  {
    cidr: '169.254.170.2/32',
    class: 'metadata',
    rfc: 'RFC 3927; AWS ECS task metadata and credentials',
    note: 'task credentials endpoint',
  },
  {
    cidr: '169.254.170.23/32',
    class: 'metadata',
    rfc: 'RFC 3927; AWS EKS Pod Identity agent',
    note: 'pod credentials endpoint',
  },
  {
    cidr: '168.63.129.16/32',
    class: 'metadata',
    rfc: 'none (a public address); Azure WireServer',
    note: 'Azure host agent and DNS: a public address that only the host answers',
  },
  {
    cidr: '100.100.100.200/32',
    class: 'metadata',
    rfc: 'RFC 6598; Alibaba Cloud instance metadata',
    note: 'instance metadata service: hands out the host’s credentials',
  },
  {
    cidr: 'fd00:ec2::254/128',
    class: 'metadata',
    rfc: 'RFC 4193; AWS instance metadata (IPv6)',
    note: 'instance metadata service: hands out the host’s credentials',
  },
  {
    cidr: 'fd00:ec2::253/128',
    class: 'metadata',
    rfc: 'RFC 4193; AWS VPC DNS resolver (IPv6)',
    note: 'the VPC resolver answers private names: a lookup channel out',
  },
  {
    cidr: 'fd00:ec2::23/128',
    class: 'metadata',
    rfc: 'RFC 4193; AWS EKS Pod Identity agent (IPv6)',
    note: 'pod credentials endpoint',
  },
];

/** Every refused range, IPv4 then IPv6 then metadata. Order does not matter: the longest prefix decides. */
export const ADDRESS_RANGES: readonly AddressRange[] = [...IPV4_RANGES, ...IPV6_RANGES, ...METADATA_RANGES];
