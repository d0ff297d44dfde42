// How long a private_key_jwt client assertion (RFC 7523) may live. PURE.
//
// Threat: an assertion is a bearer credential until its `exp`. One minted with `exp` years away
// and captured once (a log line, a proxy, a compromised agent host) would authenticate its
// client until then, were it not for the replay check, and oidc-provider keeps its `jti` for
// replay detection until that same `exp`: one stored row per assertion, for years, which a
// client (or anyone holding its key) can pile up at will. RFC 7523 §3 lets the server limit the
// lifetime it accepts; an assertion is signed the moment it is sent, so minutes are plenty.
//
// The rule: `exp` at most MAX_ASSERTION_LIFETIME seconds after `iat`, and `iat` not in the
// future (beyond the clock tolerance), which bounds `exp` to about five minutes from now. `iat`
// is OPTIONAL in RFC 7523, so an assertion without it is accepted when its `exp` is at most
// MAX_ASSERTION_LIFETIME seconds from now: that bounds what the threat is about (how long the
// assertion and its `jti` live from here on) just as well.

/** Seconds an assertion may live (exp − iat). */
export const MAX_ASSERTION_LIFETIME = 300;

export type LifetimeCheck = { readonly ok: true } | { readonly ok: false; readonly description: string };

export interface AssertionTimes {
  readonly iat?: unknown;
  readonly exp?: unknown;
}

/**
 * Whether an assertion's `iat`/`exp` are within the limit at `now` (seconds since the epoch).
 * `clockTolerance` (seconds) is the skew allowed between the client's clock and ours.
 */
export function checkAssertionLifetime(
  claims: AssertionTimes,
  now: number,
  clockTolerance: number,
  maxLifetime: number = MAX_ASSERTION_LIFETIME,
): LifetimeCheck {
  const fix = `sign each assertion when it is sent, with exp at most ${maxLifetime} s after iat`;
  const { iat, exp } = claims;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    return refuse(`the client_assertion needs a numeric exp; ${fix}`);
  }
  if (iat === undefined) {
    if (exp - now > maxLifetime + clockTolerance) {
      return refuse(
        `the client_assertion has no iat and its exp is ${Math.round(exp - now)} s away; ` +
          `this server accepts at most ${maxLifetime} s (RFC 7523 section 3); ${fix}`,
      );
    }
    return { ok: true };
  }
  if (typeof iat !== 'number' || !Number.isFinite(iat)) {
    return refuse(`the client_assertion's iat must be a number of seconds since the epoch; ${fix}`);
  }
  if (iat > now + clockTolerance) {
    return refuse(
      `the client_assertion's iat is ${Math.round(iat - now)} s in the future; ` +
        `check the client's clock and ${fix}`,
    );
  }
  if (exp - iat > maxLifetime) {
    return refuse(
      `the client_assertion lives ${Math.round(exp - iat)} s (exp - iat); this server accepts ` +
        `at most ${maxLifetime} s (RFC 7523 section 3); ${fix}`,
    );
  }
  return { ok: true };
}

function refuse(description: string): LifetimeCheck {
  return { ok: false, description };
}
