// The closed list of reasons the gateway gives for refusing a destination (SPEC.md, "The
// gateway": the 403 body's `reason`). Audit rows, metrics labels and docs use these names, so
// they are part of the contract: add a reason only with a row in test/gateway/decide.test.ts
// (or, for the proxy's own reasons, a test of the proxy), and never rename one.
//
// Token problems (missing, malformed, expired, revoked, wrong audience) are not deny reasons:
// the proxy answers them with 407 and `error="invalid_token"` before any decision is made.

export const DENY_REASONS = [
  'no_matching_rule',
  'method_not_allowed',
  'path_not_allowed',
  'forbidden_address',
  'cross_tenant',
  'agent_quarantined',
  'agent_not_registered',
  'connect_needs_whole_origin',
  'sni_mismatch',
  'ambiguous_target',
  'unresolvable',
  'decision_failed',
] as const;

export type DenyReason = (typeof DENY_REASONS)[number];

/** One line per reason, for docs and for operators reading audit rows. */
export const DENY_REASON_MEANINGS: Readonly<Record<DenyReason, string>> = {
  no_matching_rule: 'No rule of the effective grant (token ∩ registration ∩ ceiling) names this destination.',
  method_not_allowed: 'A rule of the effective grant names the origin and path, but not this method.',
  path_not_allowed: 'A rule of the effective grant names the origin, but not this path.',
  forbidden_address:
    'The destination is, or resolves to, a non-public address (private, loopback, metadata, …) the operator has not opened for this port.',
  cross_tenant: 'Another tenant owns the destination and does not federate it to the caller’s tenant.',
  agent_quarantined: 'The token’s acting agent is quarantined.',
  agent_not_registered: 'The token’s acting agent is no longer in the applied policy.',
  connect_needs_whole_origin:
    'CONNECT to an origin that is granted only in part: a plain tunnel would carry requests the grant does not allow.',
  sni_mismatch: 'Inside an inspected tunnel, the TLS SNI or an inner Host does not name the CONNECT origin.',
  ambiguous_target:
    'The request target is ambiguous (userinfo, fragment, encoded / or \\, dot segments escaping the root, Host disagreeing with the absolute URI, duplicate Host).',
  unresolvable: 'The destination’s name did not resolve to any address.',
  decision_failed:
    'The decision could not be made from its input (a gateway malfunction); the request was refused rather than guessed at.',
};

/**
 * Reasons the proxy produces itself (it sees the raw request and the tunnel's bytes), never
 * decide(): the decision only ever sees a target that normaliseTarget accepted.
 */
export const PROXY_DENY_REASONS: readonly DenyReason[] = ['sni_mismatch', 'ambiguous_target'];

/** Every denial is answered 403 `egress_denied`; 407 is for token problems, before the decision. */
export const DENY_STATUS = 403;

export function isDenyReason(value: unknown): value is DenyReason {
  return typeof value === 'string' && (DENY_REASONS as readonly string[]).includes(value);
}
