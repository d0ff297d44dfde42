// RFC 8414 authorization server metadata (pure), derived from oidc-provider's OpenID discovery
// document so that endpoints and authentication methods are stated once, by oidc-provider,
// and only what reins actually serves is claimed.

/** The members of oidc-provider's document that mean the same under RFC 8414 §2. */
const COPIED = [
  'issuer',
  'token_endpoint',
  'jwks_uri',
  'token_endpoint_auth_methods_supported',
  'token_endpoint_auth_signing_alg_values_supported',
  'introspection_endpoint',
  'revocation_endpoint',
] as const;

/** Grants that work (SPEC.md, "Grants"): client credentials for agents, RFC 8693 token exchange. */
export const GRANT_TYPES_SUPPORTED = [
  'client_credentials',
  'urn:ietf:params:oauth:grant-type:token-exchange',
] as const;

/**
 * `scopes_supported` is left out on purpose: the scopes are `egress:<integration>` per tenant,
 * and one public document listing them would tell every tenant the others' integration names.
 */
export function authorizationServerMetadata(
  openid: Readonly<Record<string, unknown>>,
  extra: ExtraMetadata = {},
): Record<string, unknown> {
  const metadata: Record<string, unknown> = {};
  for (const name of COPIED) {
    if (openid[name] !== undefined) metadata[name] = openid[name];
  }
  // oidc-provider authenticates clients the same way at every endpoint (one clientAuthMethods
  // list), so it states the methods once; RFC 8414 has no default for the other endpoints,
  // so they are stated for each.
  for (const endpoint of ['introspection', 'revocation']) {
    for (const suffix of ['auth_methods_supported', 'auth_signing_alg_values_supported']) {
      const value = openid[`token_endpoint_${suffix}`];
      if (value !== undefined) metadata[`${endpoint}_endpoint_${suffix}`] = value;
    }
  }
  // RFC 8414 §2 makes response_types_supported REQUIRED; reins has no authorization endpoint
  // in use (every client registers `response_types: []`), so the honest answer is empty.
  metadata.response_types_supported = [];
  metadata.grant_types_supported = [...GRANT_TYPES_SUPPORTED];
  metadata.authorization_details_types_supported = ['egress'];
  return withExtraMetadata(metadata, extra);
}

/**
 * Members the process running the server adds to both discovery documents, e.g.
 * `reins_interception_ca_uri` (the gateway's CA, which src/server does not know of: src/runtime
 * passes it in). RFC 8414 §2 lets a server publish members of its own.
 */
export type ExtraMetadata = Readonly<Record<string, string>>;

/** `document` with `extra` added; a member the document already states is never replaced. */
export function withExtraMetadata(
  document: Readonly<Record<string, unknown>>,
  extra: ExtraMetadata,
): Record<string, unknown> {
  const result: Record<string, unknown> = { ...document };
  for (const [name, value] of Object.entries(extra)) {
    if (result[name] === undefined) result[name] = value;
  }
  return result;
}
