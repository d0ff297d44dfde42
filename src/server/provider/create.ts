// oidc-provider 9.13.3 configured as reins' authorization server (SPEC.md, "Tokens", "Grants").
// Only what reins uses is switched on: client credentials for agents, resource indicators
// (RFC 8707) with the gateway as the one resource, Rich Authorization Requests (RFC 9396) with
// the one type `egress`, JWT access tokens (RFC 9068) signed with the active key.
//
// A client-credentials token request runs these steps (oidc-provider's order):
//   1. client authentication (the client from ClientRegistry; hashed secrets vouched for by
//      verifyHashedSecrets in front of oidc-provider; a secret only in the way the client's
//      policy declares, clients/declared-method.ts; a client assertion living at most five
//      minutes, clients/assertion-lifetime.ts);
//   2. grant type allowed for the client (every client lists client_credentials, see
//      clients/metadata.ts);
//   3. `resource`: defaulted to the gateway, anything else `invalid_target`;
//   4. `authorization_details`: parsed and shape-checked by oidc-provider, each entry by
//      checkEgressDetail (egress/authorization-details.ts, the codec the gateway reads tokens with);
//   5. issuanceFor: the one decision (issuance.ts) from the agent's registration and the
//      request, memoised per request; an app is refused with `unauthorized_client`, over-asking
//      with `invalid_scope` / `invalid_authorization_details`. The first hook oidc-provider calls triggers it;
//   6. the JWT customizer writes the decision into the token and records the jti in the
//      ledger before the token is signed and answered.
//
// Why the JWT customizer and not only the RAR hook (docs/decisions.md, "authorization_details
// are written by the JWT customizer"): oidc-provider calls authorizationDetailsForAccessToken
// only when the request carries authorization_details, but every agent token must carry its
// grant; and a claim of that name returned from extraTokenClaims is overwritten when the JWT
// is built. The customizer runs last, for every token.
import type { JWK } from 'jose';
import Provider, {
  type ClientCredentials,
  type Configuration,
  errors,
  type KoaContextWithOIDC,
} from 'oidc-provider';
import { checkEgressDetail } from '../../egress/index.ts';
import type { Db } from '../../store/db.ts';
import { createAdapterFactory, installAtomicReplayDetection } from '../adapter/index.ts';
import { checkAssertionLifetime } from '../clients/assertion-lifetime.ts';
import { bindDeclaredSecretMethod, clientAuthRefused } from '../clients/declared-method.ts';
import { TOKEN_EXCHANGE_GRANT } from '../clients/grant-types.ts';
import type { ClientRegistry } from '../clients/registry.ts';
import { verifyHashedSecrets } from '../clients/secret-hash.ts';
import {
  type ExtraMetadata,
  INTROSPECTION_PATH,
  ledgerEndpoints,
  REVOCATION_PATH,
} from '../endpoints/index.ts';
import type { ActClaim } from '../exchange/chain.ts';
import { type ExchangeGrant, TOKEN_EXCHANGE_PARAMETERS, tokenExchangeHandler } from '../exchange/grant.ts';
import { IssuerKeys } from '../exchange/subject-token.ts';
import { decideIssuance, type Issuance } from './issuance.ts';
import { type IssuedToken, recordIssued } from './ledger.ts';
import { LedgerBatcher } from './ledger-batch.ts';
import { ownTokenVerifier } from './own-token.ts';
import { quarantinedAmong } from './quarantine.ts';

