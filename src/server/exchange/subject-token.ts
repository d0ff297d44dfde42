// Users' tokens from external identity providers, presented as `subject_token` in RFC 8693
// token exchange: who the user is rests entirely on this check, so every rule below names the
// attack it stops. The verification is a list of small named steps, cheapest first: the token's
// shape and its header are judged before any key is fetched (junk never costs a JWKS request),
// then the signature against the issuer's own keys only, then the claims.
//
// A refusal is a value (UserTokenFailure with a reason from a closed union); nothing here throws.
// `detail` is one sentence for logs and error_description: it names what is wrong and never
// repeats anything from the token (the token may be a live credential or an attacker's payload).
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type FetchImplementation,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
  type ProtectedHeaderParameters,
} from 'jose';

/** What reins trusts about one external issuer (mapped by the caller from the policy's trusted_issuers). */
export interface IssuerTrust {
  /** The exact `iss` its tokens carry. */
  readonly issuer: string;
  /** The issuer's public keys inline; exactly one of `jwks` and `jwksUri` is set. */
  readonly jwks: { readonly keys: readonly object[] } | null;
  /** Where the issuer publishes its public keys (https; policy validation checks that). */
  readonly jwksUri: string | null;
  /** Accepted `aud` values; [] accepts any audience. */
  readonly audience: readonly string[];
  /** The algorithms this issuer signs with; only those in USER_TOKEN_ALGORITHMS ever count. */
  readonly algorithms: readonly string[];
}

/** RFC 8693 §3 token type identifiers a user token may be presented as. */
export const SUBJECT_TOKEN_TYPES = [
  'urn:ietf:params:oauth:token-type:access_token',
  'urn:ietf:params:oauth:token-type:jwt',
  'urn:ietf:params:oauth:token-type:id_token',
] as const;
export type SubjectTokenType = (typeof SUBJECT_TOKEN_TYPES)[number];

/** Why a user token was refused; a closed list, one test row each. */
export const USER_TOKEN_FAILURES = [
  'malformed', // not a compact JWS of canonical base64url JSON, or over the size cap
  'forbidden_header', // carries its own key or a pointer to one (jwk, jku, x5u, x5c)
  'unknown_critical_header', // names a `crit` extension (reins understands none)
  'algorithm_not_allowed', // none, HS*, or not one the issuer signs with
  'wrong_type', // `typ` of another kind of JWT (DPoP proof, logout token, …)
  'bad_signature', // no key of the issuer verifies it
  'expired',
  'not_yet_valid', // nbf, or iat, in the future
  'wrong_issuer',
  'wrong_audience',
  'missing_claim', // exp, sub or iss absent
  'invalid_claim', // a registered claim of the wrong type, or an empty sub
  'keys_unavailable', // the issuer's keys could not be had (fetch failed, bad JWKS)
] as const;
export type UserTokenFailureReason = (typeof USER_TOKEN_FAILURES)[number];

export interface UserTokenFailure {
  readonly ok: false;
  readonly reason: UserTokenFailureReason;
  /** One sentence saying what is wrong; never echoes the token. */
  readonly detail: string;
}
export type UserTokenResult =
  | { readonly ok: true; readonly claims: JWTPayload; readonly header: ProtectedHeaderParameters }
  | UserTokenFailure;

/**
 * The only algorithms a user token may use, whatever an issuer's list says: asymmetric ones.
 * `none` would need no key at all; HS* would take the issuer's *public* key (which anyone can
 * read from its JWKS) as the HMAC secret, so anyone could mint tokens. jose also binds each
 * algorithm to a key type when it picks a key from a JWKS (RSA keys only for RS and PS, EC keys for ES), so
 * no asymmetric algorithm can be verified with another kind's key. Callers may use this list
 * as an issuer's default when its policy names none.
 */
export const USER_TOKEN_ALGORITHMS: readonly string[] = [
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
];

