// The shell around decide(): token, then target, then the decision, then (only for a name the
// token allows) one DNS lookup and the decision again with the answers. Small on purpose; it
// returns what happened and the proxy answers, audits and counts it.
import type { Opening, Target } from '../egress/index.ts';
import { type BudgetStop, type Decision, decide } from './decide.ts';
import type { GatewayChange } from './live-state.ts';
import type { GatewayPolicyView } from './policy-view.ts';
import { type CredentialProblem, proxyCredential } from './proxy-auth.ts';
import type { DenyReason } from './reasons.ts';
import type { TokenFacts, TokenProblem, TokenVerifier } from './token.ts';

/** What the gateway follows live (LiveState satisfies it). */
export interface LiveView {
  isRevoked(jti: string): boolean;
  isQuarantined(tenant: string, agent: string): boolean;
  /** What stops the agent now because of its budget (live-memory.ts); null: nothing. */
  budgetStop(
    tenant: string,
    agent: string,
    now: number,
  ): (BudgetStop & { readonly retryAfter: number }) | null;
  readonly policy: GatewayPolicyView;
  onChange(listener: (change: GatewayChange) => void): () => void;
}

/** DNS: every address a name resolves to (canonical text), [] when it does not resolve. */
export type Resolver = (name: string) => Promise<readonly string[]>;

export interface CheckContext {
  readonly verifier: TokenVerifier;
  readonly live: LiveView;
  readonly openings: readonly Opening[];
  readonly resolve: Resolver;
}

/**
 * Why a request's credentials were refused (a 407): the credentials themselves (missing,
 * malformed, several headers), the token (malformed, invalid, expired, wrong audience, …, as the
 * verifier says), or revoked. Named in the 407's reason phrase and kept in the audit row.
 */
export type AuthProblem = CredentialProblem | TokenProblem | 'revoked';

export type Authenticated =
  | { readonly ok: true; readonly facts: TokenFacts }
  | { readonly ok: false; readonly problem: AuthProblem; readonly detail: string };

/** The token of a request: present, verified, unexpired, for this gateway, not revoked. */
export async function authenticate(
  ctx: CheckContext,
  proxyAuthorization: readonly string[],
): Promise<Authenticated> {
  const credential = proxyCredential(proxyAuthorization);
  if (!credential.ok) return { ok: false, problem: credential.problem, detail: credential.detail };
  const checked = await ctx.verifier.verify(credential.token);
  if (!checked.ok) return { ok: false, problem: checked.problem, detail: checked.detail };
  // Every request, not only the first: revocation must bite within a second.
  if (ctx.live.isRevoked(checked.facts.jti)) {
    return { ok: false, problem: 'revoked', detail: 'the token has been revoked' };
  }
  return { ok: true, facts: checked.facts };
}

/**
 * Whether a token authenticated before an await (a DNS lookup) is still good now: revoked or
 * expired meanwhile, it must not go out (threat: a lookup held open by the agent's own DNS server
 * to outlast a revocation).
 */
export function tokenLapsed(
  live: LiveView,
  facts: TokenFacts,
  nowSeconds: number,
): 'revoked' | 'expired' | null {
  if (live.isRevoked(facts.jti)) return 'revoked';
  if (facts.exp <= nowSeconds) return 'expired';
  return null;
}

/**
 * tokenLapsed, or the agent quarantined: whether what a token holds open (a tunnel, a kept-alive
 * connection) may go on. One answer for every place that asks, so none forgets a check.
 */
export function standingLost(
  live: LiveView,
  facts: TokenFacts,
  nowSeconds: number,
): 'revoked' | 'expired' | 'quarantined' | null {
  return tokenLapsed(live, facts, nowSeconds) ?? (quarantinedIn(live, facts) ? 'quarantined' : null);
}

/**
 * Whether an agent the token acts in is quarantined: its acting agent, or one earlier in its
 * chain (SPEC.md: "every live token it acts in is refused").
 */
export function quarantinedIn(live: LiveView, facts: TokenFacts): boolean {
  if (live.isQuarantined(facts.tenant, facts.agent)) return true;
  const others = facts.alsoActing;
  return (
    others !== undefined &&
    others.length > 0 &&
    others.some((agent) => live.isQuarantined(facts.tenant, agent))
  );
}

export type Verdict =
  | { readonly verdict: 'allow'; readonly rule: string; readonly address: string; readonly tunnel: boolean }
  | {
      readonly verdict: 'deny';
      readonly reason: DenyReason;
      readonly detail: string;
      /** Seconds until a budget stop lifts (Retry-After), for budget_exceeded/budget_unaccounted. */
      readonly retryAfter?: number;
    };

/**
 * Whether an open tunnel's grant still holds after a change (a policy apply that removed the
 * destination, a new owner, a quarantine): decide() again, without a new lookup; the address was
 * checked when the tunnel opened.
 */
export function tunnelStillAllowed(ctx: CheckContext, facts: TokenFacts, target: Target): boolean {
  const decision = decide(decisionInput(ctx, facts, target, true));
  return decision.verdict !== 'deny';
}

function decisionInput(ctx: CheckContext, facts: TokenFacts, target: Target, connect: boolean) {
  const policy = ctx.live.policy;
  return {
    token: { tenant: facts.tenant, agent: facts.agent, egress: facts.egress },
    registration: policy.registration(facts.tenant, facts.agent) ?? null,
    quarantined: quarantinedIn(ctx.live, facts),
    budget: ctx.live.budgetStop(facts.tenant, facts.agent, Date.now()),
    ceiling: policy.ceiling(facts.tenant),
    ownership: policy.ownership(facts.tenant),
    target,
    connect,
    openings: ctx.openings,
  };
}

/** decide(), resolving the name once when the token allows it. */
export async function judge(
  ctx: CheckContext,
  facts: TokenFacts,
  target: Target,
  connect: boolean,
): Promise<Verdict> {
  const input = decisionInput(ctx, facts, target, connect);
  let decision: Decision = decide(input);
  if (decision.verdict === 'resolve') {
    // Resolve once; the answers are checked and the checked one is dialled (no second lookup:
    // DNS rebinding could otherwise swap the answer between check and connect).
    let addresses: readonly string[];
    try {
      addresses = await ctx.resolve(decision.name);
    } catch {
      addresses = [];
    }
    // Decided again on live state as it is now, not as it was before the lookup: a policy apply
    // or a quarantine that landed while the name resolved (a lookup the agent's own DNS can hold
    // for seconds) must already bite.
    decision = decide({ ...decisionInput(ctx, facts, target, connect), addresses });
  }
  if (decision.verdict === 'resolve') {
    return { verdict: 'deny', reason: 'unresolvable', detail: 'the name could not be resolved' };
  }
  if (decision.verdict === 'deny' && input.budget != null && decision.reason === input.budget.reason) {
    return { ...decision, retryAfter: input.budget.retryAfter };
  }
  return decision;
}
