// GET /ca.pem on the issuer: the interception CA bundle agents trust (the active CA and, during a
// rotation's overlap, the one it replaced — what `reins ca export` prints), advertised in both
// discovery documents as `reins_interception_ca_uri`. So `reins run` and `reins env` need nothing
// but the issuer they already talk to (docs/interception-ca.md).
//
// Here in src/runtime because it joins the two halves: the CA is the gateway's (src/gateway/ca),
// the listener and discovery are the server's (src/server), and neither may import the other.
//
// Caching: the bundle is read from the database, so a `reins ca rotate` in another process shows
// here within CA_BUNDLE_CACHE_MS; in between, every request is answered from memory (the path is
// unauthenticated: a flood of it must not become a flood of queries). Clients get a strong ETag
// of the bundle and a max-age, so a conditional GET tells them cheaply whether it changed.
import { createHash } from 'node:crypto';
import type { Middleware } from 'koa';
import { exportTrustBundle, InterceptionCaError } from '../gateway/ca/index.ts';
import type { ExtraMetadata } from '../server/endpoints/index.ts';
import type { Queryable } from '../store/db.ts';

export const CA_BUNDLE_PATH = '/ca.pem';
/** The discovery member naming CA_BUNDLE_PATH (RFC 8414 §2 lets a server add its own). */
export const CA_URI_MEMBER = 'reins_interception_ca_uri';
/** How long the bundle read from the database is reused: a rotation shows within this. */
export const CA_BUNDLE_CACHE_MS = 10_000;
/** How long clients may keep it without asking again (Cache-Control max-age). */
export const CA_BUNDLE_MAX_AGE_SECONDS = 300;
// "No CA yet" is remembered only briefly: `reins serve` starts this listener a moment before the
// gateway creates the CA, and the first agent must not be told "none" for long.
const MISSING_CACHE_MS = 1_000;

/** What the database said, as the route answers it. */
type Reading =
  | { readonly kind: 'bundle'; readonly pem: string; readonly etag: string }
  | { readonly kind: 'none'; readonly error: 'ca_missing' | 'ca_expired'; readonly message: string };

export interface CaRouteOptions {
  readonly db: Queryable;
  /** The issuer identifier; the bundle's URI is `<issuer>/ca.pem`. */
  readonly issuer: string;
  /** Default CA_BUNDLE_CACHE_MS; 0 reads the database on every request (tests). */
  readonly cacheMs?: number | undefined;
  readonly now?: () => Date;
  /** Told when the database cannot be read (the request is answered 503). */
  readonly onError?: (err: unknown) => void;
}

export interface CaRoute {
  /** `{ reins_interception_ca_uri }`, for createProvider's extraMetadata. */
  readonly metadata: ExtraMetadata;
  /** Answers GET and HEAD /ca.pem; passes every other path on. */
  readonly middleware: Middleware;
}

/** `<issuer>/ca.pem`: the bundle's public address, whatever the listener's. */
export function interceptionCaUri(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}${CA_BUNDLE_PATH}`;
}

/** A strong validator (RFC 9110 §8.8.3): the bundle's SHA-256, so any change of a byte changes it. */
export function bundleEtag(pem: string): string {
  return `"${createHash('sha256').update(pem).digest('base64url')}"`;
}

/**
 * Whether an If-None-Match header names `etag` (RFC 9110 §13.1.2: `*`, or a list compared
 * weakly). Not Koa's ctx.fresh: it treats a request's `Cache-Control: no-cache` as "send it all",
 * and fetch() adds that header to every conditional request — the origin may still answer 304.
 */
export function ifNoneMatchHolds(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => opaque(tag) === opaque(etag));
}

export function interceptionCaRoute(options: CaRouteOptions): CaRoute {
  const cacheMs = options.cacheMs ?? CA_BUNDLE_CACHE_MS;
  const now = options.now ?? (() => new Date());
  let cached: { readonly reading: Reading; readonly until: number } | undefined;
  let pending: Promise<Reading> | undefined;

  async function readBundle(): Promise<Reading> {
    try {
      const bundle = await exportTrustBundle(options.db, now());
      return { kind: 'bundle', pem: bundle.pem, etag: bundleEtag(bundle.pem) };
    } catch (err) {
      if (err instanceof InterceptionCaError && (err.code === 'ca_missing' || err.code === 'ca_expired')) {
        return { kind: 'none', error: err.code, message: err.message };
      }
      throw err;
    }
  }

  /** The cached reading while fresh; else one database read, shared by the requests waiting on it. */
  function current(): Promise<Reading> {
    const at = now().getTime();
    if (cached !== undefined && at < cached.until) return Promise.resolve(cached.reading);
    pending ??= readBundle()
      .then((reading) => {
        const keep = reading.kind === 'bundle' ? cacheMs : Math.min(cacheMs, MISSING_CACHE_MS);
        cached = { reading, until: now().getTime() + keep };
        return reading;
      })
      .finally(() => {
        pending = undefined;
      });
    return pending;
  }

  const middleware: Middleware = async (ctx, next) => {
    if (ctx.path !== CA_BUNDLE_PATH) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('allow', 'GET, HEAD');
      ctx.body = { error: 'invalid_request', error_description: `${CA_BUNDLE_PATH} answers GET only` };
      return;
    }
    let reading: Reading;
    try {
      reading = await current();
    } catch (err) {
      options.onError?.(err);
      ctx.status = 503;
      ctx.set('cache-control', 'no-store');
      ctx.set('retry-after', '1');
      ctx.body = {
        error: 'temporarily_unavailable',
        error_description: 'the interception CA cannot be read from the database right now',
      };
      return;
    }
    if (reading.kind === 'none') {
      // 404 for "none yet" (the gateway creates it at first start) and for "expired" alike: there
      // is no certificate to trust; the description says which and what to run.
      ctx.status = 404;
      ctx.set('cache-control', 'no-store');
      ctx.body = { error: reading.error, error_description: reading.message };
      return;
    }
    ctx.status = 200;
    ctx.type = 'application/x-pem-file';
    ctx.set('etag', reading.etag);
    // public: the same certificates for everyone, nothing secret; max-age bounds how long a
    // caching client may miss a rotation (it revalidates with If-None-Match after that).
    ctx.set('cache-control', `public, max-age=${CA_BUNDLE_MAX_AGE_SECONDS}`);
    ctx.set('x-content-type-options', 'nosniff');
    if (ifNoneMatchHolds(ctx.get('if-none-match'), reading.etag)) {
      ctx.status = 304;
      return;
    }
    ctx.body = reading.pem;
  };

  return { metadata: { [CA_URI_MEMBER]: interceptionCaUri(options.issuer) }, middleware };
}
