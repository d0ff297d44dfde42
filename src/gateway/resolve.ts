// DNS for the gateway: every address a name resolves to, through the system resolver (which reads
// /etc/hosts first, so tests and operators can pin names). The gateway resolves once per
// request and dials the address it checked; it never hands a name to the socket layer.
import { lookup } from 'node:dns/promises';
import { formatAddress, parseAddress } from '../egress/address.ts';
import type { Resolver } from './check.ts';

/** Names that do not resolve give []; the decision then denies (`unresolvable`). */
export const systemResolver: Resolver = async (name) => {
  try {
    const answers = await lookup(name, { all: true, verbatim: true });
    return answers.map((a) => canonical(a.address)).filter((a): a is string => a !== null);
  } catch {
    return [];
  }
};

/** A resolver from a fixed table (tests; `REINS_GATEWAY_HOSTS`-style pinning). */
export function tableResolver(table: Readonly<Record<string, readonly string[]>>): Resolver {
  return async (name) => (table[name] ?? []).map(canonical).filter((a): a is string => a !== null);
}

function canonical(address: string): string | null {
  const bytes = parseAddress(address);
  return bytes === null ? null : formatAddress(bytes);
}
