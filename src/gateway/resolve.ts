// DNS for the gateway: every address a name resolves to, through the system resolver (which reads
// /etc/hosts first, so tests and operators can pin names), its answers kept for 5 s. The gateway
// resolves each request's name and dials the address it checked; it never hands a name to the
// socket layer.
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

/** A resolver from a fixed table, for tests and benchmarks (operators pin names in /etc/hosts). */
export function tableResolver(table: Readonly<Record<string, readonly string[]>>): Resolver {
  return async (name) => (table[name] ?? []).map(canonical).filter((a): a is string => a !== null);
}

function canonical(address: string): string | null {
  const bytes = parseAddress(address);
  return bytes === null ? null : formatAddress(bytes);
}

export interface CachedResolverOptions {
  /** How long an answer is reused. Default 5 s. */
  readonly ttlMs?: number;
  /** How long "does not resolve" is reused. Default 1 s. */
  readonly negativeTtlMs?: number;
  /** Names kept at most; the oldest answer goes first. Default 10,000. */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

/**
 * `inner` with its answers kept for a few seconds, and one lookup at a time per name: under
 * load, requests to one name share a lookup instead of each queueing a getaddrinfo on libuv's
 * four threads. Safe for the SSRF checks because the cache only holds addresses: every request
 * still classifies each address it is given and dials the one it checked. Threat noted: a
 * rebinding name (TTL 0, public then private) is pinned to one answer for the TTL, which makes
 * rebinding slower, never easier. The system resolver gives no TTLs, so the time is fixed.
 */
export function cachedResolver(inner: Resolver, options: CachedResolverOptions = {}): Resolver {
  const ttlMs = options.ttlMs ?? 5_000;
  const negativeTtlMs = options.negativeTtlMs ?? 1_000;
  const maxEntries = Math.max(1, options.maxEntries ?? 10_000);
  // A monotonic clock: a wall clock set back would keep answers for longer.
  const now = options.now ?? (() => performance.now());
  const answers = new Map<string, { readonly addresses: readonly string[]; readonly until: number }>();
  const pending = new Map<string, Promise<readonly string[]>>();
  return (name) => {
    const kept = answers.get(name);
    if (kept !== undefined && kept.until > now()) return Promise.resolve(kept.addresses);
    const inFlight = pending.get(name);
    if (inFlight !== undefined) return inFlight;
    const lookup = inner(name)
      .then((addresses) => {
        answers.delete(name);
        if (answers.size >= maxEntries) {
          const oldest = answers.keys().next();
          if (!oldest.done) answers.delete(oldest.value);
        }
        answers.set(name, { addresses, until: now() + (addresses.length > 0 ? ttlMs : negativeTtlMs) });
        return addresses;
      })
      .finally(() => pending.delete(name));
    pending.set(name, lookup);
    return lookup;
  };
}
