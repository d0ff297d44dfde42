-- 003_issuer_algorithms: the JWS algorithms each trusted issuer's subject tokens may be signed
-- with (policy key trusted_issuers[].algorithms; src/policy/model.ts TrustedIssuerModel).
--
-- Forward only: once landed, never edited. Must run unchanged on PostgreSQL 15 and on PGlite.
-- Verification is pinned to this list, never to the token's own alg header: `none` or an HMAC
-- keyed with the issuer's public key would let anyone forge a user's token (RFC 8725 §2.1).
-- Validation admits asymmetric algorithms only; the check below holds a row written past it to
-- the same list (ISSUER_ALGORITHMS), so nothing outside it is ever loaded.
--
-- The default is the policy default (DEFAULT_ISSUER_ALGORITHMS, in the model's sorted order), so
-- issuers applied before this migration read back exactly as their files now compile, and a
-- server still running the previous release during a rolling upgrade (whose apply does not name
-- the column) keeps working. The current apply always writes the column explicitly.
alter table trusted_issuers
  add column algorithms jsonb not null
    default '["ES256", "ES384", "ES512", "EdDSA", "PS256", "RS256"]'
    check (
      jsonb_typeof(algorithms) = 'array'
      and algorithms <> '[]'
      and algorithms <@ '["ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"]'
    );
