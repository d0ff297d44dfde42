// Client secrets kept as scrypt hashes (`secret_hash` in a policy). oidc-provider compares a
// client secret with the plaintext it finds in the client's metadata, and the plaintext is
// exactly what reins never keeps. So this middleware, in front of oidc-provider, verifies the
// presented secret against the hash itself and, only when it matches, vouches for it for the
// rest of this one request (ClientRegistry.withVouchedSecret). oidc-provider then finds the
// presented secret in the metadata and its own constant-time comparison succeeds. A wrong
// secret is never vouched for, so the client's secret stays an unknowable random value and
// oidc-provider answers `invalid_client` as for any wrong secret.
//
// Threat: scrypt is deliberately slow (tens of ms); an unauthenticated caller could use it to
// burn CPU. Only clients that exist and are configured with a hash reach it, and the cost is
// bounded by parseSecretHash's limits. A secret that verified is remembered (by its SHA-256,
// with the client and the hash it matched) so that an agent fetching tokens all day pays
// scrypt once, not per token; a wrong secret is never remembered, and a changed hash misses.
import { createHash } from 'node:crypto';
import type { Middleware } from 'koa';
import { verifySecret } from '../../policy/index.ts';
import { authOf } from './metadata.ts';
import type { ClientRegistry } from './registry.ts';

export interface PresentedSecret {
  readonly clientId: string;
  readonly secret: string;
}

/** Middleware for `provider.use(…)`: vouches for verified hashed secrets on `paths`. */
export function verifyHashedSecrets(registry: ClientRegistry, paths: readonly string[]): Middleware {
  const guarded = new Set(paths);
  const verified = new VerifiedSecrets();
  return async (ctx, next) => {
    if (ctx.method !== 'POST' || !guarded.has(ctx.path)) return next();
    const isForm = ctx.is('application/x-www-form-urlencoded') !== false;
    const presented = await presentedSecret(
      ctx.req,
      ctx.get('authorization'),
      isForm ? ctx.request.length : undefined,
    );
    if (presented === undefined) return next();
    const client = registry.lookup(presented.clientId);
    const hash = client === undefined ? null : authOf(client).secretHash;
    if (hash === null || !verified.check(presented, hash)) return next();
    return registry.withVouchedSecret(presented, next);
  };
}

/** Secrets that matched their hash, bounded: the oldest is forgotten first. */
class VerifiedSecrets {
  readonly #seen = new Map<string, true>();
  constructor(readonly limit = 1024) {}

  check(presented: PresentedSecret, hash: string): boolean {
    const digest = createHash('sha256').update(presented.secret).digest('base64url');
    const key = `${presented.clientId}\0${hash}\0${digest}`;
    if (this.#seen.has(key)) return true;
    if (!verifySecret(presented.secret, hash)) return false;
    if (this.#seen.size >= this.limit) this.#seen.delete(this.#seen.keys().next().value as string);
    this.#seen.set(key, true);
    return true;
  }
}

const BODY_LIMIT = 56 * 1024;

type BodyCarrier = import('node:http').IncomingMessage & { body?: unknown };

/**
 * The client id and secret of `client_secret_basic` (Authorization header, RFC 6749 §2.3.1:
 * both form-urlencoded before base64) or `client_secret_post` (form body). Reading the body
 * consumes the stream, so it is left on `req.body`, where oidc-provider's body parser looks
 * when the stream has already been read.
 */
async function presentedSecret(
  req: BodyCarrier,
  authorization: string,
  /** The form body's Content-Length; undefined when the body is not a form of known length. */
  formLength: number | undefined,
): Promise<PresentedSecret | undefined> {
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(authorization);
  if (basic) {
    const decoded = Buffer.from(basic[1] ?? '', 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return undefined;
    try {
      return {
        clientId: decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' ')),
        secret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' ')),
      };
    } catch {
      return undefined;
    }
  }
  // Only bodies of a declared length within oidc-provider's own limit (56 KiB) are read here;
  // anything else is left for oidc-provider to refuse.
  if (authorization !== '' || formLength === undefined || formLength > BODY_LIMIT || !req.readable) {
    return undefined;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  req.body = body;
  const form = new URLSearchParams(body.toString('utf8'));
  const clientId = form.get('client_id');
  const secret = form.get('client_secret');
  return clientId !== null && secret !== null ? { clientId, secret } : undefined;
}
