-- 001_foundation: the token ledger and its revocation feed, signing keys, oidc-provider's
-- storage, the audit trail and the gateway's interception CA.
--
-- Forward only: once this file has landed it is never edited (its sha256 is recorded in
-- schema_migrations); changes go in a new, higher-numbered file. It must run unchanged on
-- PostgreSQL 15 and on PGlite. Tenants are plain `tenant text` columns, without foreign keys
-- to the policy tables (002): these rows (tokens already issued, audit history) must outlive the
-- policy that allowed them, e.g. an agent removed by a policy apply.

-- The jti ledger: every access token issued, for revocation, introspection and audit.
create table issued_tokens (
  jti text primary key,
  tenant text not null,
  client_id text not null,
  sub text not null,
  -- The acting agent: the client itself for client credentials, act.sub for token exchange.
  -- Quarantining an agent kills every token it acts in.
  agent text,
  -- The token this one was exchanged from, when that was one of ours (RFC 8693 chains), so that
  -- revoking a token can revoke everything delegated from it. No foreign key: the expiry sweep
  -- removes parents and children in any order.
  parent_jti text,
  -- How it was obtained: 'client_credentials' or 'token_exchange'.
  kind text not null,
  -- The signing key: a key retires only after the last token it signed has expired.
  kid text,
  issued_at timestamptz not null default now(),
  expires_at timestamptz not null,
  revoked_at timestamptz,
  revocation_reason text
);
create index issued_tokens_expires_at on issued_tokens (expires_at);
create index issued_tokens_tenant_client on issued_tokens (tenant, client_id);
create index issued_tokens_parent on issued_tokens (parent_jti) where parent_jti is not null;
create index issued_tokens_kid_expiry on issued_tokens (kid, expires_at);

-- The revocation feed gateways poll: "every event after seq N". A revoked token (kind 'token',
-- jti set) or an agent quarantined or released (kind 'agent_quarantined' / 'agent_released',
-- agent set). To revoke, set issued_tokens.revoked_at and insert a row here in one transaction.
create sequence revocations_seq;
create table revocations (
  seq bigint primary key,
  kind text not null check (kind in ('token', 'agent_quarantined', 'agent_released')),
  tenant text not null,
  jti text,
  agent text,
  reason text,
  occurred_at timestamptz not null default now(),
  -- For tokens: when the token expires anyway; after that the row can be pruned.
  expires_at timestamptz,
  check ((kind = 'token') = (jti is not null)),
  check (kind = 'token' or agent is not null)
);
create index revocations_jti on revocations (jti) where jti is not null;
create index revocations_agent on revocations (tenant, agent) where agent is not null;
create index revocations_expires_at on revocations (expires_at) where expires_at is not null;

-- Threat: a missed revocation. With a plain bigserial, sequence numbers are taken at insert but
-- become visible at commit, in any order: a poller that has seen seq 11 commit would never look
-- back for seq 10 committing a moment later, and that token would stay valid at that gateway.
-- So every insert takes a transaction-scoped lock before drawing its number: numbers then become
-- visible in order, and "seq > last seen" never skips one. Revocations are rare; the wait is not.
create function revocations_assign_seq() returns trigger language plpgsql as $$
begin
  perform pg_advisory_xact_lock(1919248750, hashtext('revocations:' || coalesce(current_schema(), '')));
  new.seq := nextval('revocations_seq');
  return new;
end
$$;
create trigger revocations_assign_seq before insert on revocations
  for each row execute function revocations_assign_seq();

-- Wakes listening gateways when the inserting transaction commits. Only a hint: a gateway also
-- polls, and re-reads the feed after its listener reconnects.
create function revocations_notify() returns trigger language plpgsql as $$
begin
  perform pg_notify('reins_revocations', new.seq::text);
  return null;
end
$$;
create trigger revocations_notify after insert on revocations
  for each row execute function revocations_notify();

-- Keys that sign access tokens (ES256 by default, EdDSA allowed). Life cycle: 'pending'
-- (published in the JWKS before first use, so verifiers have it cached), 'active' (signs),
-- 'retiring' (no longer signs, still published until every token it signed has expired),
-- 'retired'.
create table signing_keys (
  kid text primary key,
  alg text not null,
  state text not null check (state in ('pending', 'active', 'retiring', 'retired')),
  public_jwk jsonb not null,
  -- PKCS#8 PEM, or its ciphertext; `encryption` names the scheme ('none' when REINS_SECRET_KEY
  -- is unset), so keys written under an older scheme stay readable.
  private_key text not null,
  encryption text not null default 'none',
  created_at timestamptz not null default now(),
  activated_at timestamptz,
  retired_at timestamptz
);
create index signing_keys_state on signing_keys (state);

-- oidc-provider's adapter storage: one row per (model, id), e.g. ('Grant', id),
-- ('ClientCredentials', jti), ('Session', id). The columns beside the payload serve the
-- adapter's lookups: findByUid, findByUserCode, revokeByGrantId, and the expiry sweep.
create table oidc_models (
  model text not null,
  id text not null,
  payload jsonb not null,
  grant_id text,
  user_code text,
  uid text,
  expires_at timestamptz,
  consumed_at timestamptz,
  primary key (model, id)
);
create index oidc_models_grant_id on oidc_models (grant_id) where grant_id is not null;
create index oidc_models_uid on oidc_models (uid) where uid is not null;
create index oidc_models_user_code on oidc_models (user_code) where user_code is not null;
create index oidc_models_expires_at on oidc_models (expires_at) where expires_at is not null;

-- One row per gateway decision (the JSON log line carries the same facts). No query string is
-- ever stored: it can carry secrets.
create table audit_events (
  id bigserial primary key,
  time timestamptz not null,
  request_id text not null,
  -- Null only when no token could be verified (a 407): such a request belongs to no tenant.
  tenant text,
  agent text,
  subject text,
  -- The RFC 8693 act chain as issued, newest actor outermost.
  delegation_chain jsonb,
  jti text,
  method text,
  scheme text,
  host text,
  port integer,
  path text,
  decision text not null check (decision in ('allowed', 'denied')),
  reason text,
  matched_rule text,
  resolved_address text,
  inspected boolean not null default false,
  status integer,
  bytes_in bigint not null default 0,
  bytes_out bigint not null default 0,
  duration_ms double precision
);
create index audit_events_tenant_time on audit_events (tenant, time);
create index audit_events_time on audit_events (time);
create index audit_events_jti on audit_events (jti) where jti is not null;

-- The gateway's interception CA: created on first start by whichever process gets there first
-- (insert ... on conflict do nothing, then read back), so every gateway uses the same one.
create table interception_ca (
  id text primary key,
  cert_pem text not null,
  -- PKCS#8 PEM, or its ciphertext; `encryption` as in signing_keys.
  private_key text not null,
  encryption text not null default 'none',
  created_at timestamptz not null default now(),
  not_after timestamptz not null
);
