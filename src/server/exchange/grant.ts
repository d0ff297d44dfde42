// RFC 8693 token exchange as an oidc-provider extension grant (registerGrantType). oidc-provider
// has authenticated the client before this runs. The handler is a list of named steps; the
// decision itself is decide.ts (pure), and the token is minted by the same path as
// client-credentials tokens (create.ts), so it is signed with the same keys, recorded in the same
// ledger and introspectable the same way.
//
//   1. checkTokenTypes   requested_token_type (access tokens only), subject/actor token types;
//   2. checkTarget       resource / audience name the gateway, or nothing;
//   3. subjectOf         which validation applies is decided by the subject token's issuer,
//                        verified, never by request syntax: our own issuer → a live reins token
//                        (signature, ledger, not revoked, nor any token it came from); a trusted
//                        issuer of the client's tenant → a user token (subject-token.ts) and the
//                        rights the tenant's user rules give that user; anything else → refused;
//   4. actorOf           the client when it is an agent; otherwise the agent its actor_token
//                        proves (a live client-credentials token of that agent);
//   5. decideExchange    the decision;
//   6. mint              sign, record with its parent jti, answer (RFC 8693 §2.2.1).
import type { KoaContextWithOIDC } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { TenantModel, TrustedIssuerModel } from '../../policy/model.ts';
import type { Db } from '../../store/db.ts';
import type { RegisteredClient } from '../clients/metadata.ts';
import type { ClientRegistry } from '../clients/registry.ts';
import { readLedgerEntry } from '../provider/ledger.ts';
import type { OwnTokenVerifier } from '../provider/own-token.ts';
import { actorsOf } from './chain.ts';
import { decideExchange, type Exchange, type ExchangeError, type ExchangeSubject } from './decide.ts';
import {
  type IssuerKeys,
  type IssuerTrust,
  peekIssuer,
  type SubjectTokenType,
  verifyUserToken,
} from './subject-token.ts';
import { userFacts, userRights } from './user-rights.ts';

/** RFC 8693 §3 token type identifiers reins accepts. */
export const TOKEN_TYPES = {
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
} as const;

const SUBJECT_TOKEN_TYPES: ReadonlySet<string> = new Set(Object.values(TOKEN_TYPES));
/** An actor token is a reins access token: never an ID token. */
const ACTOR_TOKEN_TYPES: ReadonlySet<string> = new Set([TOKEN_TYPES.accessToken, TOKEN_TYPES.jwt]);

/** The grant's parameters (RFC 8693 §2.1, RFC 8707, RFC 9396); `resource` may repeat. */
export const TOKEN_EXCHANGE_PARAMETERS = [
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'requested_token_type',
  'resource',
  'audience',
  'scope',
  'authorization_details',
] as const;

/** The decision, with who asked, ready to be signed. */
export type ExchangeGrant = Extract<Exchange, { ok: true }> & {
  readonly clientId: string;
  readonly tenant: string;
  readonly agent: string;
};

export interface TokenExchangeOptions {
  readonly issuer: string;
  readonly gatewayResource: string;
  readonly db: Db;
  readonly clients: ClientRegistry;
  readonly verifyOwn: OwnTokenVerifier;
  readonly issuerKeys: IssuerKeys;
  /** Signs and records the token (create.ts): the value and its lifetime in seconds. */
  readonly mint: (ctx: KoaContextWithOIDC, grant: ExchangeGrant) => Promise<string>;
  readonly now?: () => Date;
}

export function tokenExchangeHandler(options: TokenExchangeOptions) {
  const now = options.now ?? (() => new Date());
  return async function tokenExchange(ctx: KoaContextWithOIDC): Promise<void> {
    const params = (ctx.oidc.params ?? {}) as Record<string, unknown>;
    const at = now();
    const client = registeredClient(options.clients, ctx);

    const subjectType = checkTokenTypes(params);
    checkTarget(params, options.gatewayResource);

    const subjectToken = requiredString(params, 'subject_token');
    const subject = await subjectOf(options, client.tenant, subjectToken, subjectType, at);
    const actor = await actorOf(options, client, params, at);

    const decision = decideExchange({
      client,
      actor: { tenant: actor.tenant.id, agent: actor.agent },
      subject,
      subjectIsClientId: subject.kind === 'user' && options.clients.lookup(subject.sub) !== undefined,
      request: {
        scope: optionalString(params, 'scope'),
        authorizationDetails: parsedDetails(params.authorization_details),
      },
      now: Math.floor(at.getTime() / 1000),
    });
    if (!decision.ok) throw oauthError(decision.error, decision.detail, params);

    const grant: ExchangeGrant = {
      ...decision,
      clientId: ctx.oidc.client?.clientId as string,
      tenant: client.tenant.id,
      agent: actor.agent.clientId,
    };
    const accessToken = await options.mint(ctx, grant);
    ctx.body = {
      access_token: accessToken,
      issued_token_type: TOKEN_TYPES.accessToken,
      token_type: 'Bearer',
      expires_in: grant.ttl,
      scope: grant.scope || undefined,
      authorization_details: grant.authorizationDetails,
    };
  };
}

