// A client authenticates only with the method its policy declares (`auth.method`, the client's
// `token_endpoint_auth_method`), at the token, introspection and revocation endpoints alike.
//
// Threat: oidc-provider treats client_secret_basic and client_secret_post as one family (either
// presentation is accepted for a client registered with either). A client declared
// client_secret_basic keeps its secret out of request bodies, which end up in access logs, WAF
// and proxy captures and error reports far more often than Authorization headers do; accepting
// the secret in the body anyway means the declaration protects nothing, and an operator reading
// the policy cannot know how the secret really travels. The other way round, a post client
// whose secret turns up in an Authorization header is not the client the policy describes.
// private_key_jwt is already bound by oidc-provider (a secret is refused for it, an assertion
// for a secret client).
//
// oidc-provider has no hook between "which client" and "does the secret match", so the check
// sits in the Client model's compareClientSecret, which oidc-provider calls only from client
// authentication, for exactly these two methods, after the client is found and before the
// secret is compared: a mismatch is refused as `invalid_client` whatever the secret.
import Provider, { errors } from 'oidc-provider';

export type SecretMethod = 'client_secret_basic' | 'client_secret_post';

/** How a request presented its client secret: an Authorization header (Basic) or the form body. */
export function presentedSecretMethod(authorization: string | undefined): SecretMethod {
  // oidc-provider refuses a request carrying both ("only one mechanism") before this point.
  return authorization !== undefined && authorization !== '' ? 'client_secret_basic' : 'client_secret_post';
}

/** Why a secret presented by `presented` is refused for a client declared `declared`; null when it is not. */
export function secretMethodMismatch(
  clientId: string,
  declared: string | undefined,
  presented: SecretMethod,
): string | null {
  if (declared === presented) return null;
  const how: Record<SecretMethod, string> = {
    client_secret_basic: 'in the Authorization header (HTTP Basic)',
    client_secret_post: 'as client_id and client_secret in the form body',
  };
  const instead =
    declared === 'client_secret_basic' || declared === 'client_secret_post'
      ? `send it ${how[declared]}`
      : `authenticate with ${String(declared)}`;
  return (
    `client '${clientId}' is declared ${String(declared)} in its policy and authenticates only that way: ` +
    `the secret was sent ${how[presented]}; ${instead}`
  );
}

/**
 * oidc-provider's `invalid_client` (401, with WWW-Authenticate when the caller used Basic),
 * saying what to fix. InvalidClientAuth's own description is always "client authentication
 * failed" (its argument goes to the log only), which does not tell a client what is wrong.
 */
export function clientAuthRefused(description: string): InstanceType<typeof errors.InvalidClientAuth> {
  const refusal = new errors.InvalidClientAuth(description);
  refusal.error_description = description;
  return refusal;
}

/** Makes every client of `provider` authenticate with its declared secret method. Call once. */
export function bindDeclaredSecretMethod(provider: Provider): void {
  const prototype = provider.Client.prototype;
  const compare = prototype.compareClientSecret;
  prototype.compareClientSecret = function compareDeclared(this: typeof prototype, actual: string) {
    // Provider.ctx is the request being served (oidc-provider's AsyncLocalStorage); without one
    // there is no way to tell how the secret came, so it is refused.
    const authorization = Provider.ctx?.headers.authorization;
    const mismatch =
      Provider.ctx === undefined
        ? 'client authentication outside a request'
        : secretMethodMismatch(this.clientId, this.clientAuthMethod, presentedSecretMethod(authorization));
    if (mismatch !== null) throw clientAuthRefused(mismatch);
    return compare.call(this, actual);
  };
}
