// RFC 7662 introspection and RFC 7009 revocation of reins' JWT access tokens, answered from
// the token ledger (issued_tokens), and RFC 8414 discovery, as oidc-provider middleware.
//
// Client authentication is oidc-provider's own (every method a client may use, with
// private_key_jwt replay detection and hashed secrets vouched for in front of it): its
// introspection and revocation endpoints are enabled on these paths, and this middleware
// shadows them. oidc-provider refuses structured tokens (rejectStructuredTokens) and would
// not find ours anyway, so the presented token is set aside and a placeholder that matches
// no token is handed to oidc-provider instead. When oidc-provider has authenticated the caller
// and answered (`{"active": false}`, or 200 for revocation), the real answer is made here.
// When authentication fails, oidc-provider's 401 invalid_client stands and nothing about the
// token is looked at.
import type { JWK } from 'jose';
import type { Middleware } from 'koa';
import type { Db } from '../../store/db.ts';
import type { ClientRegistry } from '../clients/registry.ts';
import { readLedgerEntry, revokeTree } from '../provider/ledger.ts';
import { ownTokenVerifier } from '../provider/own-token.ts';
import { abilityFor, type TokenAction } from './abilities.ts';
import { judge } from './judge.ts';
import { authorizationServerMetadata, type ExtraMetadata, withExtraMetadata } from './metadata.ts';

/** oidc-provider routes (createProvider sets them) and the RFC 8414 path. */
export const INTROSPECTION_PATH = '/introspect';
export const REVOCATION_PATH = '/revoke';
export const OAUTH_METADATA_PATH = '/.well-known/oauth-authorization-server';
const OPENID_METADATA_PATH = '/.well-known/openid-configuration';

/** Handed to oidc-provider in place of the token: not a JWT, and no stored token has this id. */
const PLACEHOLDER = 'reins-ledger-token';
/** oidc-provider's own body limit. */
const BODY_LIMIT = 56 * 1024;

export interface LedgerEndpointOptions {
  readonly db: Db;
  readonly issuer: string;
  readonly clients: ClientRegistry;
  /** The published signing keys (private members are stripped here). */
  readonly keys: readonly JWK[];
  /** The clock; `() => new Date()` unless a test says otherwise. */
  readonly now?: () => Date;
  /** Added to both discovery documents (metadata.ts, withExtraMetadata). */
  readonly extraMetadata?: ExtraMetadata;
}

export function ledgerEndpoints(options: LedgerEndpointOptions): Middleware {
  const actions = new Map<string, TokenAction>([
    [INTROSPECTION_PATH, 'introspect'],
    [REVOCATION_PATH, 'revoke'],
  ]);
  const verifyToken = ownTokenVerifier(options.issuer, options.keys);
  const now = options.now ?? (() => new Date());
  const extra = options.extraMetadata ?? {};

  return async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === OAUTH_METADATA_PATH) {
      // Let oidc-provider render its OpenID document, then keep what RFC 8414 means.
      ctx.path = OPENID_METADATA_PATH;
      await next();
      if (ctx.status === 200 && isRecord(ctx.body)) ctx.body = authorizationServerMetadata(ctx.body, extra);
      return;
    }
    if (ctx.method === 'GET' && ctx.path === OPENID_METADATA_PATH) {
      await next();
      if (ctx.status === 200 && isRecord(ctx.body)) ctx.body = withExtraMetadata(ctx.body, extra);
      return;
    }
    const action = ctx.method === 'POST' ? actions.get(ctx.path) : undefined;
    if (action === undefined) return next();

    const form = await readForm(ctx);
    if (form !== undefined && !presentsClientAuth(form, ctx.get('authorization'))) {
      // RFC 6749 §5.2: no client authentication included is `invalid_client` (401); oidc-provider
      // would answer `invalid_request`. Nothing about the token is looked at.
      ctx.status = 401;
      ctx.set('www-authenticate', 'Basic realm="reins"');
      ctx.set('cache-control', 'no-store');
      ctx.body = { error: 'invalid_client', error_description: 'client authentication is required' };
      return;
    }
    const token = form === undefined ? undefined : setTokenAside(ctx, form);
    await next();
    // oidc-provider sets ctx.oidc.client only once the client has authenticated.
    const clientId = (ctx as { oidc?: { client?: { clientId?: unknown } } }).oidc?.client?.clientId;
    if (token === undefined || ctx.status !== 200 || typeof clientId !== 'string') return;
    const caller = options.clients.lookup(clientId);
    // Authenticated moments ago; a policy apply may have removed the client since.
    if (caller === undefined) return;

    const ability = abilityFor({ clientId, tenant: caller.tenant.id });
    const claims = await verifyToken(token, now());
    const row = typeof claims?.jti === 'string' ? await readLedgerEntry(options.db, claims.jti) : undefined;
    const judgement = judge({ action, claims, row, ability, now: now() });
    if (action === 'introspect') {
      ctx.body = judgement.active ? judgement.answer : { active: false };
    } else if (judgement.active) {
      // The token and everything exchanged from it (RFC 8693 chains).
      await revokeTree(options.db, judgement.jti, `revoked by ${clientId}`);
    }
    // RFC 7009 §2.2: 200 whether or not anything was revoked; oidc-provider has set it.
  };
}

type Ctx = Parameters<Middleware>[0];

/**
 * The request's form, read once and left on `req.body`, where oidc-provider's body parser takes
 * it (as verifyHashedSecrets does, which may have read it already). Undefined when the body is
 * not a form of known length within oidc-provider's limit: oidc-provider then refuses it.
 */
async function readForm(ctx: Ctx): Promise<URLSearchParams | undefined> {
  if (ctx.is('application/x-www-form-urlencoded') === false) return undefined;
  const req = ctx.req as typeof ctx.req & { body?: unknown };
  if (!Buffer.isBuffer(req.body)) {
    const length = ctx.request.length;
    if (length === undefined || length > BODY_LIMIT || !req.readable) return undefined;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    req.body = Buffer.concat(chunks);
  }
  return new URLSearchParams((req.body as Buffer).toString('utf8'));
}

/** Whether the request carries any client authentication (RFC 6749 §2.3, RFC 7523 §2.2). */
function presentsClientAuth(form: URLSearchParams, authorization: string): boolean {
  return authorization !== '' || form.has('client_id') || form.has('client_assertion');
}

/**
 * Keeps the `token` and hands oidc-provider the form with the placeholder instead. Returns
 * undefined (and changes nothing) unless exactly one token is present: oidc-provider then
 * answers the malformed request itself (`invalid_request`).
 */
function setTokenAside(ctx: Ctx, form: URLSearchParams): string | undefined {
  const tokens = form.getAll('token');
  if (tokens.length !== 1 || tokens[0] === '') return undefined;
  form.set('token', PLACEHOLDER);
  (ctx.req as typeof ctx.req & { body?: unknown }).body = Buffer.from(form.toString(), 'utf8');
  return tokens[0];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