function registeredClient(clients: ClientRegistry, ctx: KoaContextWithOIDC): RegisteredClient {
  const clientId = ctx.oidc.client?.clientId;
  const client = clientId === undefined ? undefined : clients.lookup(clientId);
  // Authenticated moments ago; a policy apply may have removed it since.
  if (client === undefined) throw new errors.InvalidClient('the client is no longer registered');
  return client;
}

/** Returns the subject token type; only access tokens are issued (RFC 8693 §2.1). */
function checkTokenTypes(params: Record<string, unknown>): SubjectTokenType {
  const requested = optionalString(params, 'requested_token_type');
  if (requested !== undefined && requested !== TOKEN_TYPES.accessToken) {
    throw new errors.InvalidRequest(`requested_token_type must be ${TOKEN_TYPES.accessToken} (or absent)`);
  }
  const subjectType = requiredString(params, 'subject_token_type');
  if (!SUBJECT_TOKEN_TYPES.has(subjectType)) {
    throw new errors.InvalidRequest(
      `unsupported subject_token_type; use one of ${[...SUBJECT_TOKEN_TYPES].join(', ')}`,
    );
  }
  const actorToken = optionalString(params, 'actor_token');
  const actorType = optionalString(params, 'actor_token_type');
  if (actorToken !== undefined && actorType === undefined) {
    throw new errors.InvalidRequest('actor_token_type is required with actor_token');
  }
  if (actorToken === undefined && actorType !== undefined) {
    throw new errors.InvalidRequest('actor_token_type without actor_token');
  }
  if (actorType !== undefined && !ACTOR_TOKEN_TYPES.has(actorType)) {
    throw new errors.InvalidRequest(`unsupported actor_token_type; use ${TOKEN_TYPES.accessToken}`);
  }
  return subjectType as SubjectTokenType;
}

/** The gateway is the only resource (RFC 8707 `resource`, RFC 8693 `audience`). */
function checkTarget(params: Record<string, unknown>, gatewayResource: string): void {
  for (const name of ['resource', 'audience'] as const) {
    const value = params[name];
    const values = value === undefined ? [] : Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v !== gatewayResource) {
        throw new errors.InvalidTarget(`the only ${name} served is ${gatewayResource}`);
      }
    }
  }
}

async function subjectOf(
  options: TokenExchangeOptions,
  tenant: TenantModel,
  token: string,
  tokenType: SubjectTokenType,
  at: Date,
): Promise<ExchangeSubject> {
  const issuer = peekIssuer(token);
  if (issuer === options.issuer) {
    const own = await liveOwnToken(options, token, at, 'subject_token');
    const actors = actorsOf(own.claims.act);
    if (actors === null) throw invalidGrant('subject_token has a malformed act claim');
    return {
      kind: 'reins',
      jti: own.jti,
      tenant: own.tenant,
      sub: String(own.claims.sub),
      exp: own.exp,
      actors,
      authorizationDetails: own.claims.authorization_details,
    };
  }
  const trusted = tenant.trustedIssuers.find((t) => t.issuer === issuer);
  if (issuer === undefined || trusted === undefined) {
    throw invalidGrant(
      `subject_token is not from an issuer tenant '${tenant.id}' trusts; add it to trusted_issuers`,
    );
  }
  const trust = issuerTrust(trusted);
  const verified = await verifyUserToken(token, trust, options.issuerKeys.keysFor(trust), at, tokenType);
  if (!verified.ok) throw invalidGrant(`subject_token: ${verified.detail}`);
  const facts = userFacts(trusted, verified.claims as Record<string, unknown>);
  if (facts.sub === undefined) {
    throw invalidGrant(`subject_token has no '${trusted.subjectClaim}' claim naming the user`);
  }
  return {
    kind: 'user',
    sub: facts.sub,
    exp: Number(verified.claims.exp),
    rights: userRights(tenant, facts),
  };
}

interface AgentActor {
  readonly tenant: TenantModel;
  readonly agent: Extract<RegisteredClient, { kind: 'agent' }>['agent'];
}

