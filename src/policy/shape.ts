// The data of one policy file once it conforms to schema/policy.schema.json (SPEC.md, "Policy
// file shape"). Keys stay snake_case as written in YAML; only data that passed the schema is
// ever typed as this.
import type { Response } from '../monitor/policy.ts';

export type AuthMethod = 'private_key_jwt' | 'client_secret_basic' | 'client_secret_post';

export interface JwkData {
  readonly kty: string;
  readonly kid?: string;
  readonly [member: string]: unknown;
}

export interface JwksData {
  readonly keys: readonly JwkData[];
}

export interface AuthData {
  readonly method: AuthMethod;
  readonly jwks?: JwksData;
  readonly jwks_uri?: string;
  readonly secret_env?: string;
  readonly secret_hash?: string;
  /** Examples only: the published plaintext of secret_hash (examples.ts). */
  readonly example_secret?: string;
}

export interface SettingsData {
  readonly max_token_ttl?: number;
  readonly delegation_depth?: number;
  readonly egress_ceiling?: readonly string[];
}

export interface FederationData {
  readonly tenant: string;
  readonly egress: readonly string[];
  readonly description?: string;
}

export interface AgentData {
  readonly description?: string;
  readonly auth: AuthData;
  readonly egress: readonly string[];
  readonly token_ttl?: number;
  readonly may_act?: readonly string[];
  readonly budget?: BudgetData;
}

/** Both optional, at least one (the schema's minProperties). */
export interface BudgetData {
  readonly requests_per_minute?: number;
  /** A size: `50MB`, `500kB`, `1000` or a whole number of bytes. */
  readonly bytes_out_per_hour?: string | number;
}

/** One of RESPONSES (src/monitor/policy.ts); the schema's `response` enum lists the same. */
export type ResponseData = Response;

export interface MonitoringData {
  /** A duration: `24h`, `30m`, `0s`. */
  readonly learning_period?: string;
  readonly detections?: DetectionsData;
  readonly alerts?: { readonly webhook: WebhookData };
}

export interface DetectionsData {
  readonly new_destination?: { readonly response: ResponseData };
  readonly destination_burst?: {
    readonly new_hosts: number;
    readonly within: string;
    readonly response: ResponseData;
  };
  readonly denial_spike?: {
    readonly denials: number;
    readonly within: string;
    readonly response: ResponseData;
  };
  readonly bytes_out_spike?: {
    readonly factor: number;
    readonly within: string;
    readonly response: ResponseData;
  };
  readonly forbidden_address?: { readonly response: ResponseData };
  readonly new_method?: { readonly response: ResponseData };
}

export interface WebhookData {
  readonly url: string;
  readonly secret_env: string;
}

export interface AppData {
  readonly description?: string;
  readonly auth: AuthData;
  readonly may_delegate_to?: readonly string[];
}

export type StringOrList = string | readonly string[];

export interface IssuerData {
  readonly issuer: string;
  readonly description?: string;
  readonly jwks?: JwksData;
  readonly jwks_uri?: string;
  readonly audience?: StringOrList;
  readonly subject_claim?: string;
  readonly groups_claim?: string;
  readonly roles_claim?: string;
  readonly algorithms?: readonly string[];
}

export interface UserMatchData {
  readonly issuer?: string;
  readonly sub?: StringOrList;
  readonly email?: StringOrList;
  readonly groups?: StringOrList;
  readonly roles?: StringOrList;
  readonly claims?: Readonly<Record<string, StringOrList>>;
}

export interface UserRightData {
  readonly name?: string;
  readonly description?: string;
  readonly match: UserMatchData;
  readonly egress: readonly string[];
}

export interface PolicyFileData {
  readonly tenant: string;
  readonly description?: string;
  readonly settings?: SettingsData;
  readonly owns?: readonly string[];
  readonly federation?: readonly FederationData[];
  readonly integrations?: Readonly<Record<string, readonly string[]>>;
  readonly agents?: Readonly<Record<string, AgentData>>;
  readonly apps?: Readonly<Record<string, AppData>>;
  readonly trusted_issuers?: readonly IssuerData[];
  readonly users?: readonly UserRightData[];
  readonly monitoring?: MonitoringData;
}