/**
 * 16 KiB, checked before anything is decoded: a real user token is a few KiB at most, and a
 * megabyte of base64 JSON would cost parsing time before any signature could refuse it.
 */
export const MAX_USER_TOKEN_LENGTH = 16 * 1024;

/**
 * Seconds of clock skew allowed on exp, nbf and iat: enough for servers kept by NTP, short
 * enough that an expired token is not usable for long (RFC 7519 §4.1.4 says "small leeway").
 */
export const CLOCK_LEEWAY_SECONDS = 30;

/**
 * Header parameters that carry a key or say where to fetch one. A verifier that used them would
 * check the token against a key the token chose (CVE-2018-0114 and its kind); jose does not use
 * them, and refusing outright keeps it so if code here ever changes, and flags the attempt.
 * `x5t` and `x5t#S256` are allowed (and ignored): they are only thumbprints, carry no key, and
 * Microsoft Entra ID and AD FS put `x5t` on every token beside `kid`.
 */
const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;

/**
 * Accepted `typ` per subject token type, normalised (lower case, no `application/`); null is
 * "no typ". Anything else is a different kind of JWT, e.g. a DPoP proof (dpop+jwt), a logout
 * token (logout+jwt), a security event (secevent+jwt): passed off as a user token, it would let
 * whoever holds one act as its `sub` (token confusion, RFC 8725 §3.11). Many identity providers
 * put `JWT` or nothing on access tokens rather than RFC 9068's at+jwt, so those pass too.
 */
const ACCEPTED_TYPES: Readonly<Record<SubjectTokenType, ReadonlySet<string | null>>> = {
  'urn:ietf:params:oauth:token-type:access_token': new Set(['at+jwt', 'jwt', null]),
  'urn:ietf:params:oauth:token-type:jwt': new Set(['at+jwt', 'jwt', null]),
  'urn:ietf:params:oauth:token-type:id_token': new Set(['jwt', null]),
};

/** Three base64url parts; the signature may be empty here so that `alg: none` is named as such. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * The unverified `iss` of a compact JWS, only to choose which issuer's verification applies;
 * undefined when the token is not a JWS with a string `iss`. Never throws. Nothing else may be
 * read from an unverified token.
 */
