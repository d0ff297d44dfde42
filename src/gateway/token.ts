// The gateway's token check: a reins access token (RFC 9068) verified once, then served from a
// cache keyed by the exact token bytes until it expires, so the hot path does no crypto for a
// token it has seen. Revocation is NOT cached here: the caller checks the jti against the live
// revocation state on every request (an ECDSA signature can be re-encoded into a second valid
// form, so the token string is not an identity; the jti is).
import { type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { compileRuleSet, parseEgressDetails, type Rule, type RuleSet } from '../egress/index.ts';

/** What a verified token tells the gateway. */
export interface TokenFacts {
  readonly jti: string;
  readonly tenant: string;
  readonly clientId: string;
  readonly sub: string;
  /** The acting agent: `act.sub` of a delegated token, else the client. */
  readonly agent: string;
  /** The RFC 8693 chain as issued; null for an agent's own token. */
  readonly act: unknown;
  /**
   * The other agents the token acts in: the earlier actors of its chain and its `sub` (an agent's
   * own token delegated onwards keeps it as `sub`). Quarantining any of them stops the token.
   */
  readonly alsoActing?: readonly string[];
  /** Seconds since the epoch. */
  readonly exp: number;
  readonly rules: readonly Rule[];
  readonly egress: RuleSet;
}

export type TokenProblem = 'malformed' | 'invalid' | 'expired' | 'wrong_audience';

export type TokenCheck =
  | { readonly ok: true; readonly facts: TokenFacts }
  | { readonly ok: false; readonly problem: TokenProblem; readonly detail: string };

export interface TokenVerifierOptions {
  readonly issuer: string;
  /** This gateway's resource identifier: the `aud` every egress token must carry. */
  readonly audience: string;
  readonly keys: JWTVerifyGetKey;
  readonly now?: () => Date;
  /** Cached tokens at most; the oldest is dropped first. Default 50,000. */
  readonly maxEntries?: number;
  /** Told whether each check was answered from the cache (metrics). */
  readonly onLookup?: (result: 'hit' | 'miss') => void;
}

/** reins signs with these only: never `none`, never HMAC. */
const ALGORITHMS = ['ES256', 'EdDSA'];
/** Small: tokens live minutes, and the gateway's and server's clocks are expected to agree. */
const CLOCK_TOLERANCE_SECONDS = 5;

export class TokenVerifier {
  private readonly cache = new Map<string, TokenFacts>();
  private readonly now: () => Date;
  private readonly maxEntries: number;
  hits = 0;
  misses = 0;

  constructor(private readonly options: TokenVerifierOptions) {
    this.now = options.now ?? (() => new Date());
    this.maxEntries = options.maxEntries ?? 50_000;
  }

  async verify(token: string): Promise<TokenCheck> {
    const nowSeconds = Math.floor(this.now().getTime() / 1000);
    const cached = this.cache.get(token);
    if (cached !== undefined) {
      if (cached.exp > nowSeconds - CLOCK_TOLERANCE_SECONDS) {
        this.hits++;
        this.options.onLookup?.('hit');
        return { ok: true, facts: cached };
      }
      this.cache.delete(token);
      return { ok: false, problem: 'expired', detail: 'the token has expired' };
    }
    this.misses++;
    this.options.onLookup?.('miss');
    const checked = await this.verifyFresh(token);
    if (checked.ok) this.remember(token, checked.facts);
    return checked;
  }

  /** Drops cached tokens that have expired (called on a timer). */
  prune(): void {
    const nowSeconds = Math.floor(this.now().getTime() / 1000);
    for (const [token, facts] of this.cache) {
      if (facts.exp <= nowSeconds - CLOCK_TOLERANCE_SECONDS) this.cache.delete(token);
    }
  }

  get size(): number {
    return this.cache.size;
  }

  private remember(token: string, facts: TokenFacts): void {
    if (this.cache.size >= this.maxEntries) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(token, facts);
  }

  private async verifyFresh(token: string): Promise<TokenCheck> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.options.keys, {
        issuer: this.options.issuer,
        audience: this.options.audience,
        typ: 'at+jwt',
        algorithms: ALGORITHMS,
        // jose accepts a token without exp unless told.
        requiredClaims: ['exp', 'jti', 'iat'],
        currentDate: this.now(),
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
      }));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ERR_JWT_EXPIRED') return fail('expired', 'the token has expired');
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && (err as { claim?: unknown }).claim === 'aud') {
        return fail('wrong_audience', 'the token is not for this gateway');
      }
      if (code === 'ERR_JWS_INVALID' || code === 'ERR_JWT_INVALID') return fail('malformed', 'not a JWT');
      // An unknown kid costs no I/O here (keys.ts); nor is it remembered (only valid tokens are).
      if (code === 'ERR_JWKS_NO_MATCHING_KEY') {
        return fail('invalid', 'the token names no key this gateway knows');
      }
      return fail('invalid', 'the token did not verify');
    }
    return factsOf(payload);
  }
}

function factsOf(payload: JWTPayload): TokenCheck {
  const { jti, exp, sub } = payload;
  const tenant = payload.tenant;
  const clientId = payload.client_id;
  if (typeof jti !== 'string' || typeof exp !== 'number' || typeof sub !== 'string') {
    return fail('invalid', 'the token lacks jti, exp or sub');
  }
  if (typeof tenant !== 'string' || tenant === '' || typeof clientId !== 'string') {
    return fail('invalid', 'the token lacks tenant or client_id');
  }
  const act = payload.act ?? null;
  const actor = act === null ? clientId : (act as { sub?: unknown }).sub;
  if (typeof actor !== 'string' || actor === '')
    return fail('invalid', 'the token has a malformed act claim');
  const details = Array.isArray(payload.authorization_details) ? payload.authorization_details : [];
  // Only `egress` entries are ours; a token without any grants nothing.
  const egressDetails = details.filter((d) => (d as { type?: unknown })?.type === 'egress');
  const granted = parseEgressDetails(egressDetails);
  if (!granted.ok) return fail('invalid', 'the token carries an unreadable egress grant');
  return {
    ok: true,
    facts: {
      jti,
      tenant,
      clientId,
      sub,
      agent: actor,
      act,
      alsoActing: alsoActing(act, sub, actor),
      exp,
      rules: granted.rules,
      egress: compileRuleSet(granted.rules),
    },
  };
}

/** Chains are capped by the tenant's delegation depth; this only bounds a forged-looking claim. */
const MAX_CHAIN = 32;

function alsoActing(act: unknown, sub: string, actor: string): readonly string[] {
  if (act === null) return [];
  const others = new Set<string>([sub]);
  let link = (act as { act?: unknown }).act;
  for (let depth = 0; depth < MAX_CHAIN && typeof link === 'object' && link !== null; depth++) {
    const { sub: earlier, act: next } = link as { sub?: unknown; act?: unknown };
    if (typeof earlier === 'string') others.add(earlier);
    link = next;
  }
  others.delete(actor);
  return [...others];
}

function fail(problem: TokenProblem, detail: string): TokenCheck {
  return { ok: false, problem, detail };
}

// Where the keys come from, and how often they are read again: keys.ts.
export { KEY_REFRESH_COOLDOWN_MS, localKeys } from './keys.ts';
