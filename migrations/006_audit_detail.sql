-- 006_audit_detail: what more is known of a refusal. A 407 row had only `invalid_token` (no
-- tenant, no target): now it keeps the credential problem (missing, malformed, multiple, invalid,
-- expired, wrong_audience, revoked, ...) here, and its target in the columns it already had. A
-- 400 keeps its fault in words. Never a token, a header value or a query string.
--
-- Forward only: once landed, never edited. Must run unchanged on PostgreSQL 15 and on PGlite.
alter table audit_events add column detail text;
