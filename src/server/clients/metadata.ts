// The applied policy's agents and apps as oidc-provider client metadata. PURE: secrets come in
// through `secretFor`, so nothing here reads the environment.
//
// - Agents and apps may use token exchange (RFC 8693): agents acting for a subject themselves,
//   apps naming the acting agent by actor_token. The exchange decision says who may do what.
// - Apps are also listed with client_credentials, only so that the refusal is RFC 6749's
//   `unauthorized_client`: oidc-provider answers a grant type missing from the metadata with
//   `invalid_request`. The token endpoint's issuance step refuses every non-agent
//   (SPEC.md, "Grants": apps cannot get egress tokens by client credentials), so no app ever
//   receives a token this way.
// - No client has response types or redirect URIs: reins has no authorization endpoint users
//   are sent to, so nothing can be obtained through the front channel.
import type { AdapterPayload, ClientAuthMethod } from 'oidc-provider';
import type { AgentModel, AppModel, ClientAuthModel, PolicyModel, TenantModel } from '../../policy/model.ts';
import { CLIENT_CREDENTIALS_GRANT, TOKEN_EXCHANGE_GRANT } from './grant-types.ts';

export type RegisteredClient =
  | { readonly kind: 'agent'; readonly tenant: TenantModel; readonly agent: AgentModel }
  | { readonly kind: 'app'; readonly tenant: TenantModel; readonly app: AppModel };

/** Every agent and app of the policy by client id (client ids are unique across tenants). */
export function indexClients(model: PolicyModel): Map<string, RegisteredClient> {
  const clients = new Map<string, RegisteredClient>();
  for (const tenant of model.tenants) {
    for (const agent of tenant.agents) clients.set(agent.clientId, { kind: 'agent', tenant, agent });
    for (const app of tenant.apps) clients.set(app.clientId, { kind: 'app', tenant, app });
  }
  return clients;
}

export function clientIdOf(client: RegisteredClient): string {
  return client.kind === 'agent' ? client.agent.clientId : client.app.clientId;
}

export function authOf(client: RegisteredClient): ClientAuthModel {
  return client.kind === 'agent' ? client.agent.auth : client.app.auth;
}

/**
 * oidc-provider metadata for one client. `secret` is the client secret to compare against for
 * the secret methods (resolved by the caller at lookup time, never stored).
 */
export function clientMetadata(client: RegisteredClient, secret: string | undefined): AdapterPayload {
  const auth = authOf(client);
  const metadata: AdapterPayload = {
    client_id: clientIdOf(client),
    token_endpoint_auth_method: auth.method as ClientAuthMethod,
    grant_types: [CLIENT_CREDENTIALS_GRANT, TOKEN_EXCHANGE_GRANT],
    response_types: [],
    redirect_uris: [],
    // Apps may narrow a delegated token with authorization_details too.
    authorization_details_types: ['egress'],
  };
  if (auth.method === 'private_key_jwt') {
    if (auth.jwksUri !== null) metadata.jwks_uri = auth.jwksUri;
    // oidc-provider's metadata types want mutable JWK arrays; the policy model is read-only.
    else if (auth.jwks !== null)
      metadata.jwks = structuredClone(auth.jwks) as unknown as AdapterPayload['jwks'];
  } else if (secret !== undefined) {
    metadata.client_secret = secret;
  }
  return metadata;
}