export function peekIssuer(token: string): string | undefined {
  if (checkShape(token) !== undefined) return undefined;
  try {
    const { iss } = decodeJwt(token);
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Full verification of a user token against one trusted issuer. Pure apart from what `keys`
 * fetches; the time comes in as `now`. Never throws: every refusal is a UserTokenFailure.
 */
export async function verifyUserToken(
  token: string,
  trust: IssuerTrust,
  keys: JWTVerifyGetKey,
  now: Date,
  tokenType: SubjectTokenType,
): Promise<UserTokenResult> {
  const shape = checkShape(token);
  if (shape) return shape;
  const header = readHeader(token);
  if (header === undefined) return failure('malformed', 'the token header is not a JSON object.');
  const headerFailure = checkHeaderParameters(header) ?? checkType(header, tokenType);
  if (headerFailure) return headerFailure;
  const algorithms = allowedAlgorithms(trust);
  const algorithmFailure = checkAlgorithm(header, algorithms);
  if (algorithmFailure) return algorithmFailure;

  const verified = await verifySignatureAndClaims(token, trust, keys, now, algorithms);
  if (!verified.ok) return verified;
  return checkSubject(verified.claims) ?? checkIssuedAt(verified.claims, now) ?? verified;
}

function failure(reason: UserTokenFailureReason, detail: string): UserTokenFailure {
  return { ok: false, reason, detail };
}

/**
 * Compact JWS only (a JWE, a JSON serialisation or anything else is malformed), within the size
 * cap, in canonical base64url: a lenient decoder accepts several spellings of the same bytes, so
 * anything keyed on the token's text (logs, caches, replay checks) could be dodged by respelling.
 */
function checkShape(token: unknown): UserTokenFailure | undefined {
  if (typeof token !== 'string' || token.length === 0) return failure('malformed', 'the token is empty.');
  if (token.length > MAX_USER_TOKEN_LENGTH) {
    return failure('malformed', `the token is longer than ${MAX_USER_TOKEN_LENGTH} characters.`);
  }
  if (!COMPACT_JWS.test(token)) {
    return failure('malformed', 'the token is not a JWS in compact serialisation (three base64url parts).');
  }
  for (const part of token.split('.')) {
    if (Buffer.from(part, 'base64url').toString('base64url') !== part) {
      return failure('malformed', 'the token is not canonical base64url.');
    }
  }
  return undefined;
}

/** Undefined when the header is not a JSON object. (Not a union with UserTokenFailure: a header
 * may hold any member, `ok` included, and must never be mistaken for a result.) */
function readHeader(token: string): ProtectedHeaderParameters | undefined {
  try {
    return decodeProtectedHeader(token);
  } catch {
    return undefined;
  }
}

function checkHeaderParameters(header: ProtectedHeaderParameters): UserTokenFailure | undefined {
  const embedded = FORBIDDEN_HEADERS.find((name) => Object.hasOwn(header, name));
  if (embedded !== undefined) {
    return failure(
      'forbidden_header',
      `the token header carries '${embedded}': keys come only from the issuer.`,
    );
  }
  // RFC 7515 §4.1.11: a recipient that does not understand a critical extension must refuse the
  // token, since the extension may change what the signature means (b64: false does). reins
  // understands none, so any `crit` is refused; jose would refuse unknown names as well.
  if (Object.hasOwn(header, 'crit')) {
    return failure(
      'unknown_critical_header',
      'the token header names critical extensions reins does not support.',
    );
  }
  return undefined;
}

function checkType(
  header: ProtectedHeaderParameters,
  tokenType: SubjectTokenType,
): UserTokenFailure | undefined {
  const accepted = ACCEPTED_TYPES[tokenType];
  if (accepted === undefined) {
    return failure('wrong_type', 'the subject_token_type is not one reins accepts.');
  }
  const typ = header.typ;
  if (typ === undefined && accepted.has(null)) return undefined;
  // RFC 7515 §4.1.9: compared case-insensitively; `application/` may be left off.
  if (typeof typ === 'string') {
    const lower = typ.toLowerCase();
    const normalised = lower.startsWith('application/') ? lower.slice('application/'.length) : lower;
    if (accepted.has(normalised)) return undefined;
  }
  return failure('wrong_type', 'the token header typ is not one a user token of this type may carry.');
}

/** The issuer's list ∩ USER_TOKEN_ALGORITHMS: none and HS* never, even if a list held them. */
function allowedAlgorithms(trust: IssuerTrust): string[] {
  return trust.algorithms.filter((alg) => USER_TOKEN_ALGORITHMS.includes(alg));
}

function checkAlgorithm(
  header: ProtectedHeaderParameters,
  allowed: readonly string[],
): UserTokenFailure | undefined {
  if (typeof header.alg !== 'string') return failure('malformed', 'the token header has no alg.');
  if (!allowed.includes(header.alg)) {
    return failure(
      'algorithm_not_allowed',
      'the token is signed with an algorithm this issuer is not trusted to use.',
    );
  }
  return undefined;
}

/**
 * The signature against the issuer's keys (picked by `kid` and `alg` from its JWKS, nothing from
 * the token), then `iss`, `aud`, `exp` (required: a token without one would never expire) and
 * `nbf`, by jose. `algorithms` goes to jose too, a second lock on the check above.
 */
async function verifySignatureAndClaims(
  token: string,
  trust: IssuerTrust,
  keys: JWTVerifyGetKey,
  now: Date,
  algorithms: string[],
): Promise<{ ok: true; claims: JWTPayload; header: ProtectedHeaderParameters } | UserTokenFailure> {
  // Errors from the key source other than "no such key" mean the keys could not be had; they
  // are told apart here because jose passes them through unchanged.
  let keysFailed = false;
  const getKey: JWTVerifyGetKey = async (header, input) => {
    try {
      return await keys(header, input);
    } catch (error) {
      const code = codeOf(error);
      if (code !== 'ERR_JWKS_NO_MATCHING_KEY' && code !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') {
        keysFailed = true;
      }
      throw error;
    }
  };
  const options: JWTVerifyOptions = {
    issuer: trust.issuer,
    algorithms,
    requiredClaims: ['exp', 'sub'],
    clockTolerance: CLOCK_LEEWAY_SECONDS,
    currentDate: now,
  };
  if (trust.audience.length > 0) options.audience = [...trust.audience];
  try {
    const { payload, protectedHeader } = await jwtVerify(token, getKey, options);
    return { ok: true, claims: payload, header: protectedHeader };
  } catch (error) {
    if (keysFailed) return failure('keys_unavailable', "the issuer's signing keys could not be loaded.");
    if (error instanceof errors.JWKSMultipleMatchingKeys) return verifyWithEach(token, error, options);
    return classify(error);
  }
}

/**
 * A token without `kid` when the issuer publishes several keys of its type: jose hands back the
 * candidates, and the token is good when one of the issuer's keys verifies it.
 */
async function verifyWithEach(
  token: string,
  candidates: errors.JWKSMultipleMatchingKeys,
  options: JWTVerifyOptions,
): Promise<{ ok: true; claims: JWTPayload; header: ProtectedHeaderParameters } | UserTokenFailure> {
  for await (const key of candidates) {
    try {
      const { payload, protectedHeader } = await jwtVerify(token, key, options);
      return { ok: true, claims: payload, header: protectedHeader };
    } catch (error) {
      if (!(error instanceof errors.JWSSignatureVerificationFailed)) return classify(error);
    }
  }
  return failure('bad_signature', "no key of the issuer verifies the token's signature.");
}

/** jose's error, as a reason. Anything unforeseen is a bad signature: refused either way. */
function classify(error: unknown): UserTokenFailure {
  if (error instanceof errors.JWTExpired) return failure('expired', 'the token has expired.');
  if (error instanceof errors.JWTClaimValidationFailed) {
    const { claim, reason } = error;
    // No aud where one is required means the token is not meant for us, as much as a wrong aud.
    if (claim === 'aud') return failure('wrong_audience', 'the token is not meant for an accepted audience.');
    if (reason === 'missing') return failure('missing_claim', `the token has no '${claim}' claim.`);
    if (reason === 'invalid') {
      return failure('invalid_claim', `the token's '${claim}' claim is not a number.`);
    }
    if (claim === 'iss') return failure('wrong_issuer', 'the token was not issued by this issuer.');
    if (claim === 'nbf') return failure('not_yet_valid', 'the token is not valid yet (nbf).');
  }
  switch (codeOf(error)) {
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return failure(
        'algorithm_not_allowed',
        'the token is signed with an algorithm this issuer is not trusted to use.',
      );
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return failure('malformed', 'the token is not a well-formed JWT.');
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return failure('bad_signature', 'no key of the issuer matches the token (kid and alg).');
    default:
      return failure('bad_signature', "the token's signature does not verify with the issuer's keys.");
  }
}

function codeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

/** The user is `sub`: it must name someone (an empty or non-string sub would match rules oddly). */
function checkSubject(claims: JWTPayload): UserTokenFailure | undefined {
  if (typeof claims.sub !== 'string' || claims.sub === '') {
    return failure('invalid_claim', "the token's 'sub' claim is not a non-empty string.");
  }
  return undefined;
}

/**
 * jose checks `iat` only when asked for a maximum age; an `iat` in the future means a token
 * minted ahead of time or a wrong clock at the issuer, and is refused like an early nbf.
 */
function checkIssuedAt(claims: JWTPayload, now: Date): UserTokenFailure | undefined {
  const nowSeconds = Math.floor(now.getTime() / 1000);
  if (typeof claims.iat === 'number' && claims.iat > nowSeconds + CLOCK_LEEWAY_SECONDS) {
    return failure('not_yet_valid', 'the token was issued in the future (iat).');
  }
  return undefined;
}

export interface IssuerKeysOptions {
  /** How JWKS documents are fetched (Node's fetch by default); tests serve them without network. */
  readonly fetch?: FetchImplementation;
  /** Abort a JWKS fetch after this long (default 5 s): a slow issuer must not hold requests. */
  readonly timeoutMs?: number;
  /** Refetch keys at most this old on use (default 10 min), so a key the issuer drops goes. */
  readonly cacheMaxAgeMs?: number;
  /**
   * After a fetch, an unknown `kid` triggers another only once this long has passed (default
   * 30 s): otherwise anyone presenting tokens with made-up kids would drive a fetch per request.
   */
  readonly cooldownMs?: number;
}

/**
 * Each trusted issuer's verification keys, cached for the life of this object: inline JWKS are
 * imported once per JWKS object, a jwks_uri is fetched once and refreshed per the options (jose's
 * remote JWKS: one fetch in flight at a time, redirects refused). Keys that cannot be had make
 * verification fail with `keys_unavailable`; keysFor itself never throws.
 */
export class IssuerKeys {
  readonly #options: IssuerKeysOptions;
  readonly #inline = new WeakMap<object, JWTVerifyGetKey>();
  readonly #remote = new Map<string, JWTVerifyGetKey>();

  constructor(options: IssuerKeysOptions = {}) {
    this.#options = options;
  }

  /** The key source for `trust`: the same one (and its cache) for the same JWKS or jwks_uri. */
  keysFor(trust: IssuerTrust): JWTVerifyGetKey {
    if ((trust.jwks === null) === (trust.jwksUri === null)) {
      return unavailable('an issuer needs exactly one of jwks and jwks_uri');
    }
    if (trust.jwks !== null) {
      let keys = this.#inline.get(trust.jwks);
      if (keys === undefined) {
        keys = this.#local(trust.jwks);
        this.#inline.set(trust.jwks, keys);
      }
      return keys;
    }
    const id = JSON.stringify([trust.issuer, trust.jwksUri]);
    let keys = this.#remote.get(id);
    if (keys === undefined) {
      keys = this.#fetched(trust.jwksUri as string);
      this.#remote.set(id, keys);
    }
    return keys;
  }

  #local(jwks: { readonly keys: readonly object[] }): JWTVerifyGetKey {
    try {
      return createLocalJWKSet({ keys: [...jwks.keys] } as Parameters<typeof createLocalJWKSet>[0]);
    } catch {
      return unavailable("the issuer's inline JWKS is malformed");
    }
  }

  #fetched(jwksUri: string): JWTVerifyGetKey {
    const url = URL.canParse(jwksUri) ? new URL(jwksUri) : null;
    if (url === null || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
      return unavailable("the issuer's jwks_uri is not an http(s) URL");
    }
    const { fetch, timeoutMs = 5_000, cacheMaxAgeMs = 10 * 60_000, cooldownMs = 30_000 } = this.#options;
    try {
      return createRemoteJWKSet(url, {
        timeoutDuration: timeoutMs,
        cacheMaxAge: cacheMaxAgeMs,
        cooldownDuration: cooldownMs,
        ...(fetch ? { [customFetch]: fetch } : {}),
      });
    } catch {
      return unavailable('the JWKS options are invalid');
    }
  }
}

/** A key source that always fails, so the failure surfaces as `keys_unavailable` on use. */
function unavailable(why: string): JWTVerifyGetKey {
  return async () => {
    throw new Error(why);
  };
}
