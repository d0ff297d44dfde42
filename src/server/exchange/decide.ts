// The token-exchange decision (RFC 8693; SPEC.md, "Grants"). PURE: no I/O, no clock (`now`
// comes in), never throws; a refusal is a value with the OAuth error to answer.
//
// Input: who asks (the authenticated client), who acts (the agent: the client itself, or the
// one its actor_token proves), what the subject token proved (a user of a trusted issuer and
// the rights the tenant's user rules give them, or an earlier reins token), and what was asked.
// Output: the delegated token's egress, `sub`, `act`, lifetime and parent.
//
// The steps, each one check:
//   1. sameTenant       subject, actor and client are of one tenant: nothing crosses tenants;
//   2. notAnAgent       a user subject never carries an agent's client id (RFC 9700 §4.15);
//   3. mayDelegate      an app obtains tokens only for the agents its policy lists;
//   4. chainOf          the previous actor's `may_act` lists the new actor; depth is capped;
//   5. available        user rights ∩ agent grant ∩ tenant ceiling ∩ subject token's grant —
//                       intersections only, so a delegated token can only narrow, never widen;
//   6. narrowGrant      ∩ what was asked (scope, authorization_details); over-asking is refused;
//   7. lifetime         min(subject's expiry, the agent's lifetime, the tenant's maximum).
import { intersectRules, parseEgressDetails, type Rule } from '../../egress/index.ts';
import { DEFAULT_TOKEN_TTL } from '../../policy/index.ts';
import type { AgentModel, TenantModel } from '../../policy/model.ts';
import type { RegisteredClient } from '../clients/metadata.ts';
import { type Issuance, type IssuanceRequest, narrowGrant } from '../provider/issuance.ts';
import { policyRules } from '../provider/policy-rules.ts';
import { type ActClaim, actClaimOf } from './chain.ts';
import type { UserRights } from './user-rights.ts';

export type ExchangeError =
  | 'invalid_request'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'invalid_target'
  | 'invalid_scope'
  | 'invalid_authorization_details';

/** What the verified subject token says. */
export type ExchangeSubject =
  | {
      /** A user's token from a trusted issuer of the client's tenant. */
      readonly kind: 'user';
      /** The user (the issuer's subject claim). */
      readonly sub: string;
      readonly exp: number;
      readonly rights: UserRights;
    }
  | {
      /** A live token of this server: a client-credentials token of an agent, or a delegated one. */
      readonly kind: 'reins';
      readonly jti: string;
      readonly tenant: string;
      readonly sub: string;
      readonly exp: number;
      /** Its `act` chain, newest first; [] for a client-credentials token (whose `sub` is the agent). */
      readonly actors: readonly string[];
      /** Its `authorization_details`, as carried in the token. */
      readonly authorizationDetails: unknown;
    };

export interface ExchangeInput {
  /** The authenticated client. */
  readonly client: RegisteredClient;
  /** The acting agent (the client, or the agent its actor_token proves) and its tenant. */
  readonly actor: { readonly tenant: string; readonly agent: AgentModel };
  readonly subject: ExchangeSubject;
  /** Whether the subject's `sub` is a client id of this deployment (only asked for user subjects). */
  readonly subjectIsClientId: boolean;
  readonly request: IssuanceRequest;
  /** Seconds since the epoch. */
  readonly now: number;
}

/** Issued egress, authorization_details, scope and ttl as for client credentials, plus delegation. */
export type Exchange =
  | (Extract<Issuance, { ok: true }> & {
      readonly sub: string;
      /** Newest first; the new actor is the first. */
      readonly actors: readonly string[];
      readonly act: ActClaim;
      /** The subject token's jti when it is one of ours: revoking it revokes this token. */
      readonly parentJti: string | null;
    })
  | { readonly ok: false; readonly error: ExchangeError; readonly detail: string };

type Refusal = Extract<Exchange, { ok: false }>;

export function decideExchange(input: ExchangeInput): Exchange {
  const tenant = input.client.tenant;
  const actor = input.actor.agent;
  const { subject } = input;

  const tenancy = sameTenant(input);
  if (tenancy) return tenancy;
  if (subject.kind === 'user' && input.subjectIsClientId) {
    return refuse(
      'invalid_grant',
      `the subject token names '${subject.sub}', which is a client id here: a user cannot share a name with an agent or app`,
    );
  }
  const delegation = mayDelegate(input.client, actor.clientId);
  if (delegation) return delegation;

  const chain = chainOf(tenant, subject, actor.clientId);
  if (!chain.ok) return chain;

  const available = availableEgress(tenant, actor, subject);
  if (!available.ok) return available;

  const narrowed = narrowGrant(tenant, actor.integrations, available.rules, input.request, {
    within: "what this delegation allows (the subject's rights ∩ the agent's grant)",
    cutBy: "what this delegation allows (the subject's rights ∩ the agent's grant)",
  });
  if (!narrowed.ok) return narrowed;

  const ttl = Math.min(subject.exp - input.now, actor.tokenTtl || DEFAULT_TOKEN_TTL, tenant.maxTokenTtl);
  if (ttl <= 0) return refuse('invalid_grant', 'the subject token has expired');

  return {
    ...narrowed,
    ttl,
    // The TTL is counted from `now`; the token is minted a moment later, perhaps in the next
    // second. Its exp is capped here so that it never outlives its subject token.
    notAfter: subject.exp,
    sub: subject.sub,
    actors: chain.actors,
    act: actClaimOf(chain.actors) as ActClaim,
    parentJti: subject.kind === 'reins' ? subject.jti : null,
  };
}

