// The only place that turns a request into an outcome: authenticate → read the target → decide
// (resolving once when asked) → apply the limits. Every transport calls it — absolute-form
// requests, CONNECT, each request inside an inspected tunnel, and next the decision API — and only
// adapts I/O around it: read a request, write the answer evaluate's outcome names, stream bytes.
//
// No logging, counting or auditing here: the transport finishes the exchange and the event stream
// (events.ts) tells whoever watches.
import { normaliseTargetHost, type Target } from '../egress/index.ts';
import {
  type AuthProblem,
  authenticate,
  type CheckContext,
  judge,
  tokenLapsed,
  type Verdict,
} from './check.ts';
import type { Reason } from './reasons.ts';
import { readAbsoluteTarget, readConnectTarget, type TargetRead } from './request-target.ts';
import type { TokenFacts } from './token.ts';
import type { TunnelSlots } from './tunnel-slots.ts';

export type InterceptMode = 'auto' | 'always' | 'never';

/** In its token's last seconds an inspected tunnel is closed after each answer. */
export const TUNNEL_WIND_DOWN_SECONDS = 5;

/** What an inspected tunnel is bound to; its inner requests are checked against it. */
export interface Tunnel {
  readonly facts: TokenFacts;
  /** The CONNECT target. */
  readonly target: Target;
  /** `host:port` as the CONNECT named it (normalised host). */
  readonly authority: string;
  /** The host as certificates and SNI spell it: a name, or an address without brackets. */
  readonly certificateHost: string;
  readonly requestId: string;
}

/** A request as every transport can describe it. */
export interface ProxyRequest {
  readonly method: string;
  /** The request target as sent: absolute-form, authority-form (CONNECT), or origin-form (in a tunnel). */
  readonly url: string;
  /** Every Host header, as received. */
  readonly hosts: readonly string[];
  /** HTTP/1.1 or later: a Host header is required (RFC 9112 §3.2). */
  readonly http11: boolean;
  /** Every Proxy-Authorization header, as received. */
  readonly proxyAuthorization: readonly string[];
  /** Inside an inspected tunnel: the tunnel (its token stands for the request's) and its scheme. */
  readonly inside?: { readonly tunnel: Tunnel; readonly scheme: 'http' | 'https' };
}

export interface EvaluationContext extends CheckContext {
  readonly now: () => Date;
  /** REINS_GATEWAY_INTERCEPT, and whether this gateway can issue certificates at all. */
  readonly intercept: InterceptMode;
  readonly canInspect: boolean;
  readonly tunnelSlots: TunnelSlots;
}

type Read = Extract<TargetRead, { ok: true }>;

export type Outcome =
  /** Answer the refusal of `reason` (reasons.ts gives its status and body). */
  | {
      readonly kind: 'refuse';
      readonly reason: Reason;
      readonly detail: string | null;
      /** A 407's credential problem (its status line names it). */
      readonly problem?: AuthProblem;
      readonly facts: TokenFacts | null;
      /** What the request asked for, when it could be read (a 407's row keeps it). */
      readonly read: Read | null;
      /** The 403 body's `destination` when no target was read (an inner Host naming another origin). */
      readonly destination?: string;
      /** A 429's Retry-After in seconds, when it says more than "a second" (a spent budget). */
      readonly retryAfter?: number;
    }
  /** Inside a tunnel whose token died (revoked, expired): close the connection, answer nothing. */
  | { readonly kind: 'cut'; readonly facts: TokenFacts; readonly problem: 'revoked' | 'expired' }
  /** Send the request on to exactly `address`. */
  | {
      readonly kind: 'forward';
      readonly facts: TokenFacts;
      readonly read: Read;
      readonly rule: string;
      readonly address: string;
      /** Answer with Connection: close (an inspected tunnel in its token's last seconds). */
      readonly windDown: boolean;
    }
  /** A plain tunnel to `address`; the slot is held until the tunnel ends. */
  | {
      readonly kind: 'tunnel';
      readonly facts: TokenFacts;
      readonly read: Read;
      readonly rule: string;
      readonly address: string;
      readonly release: () => void;
    }
  /** An inspected tunnel: answer 200 and check every request inside; the slot is held until it ends. */
  | {
      readonly kind: 'inspect';
      readonly facts: TokenFacts;
      readonly read: Read;
      readonly release: () => void;
    };

