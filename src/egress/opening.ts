// Operator openings (REINS_GATEWAY_ALLOW_PRIVATE): CIDRs, each optionally with a port, that
// the gateway may dial although they are not public. Tokens still have to grant the destination.
//
// Pure: parsing refuses what it cannot canonicalise and says what to write instead; `isOpened`
// never throws. docs/addresses.md ("Operator openings") is the operator-facing account.
import { type Bytes, classifyAddress, formatAddress, isMapped, parseAddress, within } from './address.ts';

export interface Opening {
  readonly family: 4 | 6;
  /** The network address, host bits clear. */
  readonly bytes: Bytes;
  readonly prefix: number;
  /** null: every port. */
  readonly port: number | null;
  /** Canonical text: `10.0.0.0/8`, `10.1.2.3/32:8443`, `[fd00::/64]`, `[fd00::/64]:443`. */
  readonly text: string;
}

export type OpeningErrorCode =
  | 'invalid_syntax'
  | 'invalid_address'
  | 'invalid_prefix'
  | 'host_bits_set'
  | 'invalid_port';

export interface OpeningError {
  readonly code: OpeningErrorCode;
  readonly message: string;
}

export type OpeningParse =
  | { readonly ok: true; readonly opening: Opening }
  | { readonly ok: false; readonly error: OpeningError };

const PORT = /^[1-9][0-9]{0,4}$/;
const PREFIX = /^(?:0|[1-9][0-9]{0,2})$/;

/**
 * Parses one opening: `10.0.0.0/8`, `10.1.2.3:8443`, `10.0.0.0/8:8443`, `fd00::/64`,
 * `[fd00::/64]:443`. A missing prefix means the single address; a missing port, every port.
 */
export function parseOpening(text: string): OpeningParse {
  const entry = text.trim();
  let target: string;
  let portText: string | null = null;
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    const rest = close === -1 ? '' : entry.slice(close + 1);
    if (close === -1 || (rest !== '' && !rest.startsWith(':'))) {
      return failure(
        'invalid_syntax',
        `'${entry}' is not an opening; write e.g. [fd00::/64] or [fd00::/64]:443`,
      );
    }
    target = entry.slice(1, close);
    if (rest !== '') portText = rest.slice(1);
    if (!target.includes(':')) {
      return failure('invalid_syntax', 'brackets are for IPv6; write an IPv4 opening bare');
    }
  } else if (entry.split(':').length > 2) {
    target = entry; // bare IPv6: no port possible, the brackets carry it
  } else {
    const colon = entry.indexOf(':');
    target = colon === -1 ? entry : entry.slice(0, colon);
    if (colon !== -1) portText = entry.slice(colon + 1);
  }
  const slash = target.indexOf('/');
  const addressText = slash === -1 ? target : target.slice(0, slash);
  const bytes = parseAddress(addressText);
  if (bytes === null) {
    return failure(
      'invalid_address',
      `'${addressText}' is not an IP address; write a dotted quad or an IPv6 address`,
    );
  }
  if (isMapped(bytes)) {
    return failure(
      'invalid_address',
      `'${addressText}' is IPv4-mapped; write the IPv4 form ${bytes.slice(12).join('.')}`,
    );
  }
  const width = bytes.length * 8;
  const prefixText = slash === -1 ? String(width) : target.slice(slash + 1);
  const prefix = Number(prefixText);
  if (!PREFIX.test(prefixText) || prefix > width) {
    return failure('invalid_prefix', `'/${prefixText}' is not a prefix length; write 0 to ${width}`);
  }
  const network = bytes.map((octet, index) => octet & maskOctet(prefix, index));
  if (network.some((octet, index) => octet !== bytes[index])) {
    return failure(
      'host_bits_set',
      `'${target}' has host bits set; write ${formatAddress(network)}/${prefix}`,
    );
  }
  const port = portText === null ? null : Number(portText);
  if (portText !== null && (!PORT.test(portText) || (port ?? 0) > 65535)) {
    return failure('invalid_port', `'${portText}' is not a port; write 1 to 65535`);
  }
  const cidr = `${formatAddress(network)}/${prefix}`;
  const host = bytes.length === 16 ? `[${cidr}]` : cidr;
  const shown = port === null ? host : `${host}:${port}`;
  return {
    ok: true,
    opening: { family: bytes.length === 4 ? 4 : 6, bytes: network, prefix, port, text: shown },
  };
}

/**
 * True when an opening covers the address and port. An IPv4-mapped address is checked as its
 * IPv4 (it is that host). A metadata address is opened only by an opening naming it exactly
 * (a /32 or /128): opening 169.254.0.0/16 for a link-local service must not hand out credentials.
 */
export function isOpened(
  openings: readonly Opening[],
  address: string | readonly number[],
  port: number,
): boolean {
  const parsed = parseAddress(address);
  if (parsed === null || !Number.isInteger(port) || port < 1 || port > 65535) return false;
  const bytes = isMapped(parsed) ? parsed.slice(12) : parsed;
  const exactOnly = classifyAddress(bytes).class === 'metadata';
  return openings.some(
    (opening) =>
      (opening.port === null || opening.port === port) &&
      (!exactOnly || opening.prefix === bytes.length * 8) &&
      within(bytes, opening.bytes, opening.prefix),
  );
}

/** The mask octet at `index` for a prefix of `prefix` bits. */
function maskOctet(prefix: number, index: number): number {
  const bits = Math.min(8, Math.max(0, prefix - index * 8));
  return (0xff << (8 - bits)) & 0xff;
}

function failure(code: OpeningErrorCode, message: string): OpeningParse {
  return { ok: false, error: { code, message } };
}