export interface ProviderOptions {
  /** e.g. http://127.0.0.1:3000 */
  readonly issuer: string;
  readonly db: Db;
  readonly clients: ClientRegistry;
  /** RFC 8707 resource identifier of the gateway: the default and only accepted `resource`. */
  readonly gatewayResource: string;
  /** Private signing JWKs with `kid`, the active key first (keys/loadKeys gives this order). */
  readonly signingKeys: readonly JWK[];
  /** Keys for oidc-provider's signed cookies (unused by the token endpoint; random if absent). */
  readonly cookieKeys?: readonly string[];
  /**
   * Ledger rows of concurrent tokens written in one INSERT (ledger-batch.ts). Default true;
   * false writes one INSERT per token (bench/tokens compares the two).
   */
  readonly groupCommit?: boolean;
  /** Fetches trusted issuers' `jwks_uri` (token exchange); global fetch unless a test says otherwise. */
  readonly fetch?: typeof fetch;
  /** Members added to both discovery documents (e.g. `reins_interception_ca_uri`, from src/runtime). */
  readonly extraMetadata?: ExtraMetadata;
}

/** The paths oidc-provider serves that reins relies on (oidc-provider's defaults). */
export const TOKEN_PATH = '/token';
export const JWKS_PATH = '/jwks';

/** Seconds of clock skew allowed on JWTs from clients (oidc-provider's default, stated here). */
const CLOCK_TOLERANCE = 15;

/** The decision for one request, with who it was made for. */
type Granted = Extract<Issuance, { ok: true }> & {
  readonly clientId: string;
  readonly tenant: string;
  /** The acting agent. */
  readonly agent: string;
  readonly kind: 'client_credentials' | 'token_exchange';
  /** Token exchange: the subject (a user, or the agent whose token was exchanged). */
  readonly sub?: string;
  /** Token exchange: the delegation chain, newest actor outermost (RFC 8693 §4.1). */
  readonly act?: ActClaim;
  readonly parentJti: string | null;
};

