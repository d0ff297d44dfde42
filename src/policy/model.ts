// The compiled policy: what apply writes to the database and what the server, the gateway and
// plan read back. Everything is resolved and canonical: integration names are expanded, rules
// are in formatRule's canonical text, lists are sorted, and every grant already carries its
// effective egress (grant ∩ tenant ceiling), so consumers never re-derive it.
// Plain JSON data: the same value round-trips through the database unchanged.
import type { MonitoringPolicy } from '../monitor/policy.ts';
import type { AuthMethod, JwksData } from './shape.ts';

export interface PolicyModel {
  /** Sorted by id. */
  readonly tenants: readonly TenantModel[];
}

export interface TenantModel {
  readonly id: string;
  /** Seconds; no token of this tenant lives longer. */
  readonly maxTokenTtl: number;
  /** Longest act chain. */
  readonly delegationDepth: number;
  /** Canonical rules every grant is intersected with; null when the tenant has no ceiling. */
  readonly ceiling: readonly string[] | null;
  /** Destinations this tenant declares as its own. */
  readonly owns: readonly string[];
  /** Sorted by tenant: what each other tenant's agents may reach of what this one owns. */
  readonly federation: readonly FederationModel[];
  readonly integrations: readonly IntegrationModel[];
  readonly agents: readonly AgentModel[];
  readonly apps: readonly AppModel[];
  readonly trustedIssuers: readonly TrustedIssuerModel[];
  readonly users: readonly UserRightModel[];
  /** null: the tenant declares no `monitoring:` (not monitored). */
  readonly monitoring: MonitoringModel | null;
}

/**
 * The tenant's `monitoring:` (SPEC.md, "Monitoring and containment"): durations in milliseconds,
 * sizes in bytes; a detection the tenant does not declare is absent (never `undefined`, so the
 * value round-trips through the database's jsonb unchanged).
 */
export interface MonitoringModel extends MonitoringPolicy {
  /** Where alerts are sent; null: stored and listed only. */
  readonly webhook: WebhookModel | null;
}

export interface WebhookModel {
  readonly url: string;
  /** The environment variable holding the HMAC key of X-Reins-Signature; never the key itself. */
  readonly secretEnv: string;
}

export interface FederationModel {
  readonly tenant: string;
  readonly egress: readonly string[];
}

export interface IntegrationModel {
  readonly name: string;
  readonly rules: readonly string[];
}

/** Exactly one of jwks / jwksUri (private_key_jwt) or secretEnv / secretHash (client secrets). */
export interface ClientAuthModel {
  readonly method: AuthMethod;
  readonly jwks: JwksData | null;
  readonly jwksUri: string | null;
  readonly secretEnv: string | null;
  readonly secretHash: string | null;
}

export interface AgentModel {
  readonly clientId: string;
  readonly description: string | null;
  readonly auth: ClientAuthModel;
  /** Seconds: the agent's own setting (default 300), never above the tenant's maximum. */
  readonly tokenTtl: number;
  readonly mayAct: readonly string[];
  /** Integration names the grant used (for `scope=egress:<name>`). */
  readonly integrations: readonly string[];
  /** The registered grant, integrations expanded, simplified. */
  readonly egress: readonly string[];
  /** egress ∩ ceiling: what the agent may ever reach. */
  readonly effectiveEgress: readonly string[];
  /** null: no budget. */
  readonly budget: BudgetModel | null;
}

/** An agent's `budget:`, counted across every gateway; null: that limit is not set. */
export interface BudgetModel {
  readonly requestsPerMinute: number | null;
  /** Bytes. */
  readonly bytesOutPerHour: number | null;
}

export interface AppModel {
  readonly clientId: string;
  readonly description: string | null;
  readonly auth: ClientAuthModel;
  readonly mayDelegateTo: readonly string[];
}

export interface TrustedIssuerModel {
  readonly issuer: string;
  readonly jwks: JwksData | null;
  readonly jwksUri: string | null;
  /** Accepted aud values; [] accepts any audience. */
  readonly audience: readonly string[];
  readonly subjectClaim: string;
  readonly groupsClaim: string;
  readonly rolesClaim: string;
  /**
   * JWS algorithms a subject token from this issuer may be signed with, sorted, never empty:
   * verification is pinned to them, so the token's own `alg` header never picks (RFC 8725 §3.1).
   */
  readonly algorithms: readonly string[];
}

/** null: not a condition. A list holds when the token's claim has any of its values. */
export interface UserMatchModel {
  readonly issuer: string | null;
  readonly sub: readonly string[] | null;
  readonly email: readonly string[] | null;
  readonly groups: readonly string[] | null;
  readonly roles: readonly string[] | null;
  readonly claims: Readonly<Record<string, readonly string[]>> | null;
}

export interface UserRightModel {
  /** The rule's `name`, or a rendering of its match (e.g. `groups=finance`). Unique in the tenant. */
  readonly id: string;
  readonly match: UserMatchModel;
  readonly integrations: readonly string[];
  readonly egress: readonly string[];
  readonly effectiveEgress: readonly string[];
}

/** Defaults (SPEC.md, "Tokens": five-minute tokens; "Grants": chains capped at 3). */
export const DEFAULT_MAX_TOKEN_TTL = 3600;
export const DEFAULT_TOKEN_TTL = 300;
export const DEFAULT_DELEGATION_DEPTH = 3;
export const DEFAULT_SUBJECT_CLAIM = 'sub';
export const DEFAULT_GROUPS_CLAIM = 'groups';
export const DEFAULT_ROLES_CLAIM = 'roles';

/**
 * The JWS algorithms a trusted issuer may be allowed (RFC 7518 §3.1, RFC 8037): asymmetric only.
 * Never `none` (an unsigned token anyone can write) and never HS* (an HMAC keyed with the
 * issuer's *public* key verifies a token anyone holding that public key has "signed"; RFC 8725
 * §2.1, §3.1). schema/policy.schema.json lists the same values.
 */
export const ISSUER_ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'PS256',
  'PS384',
  'PS512',
  'RS256',
  'RS384',
  'RS512',
] as const;

/**
 * When an issuer names no `algorithms`: what identity providers sign with in practice (ES*,
 * EdDSA, RS256 as in OIDC Core §3.1.3.7, PS256), sorted as the model keeps it. Migration
 * 003_issuer_algorithms.sql fills issuers applied before it with the same list.
 */
export const DEFAULT_ISSUER_ALGORITHMS: readonly string[] = [
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'PS256',
  'RS256',
];
