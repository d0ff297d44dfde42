// The egress grammar's data model (SPEC.md, "Destination rules").
//
// A Rule is always canonical: it is produced by parseRule (or by intersection of canonical
// rules), so matching and intersection never re-normalise. Canonical means:
// - methods: null (any method) or a non-empty, sorted, de-duplicated list of upper-case tokens;
// - host names: lower case A-labels (IDNA/punycode), no trailing dot;
// - IP ranges: network address with host bits cleared, prefix length explicit;
// - port: explicit (the scheme's default filled in);
// - path: a list of segments, already percent-normalised; [] is "/" (everything).

export type Scheme = 'http' | 'https';

export type HostPattern =
  /** Exactly this DNS name. */
  | { readonly kind: 'name'; readonly name: string }
  /** `*.base` (one extra label) or `**.base` (one or more extra labels); never the apex. */
  | { readonly kind: 'wildcard'; readonly base: string; readonly depth: 'one' | 'many' }
  /** An IP literal (prefix = 32 or 128) or a CIDR range. `bytes` is the network address. */
  | {
      readonly kind: 'ip';
      readonly family: 4 | 6;
      readonly bytes: readonly number[];
      readonly prefix: number;
    };

export interface Rule {
  readonly methods: readonly string[] | null;
  readonly scheme: Scheme;
  readonly host: HostPattern;
  readonly port: number;
  /** Path prefix as segments; matches on segment boundaries. [] means "/". */
  readonly path: readonly string[];
}

export const DEFAULT_PORTS: Readonly<Record<Scheme, number>> = { http: 80, https: 443 };