export function createProvider(options: ProviderOptions): Provider {
  const { db, clients, gatewayResource, signingKeys } = options;
  const active = signingKeys[0];
  if (!active?.kid) throw new TypeError('createProvider needs at least one signing key with a kid');
  const activeKid = active.kid;
  const gatewayServerInfo = (scope: string) => gatewayServerInfoOf(gatewayResource, activeKid, scope);
  const ledger = options.groupCommit === false ? null : new LedgerBatcher(db);
  const record = (token: IssuedToken) => (ledger ? ledger.record(token) : recordIssued(db, token));

  // One decision per token request, whichever hook asks first.
  const decisions = new WeakMap<object, Granted>();
  function issuanceFor(ctx: KoaContextWithOIDC): Granted {
    const known = decisions.get(ctx);
    if (known) return known;
    const clientId = ctx.oidc.client?.clientId;
    const registered = clientId === undefined ? undefined : clients.lookup(clientId);
    // The client passed authentication moments ago; a policy apply may have removed it since.
    if (clientId === undefined || registered === undefined) {
      throw new errors.InvalidClient('the client is no longer registered');
    }
    if (registered.kind !== 'agent') {
      throw new errors.UnauthorizedClient('only agents obtain egress tokens by client credentials');
    }
    const scope = stringParam(ctx.oidc.params?.scope);
    const decision = decideIssuance(registered.tenant, registered.agent, {
      scope,
      authorizationDetails: parsedDetails(ctx.oidc.params?.authorization_details),
    });
    if (!decision.ok) {
      throw decision.error === 'invalid_scope'
        ? new errors.InvalidScope(decision.detail, scope ?? '')
        : new errors.InvalidAuthorizationDetails(decision.detail);
    }
    const granted: Granted = {
      ...decision,
      clientId,
      tenant: registered.tenant.id,
      agent: clientId,
      kind: 'client_credentials',
      parentJti: null,
    };
    decisions.set(ctx, granted);
    return granted;
  }

  const configuration: Configuration = {
    routes: { introspection: INTROSPECTION_PATH, revocation: REVOCATION_PATH },
    adapter: createAdapterFactory(db, { findClient: clients.findClient }),
    jwks: { keys: signingKeys.map((k) => ({ ...k })) as NonNullable<Configuration['jwks']>['keys'] },
    cookies: { keys: cookieKeysOf(options.cookieKeys) },
    // Every client authenticates: no policy client is public, and discovery must not advertise
    // `none` (oidc-provider's default list includes it) at the token, introspection or
    // revocation endpoint.
    clientAuthMethods: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
    clientDefaults: {
      grant_types: [],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'private_key_jwt',
    },
    clockTolerance: CLOCK_TOLERANCE,
    // RFC 7523 §3: the server may limit an assertion's lifetime. This hook runs after the
    // signature is verified and before the jti is stored for replay detection, so a refused
    // assertion leaves nothing behind.
    assertJwtClientAuthClaimsAndHeader: (_ctx, claims) => {
      const checked = checkAssertionLifetime(claims, Math.floor(Date.now() / 1000), CLOCK_TOLERANCE);
      if (!checked.ok) throw clientAuthRefused(checked.description);
    },
    enabledJWA: {
      // Client assertions (private_key_jwt): asymmetric only, as the policy schema allows.
      clientAuthSigningAlgValues: ['ES256', 'ES384', 'ES512', 'EdDSA', 'RS256', 'PS256'],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // Enabled for their client authentication only: ledgerEndpoints (endpoints/) shadows
      // them and answers for reins' JWTs from the token ledger.
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => gatewayResource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource, client) => {
          if (resource !== gatewayResource) {
            throw new errors.InvalidTarget(`the only resource served is ${gatewayResource}`);
          }
          const registered = clients.lookup(client.clientId);
          const integrations = registered?.kind === 'agent' ? registered.agent.integrations : [];
          return gatewayServerInfo(integrations.map((name) => `egress:${name}`).join(' '));
        },
      },
      richAuthorizationRequests: {
        enabled: true,
        types: {
          egress: {
            validate: (_ctx, detail) => {
              const checked = checkEgressDetail(detail);
              if (!checked.ok) throw new errors.InvalidAuthorizationDetails(`egress: ${checked.message}`);
            },
          },
        },
        authorizationDetailsForAccessToken: (ctx) =>
          issuanceFor(ctx).authorizationDetails.map((d) => ({ ...d })),
        authorizationDetailsForGrantSource: () => undefined,
        authorizationDetailsForIntrospection: () => undefined,
      },
    },
    ttl: {
      ClientCredentials: (ctx) => issuanceFor(ctx).ttl,
    },
    extraTokenClaims: (ctx, token) => {
      const decision = issuanceFor(ctx);
      // The token response (not the JWT: it was already assembled) reads these back.
      const credentials = token as ClientCredentials;
      credentials.rar = decision.authorizationDetails.map((d) => ({ ...d }));
      credentials.scope = decision.scope || undefined;
      return { tenant: decision.tenant };
    },
    formats: {
      customizers: {
        jwt: async (ctx, _token, jwt) => {
          const decision = issuanceFor(ctx);
          await refuseQuarantined(db, decision);
          const payload = jwt.payload as Record<string, unknown>;
          payload.authorization_details = decision.authorizationDetails;
          payload.scope = decision.scope || undefined;
          if (decision.sub !== undefined) payload.sub = decision.sub;
          if (decision.act !== undefined) payload.act = decision.act;
          // A delegated token never outlives its subject token, whatever second it is minted in.
          if (decision.notAfter !== undefined && Number(payload.exp) > decision.notAfter) {
            payload.exp = decision.notAfter;
          }
          await record({
            jti: String(payload.jti),
            tenant: decision.tenant,
            clientId: decision.clientId,
            sub: String(payload.sub),
            agent: decision.agent,
            parentJti: decision.parentJti,
            kind: decision.kind,
            kid: activeKid,
            iat: Number(payload.iat),
            exp: Number(payload.exp),
          });
        },
      },
    },
  };

  const provider = new Provider(options.issuer, configuration);
  installAtomicReplayDetection(provider);
  bindDeclaredSecretMethod(provider);

  // RFC 8693 token exchange, minted as a ClientCredentials token so that it takes the same
  // path as agent tokens: the TTL, extra claims and JWT customizer read its decision.
  const ResourceServer = (provider as unknown as { ResourceServer: ResourceServerClass }).ResourceServer;
  async function mint(ctx: KoaContextWithOIDC, grant: ExchangeGrant): Promise<string> {
    const {
      sub,
      act,
      parentJti,
      agent,
      clientId,
      tenant,
      ttl,
      notAfter,
      scope,
      egress,
      authorizationDetails,
    } = grant;
    decisions.set(ctx, {
      ok: true,
      ...{ egress, authorizationDetails, scope, ttl, notAfter, clientId, tenant, agent, sub, act, parentJti },
      kind: 'token_exchange',
    });
    const client = ctx.oidc.client;
    if (client === undefined) throw new errors.InvalidClient('client authentication is required');
    const token = new provider.ClientCredentials({ client, scope: scope || undefined });
    token.resourceServer = new ResourceServer(gatewayResource, gatewayServerInfo(scope));
    ctx.oidc.entity('ClientCredentials', token);
    return token.save();
  }
  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    tokenExchangeHandler({
      issuer: options.issuer,
      gatewayResource,
      db,
      clients,
      verifyOwn: ownTokenVerifier(options.issuer, signingKeys),
      issuerKeys: new IssuerKeys(options.fetch === undefined ? {} : { fetch: options.fetch }),
      mint,
    }),
    [...TOKEN_EXCHANGE_PARAMETERS],
    ['resource', 'audience'],
  );

  provider.use(verifyHashedSecrets(clients, [TOKEN_PATH, INTROSPECTION_PATH, REVOCATION_PATH]));
  provider.use(
    ledgerEndpoints({
      db,
      issuer: options.issuer,
      clients,
      keys: signingKeys,
      extraMetadata: options.extraMetadata,
    }),
  );
  return provider;
}

