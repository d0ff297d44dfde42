// Where the token is in a proxy request (SPEC.md, "The gateway"). PURE.
//
// - `Proxy-Authorization: Bearer <token>`;
// - `Basic` with the token as the password and any non-empty user name
//   (`http://agent:<token>@gateway:3128`, the one form every mainstream client sends);
// - `Basic` with the token as the user name and an empty password (`http://<token>@gateway:3128`).
//
// Only one Proxy-Authorization header is accepted: two could be read differently by two
// components, and one of them may not be the one that was checked. Basic credentials must be
// base64 of `user:password` (RFC 7617 §2): without the colon they are not Basic at all, and
// guessing which half was meant is how two readers come to disagree.

/** What is wrong with the credentials, before any token is verified. */
export type CredentialProblem = 'missing' | 'malformed' | 'multiple';

export type ProxyCredential =
  | { readonly ok: true; readonly token: string }
  | { readonly ok: false; readonly problem: CredentialProblem; readonly detail: string };

/** A JWS compact serialization's alphabet; anything else is not one of our tokens. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Far above any token reins issues; bounds the work done on a hostile header. */
const MAX_TOKEN_LENGTH = 8 * 1024;

/** `values`: every Proxy-Authorization header of the request, as received. */
export function proxyCredential(values: readonly string[]): ProxyCredential {
  if (values.length === 0) return missing('no Proxy-Authorization header; send the token as Bearer');
  if (values.length > 1) {
    return { ok: false, problem: 'multiple', detail: 'more than one Proxy-Authorization header' };
  }
  const value = (values[0] ?? '').trim();
  const space = value.indexOf(' ');
  const scheme = (space < 0 ? value : value.slice(0, space)).toLowerCase();
  const rest = space < 0 ? '' : value.slice(space + 1).trim();
  let token: string;
  if (scheme === 'bearer') {
    token = rest;
  } else if (scheme === 'basic') {
    const decoded = decodeBasic(rest);
    if (decoded === null) return malformed('Basic credentials are not base64 of user:password');
    const { user, password } = decoded;
    token = password !== '' ? password : user;
    if (password !== '' && user === '') return malformed('Basic credentials need a user name with the token');
  } else {
    return malformed('use Bearer <token>, or Basic with the token as the password');
  }
  if (token === '') return missing('the credentials carry no token');
  if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) {
    return malformed('the credentials do not hold a token');
  }
  return { ok: true, token };
}

function decodeBasic(encoded: string): { user: string; password: string } | null {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.length > 4 * MAX_TOKEN_LENGTH) return null;
  const text = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return null;
  return { user: safeDecode(text.slice(0, colon)), password: safeDecode(text.slice(colon + 1)) };
}

/** Clients percent-encode userinfo from proxy URLs inconsistently; tokens never need it. */
function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function missing(detail: string): ProxyCredential {
  return { ok: false, problem: 'missing', detail };
}

function malformed(detail: string): ProxyCredential {
  return { ok: false, problem: 'malformed', detail };
}
