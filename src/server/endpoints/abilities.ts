// Who may introspect and revoke which token, as @casl/ability rules (pure: no I/O).
//
// Threat: a gateway or agent of one tenant learning about, or killing, another tenant's tokens.
// Tenants share one deployment, so every ledger answer passes through these rules.
//
// - introspect: any authenticated client of the token's tenant (gateways and apps of that
//   tenant need to ask about any of its agents' tokens);
// - revoke: only the client the token was issued to (RFC 7009 §2.1: "verifies whether the token
//   was issued to the client making the revocation request"). Tenant-wide kills are operator
//   actions (quarantine), not a client's.
import {
  AbilityBuilder,
  createMongoAbility,
  type ForcedSubject,
  type MongoAbility,
  subject,
} from '@casl/ability';

export type TokenAction = 'introspect' | 'revoke';

/** The authenticated client asking. */
export interface Caller {
  readonly clientId: string;
  readonly tenant: string;
}

/** What the rules look at: the ledger's record of the token. */
export interface TokenFacts {
  readonly tenant: string;
  readonly client_id: string;
}

type Subjects = 'Token' | (TokenFacts & ForcedSubject<'Token'>);
export type TokenAbility = MongoAbility<[TokenAction, Subjects]>;

export function abilityFor(caller: Caller): TokenAbility {
  const { can, build } = new AbilityBuilder<TokenAbility>(createMongoAbility);
  can('introspect', 'Token', { tenant: caller.tenant });
  can('revoke', 'Token', { tenant: caller.tenant, client_id: caller.clientId });
  return build();
}

/** Whether `caller` may perform `action` on the token the ledger describes as `facts`. */
export function may(ability: TokenAbility, action: TokenAction, facts: TokenFacts): boolean {
  return ability.can(action, subject('Token', { tenant: facts.tenant, client_id: facts.client_id }));
}