type ResourceServerClass = new (
  identifier: string,
  info: ReturnType<typeof gatewayServerInfoOf>,
) => NonNullable<InstanceType<Provider['ClientCredentials']>['resourceServer']>;

/** The gateway as oidc-provider's resource server: JWT access tokens signed with the active key. */
function gatewayServerInfoOf(gatewayResource: string, kid: string, scope: string) {
  return {
    scope,
    audience: gatewayResource,
    accessTokenFormat: 'jwt' as const,
    jwt: { sign: { alg: 'ES256' as const, kid } },
  };
}

function stringParam(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

// oidc-provider's checkRar has already parsed and shape-checked the parameter.
function parsedDetails(value: unknown): readonly unknown[] | undefined {
  if (typeof value !== 'string') return undefined;
  const parsed: unknown = JSON.parse(value);
  return Array.isArray(parsed) ? parsed : undefined;
}

function cookieKeysOf(keys: readonly string[] | undefined): string[] {
  if (keys && keys.length > 0) return [...keys];
  return [crypto.randomUUID()];
}

/**
 * Threat: a contained agent mints itself fresh tokens (or an app mints delegated ones through it).
 * Checked where every token of ours is signed, client credentials and token exchange alike, right
 * before its ledger row: one indexed read, on the database so that the refusal holds from the
 * moment the quarantine committed.
 */
async function refuseQuarantined(db: Db, decision: Granted): Promise<void> {
  // The acting agent, and for a delegated token every agent of its chain and its subject (an
  // agent's own token delegated onwards): a quarantined agent's authority is not passed on.
  const agents = new Set([decision.agent]);
  if (decision.kind === 'token_exchange') {
    if (decision.sub !== undefined) agents.add(decision.sub);
    for (let link = decision.act, depth = 0; link !== undefined && depth < 32; link = link.act, depth++) {
      agents.add(link.sub);
    }
  }
  const quarantined = await quarantinedAmong(db, decision.tenant, [...agents]);
  if (quarantined === null) return;
  const detail = `agent ${quarantined} is quarantined until an operator releases it`;
  throw decision.kind === 'client_credentials'
    ? new errors.UnauthorizedClient(detail)
    : new errors.InvalidGrant(detail);
}
