// The closed list of reasons an outcome of the gateway can carry (SPEC.md, "The gateway"), each
// with the one status it is answered with, the `error` of its JSON body, the decision and metrics
// outcome it is recorded under, and its meaning. The answer builder (answers.ts), the audit row
// and log line (events.ts), the metrics label (metrics.ts) and docs/gateway.md all derive from
// this table, and test/gateway/docs.test.ts fails when the docs differ from it. Names are part of
// the contract: add a reason only with its row and a test that produces it, and never rename one.
//
// A reason is null on an outcome that went as asked (an allowed request answered by its upstream,
// a tunnel opened and closed by its ends).

/** The metrics `outcome` label: one per row, a closed list. */
export type OutcomeLabel = 'allowed' | 'denied' | 'unauthenticated' | 'bad_request' | 'upstream_error';

export interface ReasonRow {
  /**
   * The status it is answered with; null for client_closed, which is never answered (its row
   * keeps the status already sent, if any). A refusal can also be recorded without a status when
   * no HTTP answer was possible (a refused TLS handshake, a cut connection) — never with another.
   */
  readonly status: number | null;
  /** The JSON body's `error`. */
  readonly error: string;
  /** The audit row's decision: whether the gateway let the exchange go out before it ended so. */
  readonly decision: 'allowed' | 'denied';
  readonly outcome: OutcomeLabel;
  /** One sentence for operators (docs/gateway.md, `reins audit`). */
  readonly meaning: string;
}

const deny = (meaning: string): ReasonRow => ({
  status: 403,
  error: 'egress_denied',
  decision: 'denied',
  outcome: 'denied',
  meaning,
});

const badRequest = (meaning: string): ReasonRow => ({
  status: 400,
  error: 'bad_request',
  decision: 'denied',
  outcome: 'bad_request',
  meaning,
});

const upstream = (status: number, meaning: string): ReasonRow => ({
  status,
  error: 'upstream_error',
  decision: 'allowed',
  outcome: 'upstream_error',
  meaning,
});