/** Subject, actor and client belong to one tenant; the tenant is immutable along a chain. */
function sameTenant(input: ExchangeInput): Refusal | null {
  const tenant = input.client.tenant.id;
  if (input.actor.tenant !== tenant) {
    return refuse('invalid_grant', `the acting agent belongs to another tenant; nothing crosses tenants`);
  }
  if (input.subject.kind === 'reins' && input.subject.tenant !== tenant) {
    return refuse('invalid_grant', `the subject token belongs to another tenant; nothing crosses tenants`);
  }
  return null;
}

/** An app may act for users only through the agents its policy lists in `may_delegate_to`. */
function mayDelegate(client: RegisteredClient, agent: string): Refusal | null {
  if (client.kind === 'agent') return null;
  if (client.app.mayDelegateTo.includes(agent)) return null;
  return refuse(
    'unauthorized_client',
    `app '${client.app.clientId}' may not delegate to agent '${agent}'; list it in the app's may_delegate_to`,
  );
}

type Chain = { readonly ok: true; readonly actors: readonly string[] } | Refusal;

/**
 * The new chain: the new actor in front of the subject token's chain. Extending a reins token,
 * the agent holding it (its newest actor, or for a client-credentials token the agent itself)
 * must list the new actor in `may_act`.
 */
function chainOf(tenant: TenantModel, subject: ExchangeSubject, actor: string): Chain {
  const prior = subject.kind === 'reins' ? subject.actors : [];
  if (subject.kind === 'reins') {
    const holder = prior[0] ?? subject.sub;
    const holding = tenant.agents.find((a) => a.clientId === holder);
    if (holding === undefined) {
      return refuse('invalid_grant', `the subject token's agent '${holder}' is no longer registered`);
    }
    if (!holding.mayAct.includes(actor)) {
      return refuse(
        'invalid_grant',
        `agent '${holder}' may not delegate to '${actor}'; list it in '${holder}' may_act`,
      );
    }
  }
  const actors = [actor, ...prior];
  if (actors.length > tenant.delegationDepth) {
    return refuse(
      'invalid_grant',
      `the delegation chain would be ${actors.length} actors long; tenant '${tenant.id}' allows ${tenant.delegationDepth}`,
    );
  }
  return { ok: true, actors };
}

type Available = { readonly ok: true; readonly rules: readonly Rule[] } | Refusal;

/** User rights (or the subject token's grant) ∩ the agent's effective grant ∩ the tenant ceiling. */
function availableEgress(tenant: TenantModel, actor: AgentModel, subject: ExchangeSubject): Available {
  let rules = policyRules(actor.effectiveEgress);
  // effectiveEgress is already ∩ ceiling; intersecting again costs little and keeps the
  // ceiling a bound here even if a model were built without it.
  if (tenant.ceiling !== null) rules = intersectRules(rules, policyRules(tenant.ceiling));
  if (subject.kind === 'user') {
    if (subject.rights.matched.length === 0) {
      return refuse(
        'invalid_grant',
        `no user rule of tenant '${tenant.id}' matches this user, so they have no rights to delegate`,
      );
    }
    rules = intersectRules(rules, policyRules(subject.rights.egress));
  } else {
    const details = Array.isArray(subject.authorizationDetails) ? subject.authorizationDetails : null;
    const granted = details === null ? null : parseEgressDetails(details);
    if (granted === null || !granted.ok) {
      return refuse('invalid_grant', 'the subject token carries no readable egress grant');
    }
    rules = intersectRules(rules, granted.rules);
  }
  if (rules.length === 0) {
    return refuse(
      'invalid_target',
      subject.kind === 'user'
        ? `the user's rights and agent '${actor.clientId}''s grant have no destination in common`
        : `the subject token's grant and agent '${actor.clientId}''s grant have no destination in common`,
    );
  }
  return { ok: true, rules };
}

function refuse(error: ExchangeError, detail: string): Refusal {
  return { ok: false, error, detail };
}