export async function evaluate(ctx: EvaluationContext, request: ProxyRequest): Promise<Outcome> {
  try {
    if (request.inside !== undefined) return await evaluateInside(ctx, request, request.inside);
    return await evaluateOutside(ctx, request);
  } catch {
    // A malfunction (a verifier or resolver that threw): refused, never guessed at.
    return refuse('internal', 'the gateway could not evaluate the request', null, null);
  }
}

async function evaluateOutside(ctx: EvaluationContext, request: ProxyRequest): Promise<Outcome> {
  const connect = request.method === 'CONNECT';
  // Read before the token is checked, so that a 407's row says where it was going. CONNECT names
  // no scheme: read as https first (see below for http).
  let read = connect
    ? readConnectTarget(request.url, 'https', request.hosts, request.http11)
    : readAbsoluteTarget(request.method, request.url, request.hosts, request.http11);
  const auth = await authenticate(ctx, request.proxyAuthorization);
  if (!auth.ok) {
    return refuse('invalid_token', auth.detail, null, read.ok ? read : null, auth.problem);
  }
  const { facts } = auth;
  if (!read.ok) return refuse(read.reason, read.detail, facts, null);
  let verdict = await judge(ctx, facts, read.target, connect);
  if (connect && verdict.verdict === 'deny' && verdict.reason === 'no_matching_rule') {
    // CONNECT names no scheme: when no https rule names the origin, an http rule may (Node's fetch
    // tunnels http:// URLs too). Only then: any other refusal (cross_tenant, a forbidden address, a
    // partial grant) stands, whatever an http rule for the same port says.
    const plain = readConnectTarget(request.url, 'http', request.hosts, request.http11);
    if (plain.ok) {
      read = plain;
      verdict = await judge(ctx, facts, plain.target, true);
    }
  }
  const lapsed = tokenLapsed(ctx.live, facts, Math.floor(ctx.now().getTime() / 1000));
  if (lapsed !== null) {
    return refuse(
      'invalid_token',
      `the token has ${lapsed === 'revoked' ? 'been revoked' : 'expired'}`,
      null,
      read,
      lapsed,
    );
  }
  if (!connect) {
    if (verdict.verdict === 'deny') return refuseVerdict(verdict, facts, read);
    return { kind: 'forward', facts, read, rule: verdict.rule, address: verdict.address, windDown: false };
  }
  const partial = verdict.verdict === 'deny' && verdict.reason === 'connect_needs_whole_origin';
  const inspect =
    ctx.canInspect &&
    ((partial && ctx.intercept !== 'never') || (verdict.verdict === 'allow' && ctx.intercept === 'always'));
  if (!inspect && verdict.verdict === 'deny') return refuseVerdict(verdict, facts, read);
  // One cap for plain and inspected tunnels alike: a token may not hold more than its share of the
  // gateway's connections, however it tunnels.
  const release = ctx.tunnelSlots.take(facts.jti);
  if (release === null) {
    return refuse(
      'too_many_tunnels',
      `at most ${ctx.tunnelSlots.perToken} open tunnels per token`,
      facts,
      read,
    );
  }
  if (inspect) return { kind: 'inspect', facts, read, release };
  if (verdict.verdict === 'deny') throw new Error('unreachable: a denied CONNECT is refused above');
  return { kind: 'tunnel', facts, read, rule: verdict.rule, address: verdict.address, release };
}