export const REASONS = {
  // The decision (decide.ts and its shell check.ts): 403 egress_denied.
  no_matching_rule: deny(
    'No rule of the effective grant (token ∩ registration ∩ ceiling) names this destination.',
  ),
  method_not_allowed: deny('A rule of the effective grant names the origin and path, but not this method.'),
  path_not_allowed: deny('A rule of the effective grant names the origin, but not this path.'),
  forbidden_address: deny(
    'The destination is, or resolves to, a non-public address (private, loopback, metadata, …) the operator has not opened for this port.',
  ),
  cross_tenant: deny('Another tenant owns the destination and does not federate it to the caller’s tenant.'),
  agent_quarantined: deny('The token’s acting agent is quarantined.'),
  agent_not_registered: deny('The token’s acting agent is no longer in the applied policy.'),
  // Budgets (SPEC.md, "Monitoring and containment"): the body's error is egress_denied, as SPEC.md shows it.
  budget_exceeded: {
    status: 429,
    error: 'egress_denied',
    decision: 'denied',
    outcome: 'denied',
    meaning:
      'The agent’s budget (requests per minute, or bytes out per hour) is spent for the current window; Retry-After says when the next window begins.',
  },
  budget_unaccounted: {
    status: 429,
    error: 'egress_denied',
    decision: 'denied',
    outcome: 'denied',
    meaning:
      'The agent has a budget and this gateway cannot account for its usage (the database is out of reach): refused rather than let through.',
  },
  connect_needs_whole_origin: deny(
    'CONNECT to an origin that is granted only in part: a plain tunnel would carry requests the grant does not allow.',
  ),
  unresolvable: deny('The destination’s name did not resolve to any address.'),
  decision_failed: deny(
    'The decision could not be made from its input (a gateway malfunction); the request was refused rather than guessed at.',
  ),
  // The tunnel's own check (inspect.ts): 403 egress_denied, or a refused TLS handshake.
  sni_mismatch: deny(
    'Inside an inspected tunnel, the TLS SNI or an inner Host does not name the CONNECT origin.',
  ),
  // The credentials, before any decision.
  invalid_token: {
    status: 407,
    error: 'invalid_token',
    decision: 'denied',
    outcome: 'unauthenticated',
    meaning:
      'The request’s credentials were missing, malformed or several, or its token malformed, invalid, expired, for another audience or revoked (the detail says which).',
  },
  // Framing: requests the gateway will not read (the connection is closed after the answer).
  missing_host: badRequest('An HTTP/1.1 request without a Host header (RFC 9112 §3.2).'),
  ambiguous_target: badRequest(
    'The request target is ambiguous (userinfo, fragment, encoded / or \\, dot segments escaping the root, Host disagreeing with the absolute URI or CONNECT target, duplicate Host).',
  ),
  malformed: badRequest(
    'The request could not be read: not an absolute-form target, or a head Node’s parser refused.',
  ),
  headers_too_large: badRequest('The request head (request line included) is larger than the header limit.'),
  headers_timeout: {
    status: 408,
    error: 'request_timeout',
    decision: 'denied',
    outcome: 'bad_request',
    meaning: 'The request head took longer than the headers timeout.',
  },
  // Limits.
  too_many_tunnels: {
    status: 429,
    error: 'budget_exceeded',
    decision: 'denied',
    outcome: 'denied',
    meaning: 'More tunnels open for one token than the limit (plain and inspected alike).',
  },
  upstream_busy: {
    status: 429,
    error: 'budget_exceeded',
    decision: 'denied',
    outcome: 'denied',
    meaning:
      'The token, or its tenant, already had its share of concurrent exchanges with this upstream, and no slot freed within the upstream wait (the detail says which share).',
  },
  body_too_slow: {
    status: 408,
    error: 'request_timeout',
    decision: 'allowed',
    outcome: 'bad_request',
    meaning:
      'The request body came slower than the minimum body rate; the exchange was cut (the upstream may have received part of it).',
  },
  // The upstream, after an allow.
  upstream_unreachable: upstream(502, 'The upstream could not be reached or closed the connection.'),
  upstream_tls: upstream(502, 'The upstream’s TLS certificate did not verify for the name asked for.'),
  upstream_invalid: upstream(502, 'The upstream answered something that is not HTTP.'),
  upstream_timeout: upstream(504, 'The upstream did not answer within the upstream timeout.'),
  // Allowed exchanges that ended early. The status recorded is what had been answered, if anything.
  client_closed: {
    status: null,
    error: 'client_closed',
    decision: 'allowed',
    outcome: 'allowed',
    meaning:
      'The client went away before the answer was complete (recorded with the status already sent, or none; never answered).',
  },
  shutdown: {
    status: 503,
    error: 'shutdown',
    decision: 'allowed',
    outcome: 'upstream_error',
    meaning:
      'The gateway was stopping and the exchange had not finished within the shutdown grace period; it was cut.',
  },
  internal: upstream(
    502,
    'The gateway failed while handling the request (a malfunction); nothing more was sent.',
  ),
} as const satisfies Record<string, ReasonRow>;

export type Reason = keyof typeof REASONS;

export const REASON_NAMES = Object.keys(REASONS) as Reason[];

/** The reasons decide() (and its shell, check.ts) give: each a 403 `egress_denied`. */
export const DENY_REASONS = [
  'no_matching_rule',
  'method_not_allowed',
  'path_not_allowed',
  'forbidden_address',
  'cross_tenant',
  'agent_quarantined',
  'agent_not_registered',
  'budget_exceeded',
  'budget_unaccounted',
  'connect_needs_whole_origin',
  'unresolvable',
  'decision_failed',
] as const satisfies readonly Reason[];

export type DenyReason = (typeof DENY_REASONS)[number];

export function isDenyReason(value: unknown): value is DenyReason {
  return typeof value === 'string' && (DENY_REASONS as readonly string[]).includes(value);
}

export function isReason(value: unknown): value is Reason {
  return typeof value === 'string' && Object.hasOwn(REASONS, value);
}