async function actorOf(
  options: TokenExchangeOptions,
  client: RegisteredClient,
  params: Record<string, unknown>,
  at: Date,
): Promise<AgentActor> {
  const actorToken = optionalString(params, 'actor_token');
  if (client.kind === 'agent') {
    if (actorToken !== undefined) {
      throw new errors.InvalidRequest(
        'an agent acts as itself; actor_token is for apps acting through an agent',
      );
    }
    return { tenant: client.tenant, agent: client.agent };
  }
  if (actorToken === undefined) {
    throw new errors.InvalidRequest('an app must name the acting agent with actor_token (its access token)');
  }
  const own = await liveOwnToken(options, actorToken, at, 'actor_token');
  if (own.kind !== 'client_credentials' || own.claims.act !== undefined || own.claims.sub !== own.clientId) {
    throw invalidGrant("actor_token must be the acting agent's own client-credentials token");
  }
  const agent = options.clients.lookup(own.clientId);
  if (agent?.kind !== 'agent') {
    throw invalidGrant(`actor_token's agent '${own.clientId}' is not a registered agent`);
  }
  return { tenant: agent.tenant, agent: agent.agent };
}

interface LiveOwnToken {
  readonly claims: Record<string, unknown>;
  readonly jti: string;
  readonly tenant: string;
  readonly clientId: string;
  readonly exp: number;
  readonly kind: string;
}

/** A token this server signed, that the ledger knows, unexpired and unrevoked (nor its ancestors). */
async function liveOwnToken(
  options: TokenExchangeOptions,
  token: string,
  at: Date,
  name: 'subject_token' | 'actor_token',
): Promise<LiveOwnToken> {
  const claims = await options.verifyOwn(token, at);
  if (claims === undefined || typeof claims.jti !== 'string' || typeof claims.exp !== 'number') {
    throw invalidGrant(`${name} is not a valid token of this server`);
  }
  if (claims.exp <= Math.floor(at.getTime() / 1000)) throw invalidGrant(`${name} has expired`);
  const entry = await readLedgerEntry(options.db, claims.jti);
  if (entry === undefined || entry.revoked_at !== null || entry.ancestor_revoked) {
    throw invalidGrant(`${name} is no longer active`);
  }
  // The ledger is the record of who the token was issued to; the claims must agree with it.
  if (entry.tenant !== claims.tenant || entry.client_id !== claims.client_id) {
    throw invalidGrant(`${name} is not a valid token of this server`);
  }
  return {
    claims: claims as Record<string, unknown>,
    jti: claims.jti,
    tenant: entry.tenant,
    clientId: entry.client_id,
    exp: claims.exp,
    kind: entry.kind,
  };
}

function issuerTrust(trusted: TrustedIssuerModel): IssuerTrust {
  return {
    issuer: trusted.issuer,
    jwks: trusted.jwks as IssuerTrust['jwks'],
    jwksUri: trusted.jwksUri,
    audience: trusted.audience,
    algorithms: trusted.algorithms,
  };
}

function oauthError(error: ExchangeError, detail: string, params: Record<string, unknown>): Error {
  switch (error) {
    case 'invalid_request':
      return new errors.InvalidRequest(detail);
    case 'invalid_grant':
      return invalidGrant(detail);
    case 'unauthorized_client':
      return new errors.UnauthorizedClient(detail);
    case 'invalid_target':
      return new errors.InvalidTarget(detail);
    case 'invalid_scope':
      return new errors.InvalidScope(detail, optionalString(params, 'scope') ?? '');
    case 'invalid_authorization_details':
      return new errors.InvalidAuthorizationDetails(detail);
  }
}

/**
 * oidc-provider's InvalidGrant answers a fixed "grant request is invalid" and keeps the detail
 * to itself; a refused exchange must say what to fix (which check failed), so it is shown.
 * Nothing in a detail echoes a token.
 */
function invalidGrant(detail: string): Error {
  return Object.assign(new errors.InvalidGrant(detail), { error_description: detail });
}

function requiredString(params: Record<string, unknown>, name: string): string {
  const value = optionalString(params, name);
  if (value === undefined) throw new errors.InvalidRequest(`missing required parameter '${name}'`);
  return value;
}

function optionalString(params: Record<string, unknown>, name: string): string | undefined {
  const value = params[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

// oidc-provider's checkRar has already parsed and shape-checked the parameter.
function parsedDetails(value: unknown): readonly unknown[] | undefined {
  if (typeof value !== 'string') return undefined;
  const parsed: unknown = JSON.parse(value);
  return Array.isArray(parsed) ? parsed : undefined;
}