/** A request inside an inspected tunnel: the tunnel's token, the tunnel's origin only. */
async function evaluateInside(
  ctx: EvaluationContext,
  request: ProxyRequest,
  inside: NonNullable<ProxyRequest['inside']>,
): Promise<Outcome> {
  const { tunnel, scheme } = inside;
  const { facts } = tunnel;
  const before = tokenLapsed(ctx.live, facts, Math.floor(ctx.now().getTime() / 1000));
  if (before !== null) return { kind: 'cut', facts, problem: before };
  if (request.hosts.length === 0 && request.http11) {
    return refuse('missing_host', 'an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)', facts, null);
  }
  const url = request.url;
  const absolute = /^https?:\/\//i.test(url);
  const named = absolute
    ? [url.replace(/^https?:\/\/([^/?#]*).*$/is, '$1'), ...request.hosts]
    : request.hosts;
  // The SNI and every inner Host must name the CONNECT origin (threat: a tunnel opened to a
  // granted origin used to talk to another one, e.g. domain fronting).
  if (named.some((h) => !namesTunnelHost(tunnel, stripPort(h)))) {
    return {
      kind: 'refuse',
      reason: 'sni_mismatch',
      detail: null,
      facts,
      read: null,
      destination: tunnel.authority,
    };
  }
  // Always the tunnel's own origin: an absolute-form target inside names its host (checked above)
  // but never picks another scheme or port.
  const path = absolute ? url.replace(/^https?:\/\/[^/?#]*/i, '') : url;
  const read = readAbsoluteTarget(
    request.method,
    `${scheme}://${tunnel.authority}${path.startsWith('/') ? path : `/${path}`}`,
    [],
  );
  if (!read.ok) return refuse(read.reason, read.detail, facts, null);
  const verdict = await judge(ctx, facts, read.target, false);
  // As outside: the lookup may have outlasted the token.
  const nowSeconds = Math.floor(ctx.now().getTime() / 1000);
  const lapsed = tokenLapsed(ctx.live, facts, nowSeconds);
  if (lapsed !== null) return { kind: 'cut', facts, problem: lapsed };
  if (verdict.verdict === 'deny') return refuseVerdict(verdict, facts, read);
  return {
    kind: 'forward',
    facts,
    read,
    rule: verdict.rule,
    address: verdict.address,
    // Wound down between requests near its token's expiry: the answer says `Connection: close` and
    // the client sends its next request on a new tunnel, opened with a fresh token (`reins run`
    // hands one out before this window). Otherwise the tunnel would be cut at expiry, perhaps under
    // a request the client had just sent.
    windDown: facts.exp - nowSeconds <= TUNNEL_WIND_DOWN_SECONDS,
  };
}

/** The refusal of a denied verdict, with its Retry-After when a budget stopped it. */
function refuseVerdict(
  verdict: Extract<Verdict, { verdict: 'deny' }>,
  facts: TokenFacts,
  read: Read,
): Outcome {
  const { reason, detail, retryAfter } = verdict;
  return retryAfter === undefined
    ? refuse(reason, detail, facts, read)
    : { kind: 'refuse', reason, detail, facts, read, retryAfter };
}

function refuse(
  reason: Reason,
  detail: string | null,
  facts: TokenFacts | null,
  read: Read | null,
  problem?: AuthProblem,
): Outcome {
  return { kind: 'refuse', reason, detail, facts, read, problem };
}

/**
 * Whether a name the client sent inside the tunnel (SNI, or a Host header's host) names the
 * CONNECT host. Compared after the grammar's normalisation (case, trailing dot, IDNA, address
 * spellings), so `API.example.com.` is the same host and `0x7f.1` is 127.0.0.1.
 */
export function namesTunnelHost(tunnel: Tunnel, name: string): boolean {
  const host = normaliseTargetHost(name);
  const expected = tunnel.target.host;
  if (host === null) return false;
  if (host.kind === 'name' && expected.kind === 'name') return host.name === expected.name;
  if (host.kind === 'ip' && expected.kind === 'ip') return host.bytes.join('.') === expected.bytes.join('.');
  return false;
}

/** `host[:port]` → host (IPv6 keeps its brackets). */
export function stripPort(authority: string): string {
  const text = authority.trim();
  if (text.startsWith('[')) return text.slice(0, text.indexOf(']') + 1);
  const colon = text.lastIndexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}
