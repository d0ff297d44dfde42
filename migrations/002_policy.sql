-- 002_policy: the applied policy (policies/*.yaml, compiled by src/policy, written by
-- `reins policy apply`): tenants, their integrations, OAuth clients (agents and apps), trusted
-- issuers, user rights, ceilings, owned destinations and federation, and the version history.
--
-- Forward only: once landed, never edited. Must run unchanged on PostgreSQL 15 and on PGlite.
-- An apply replaces every row below in one transaction, so readers see the old policy or the new
-- one, never a mix. Rules are stored as canonical rule text (src/egress formatRule), lists as
-- json arrays in the order the compiler gave them (collations differ between servers, so order
-- never comes from `order by` on text).

-- One row per apply that changed something. content_hash is the sha256 over the sorted files'
-- names and contents: applying files whose hash equals the latest version's is a no-op.
create table policy_versions (
  version integer primary key check (version > 0),
  content_hash text not null,
  applied_at timestamptz not null default now(),
  files jsonb not null,
  summary text not null
);

create table tenants (
  id text primary key,
  max_token_ttl integer not null check (max_token_ttl > 0),
  delegation_depth integer not null check (delegation_depth > 0),
  -- The tenant's ceiling as canonical rules; null when the tenant has none (not the same as [],
  -- which would allow nothing).
  egress_ceiling jsonb
);

create table integrations (
  tenant text not null references tenants (id) on delete cascade,
  name text not null,
  rules jsonb not null,
  primary key (tenant, name)
);

-- OAuth clients. client_id is the primary key on its own: ids are unique across the deployment,
-- because the token endpoint finds the client before it knows the tenant. Credentials are only
-- ever references: public keys (jwks, jwks_uri), an environment variable name, or a scrypt hash.
create table clients (
  client_id text primary key,
  tenant text not null references tenants (id) on delete cascade,
  kind text not null check (kind in ('agent', 'app')),
  description text,
  auth_method text not null
    check (auth_method in ('private_key_jwt', 'client_secret_basic', 'client_secret_post')),
  jwks jsonb,
  jwks_uri text,
  secret_env text,
  secret_hash text,
  -- Agents: token lifetime in seconds, agents it may delegate onwards to, the integration names
  -- its grant used, the registered grant and the effective grant (registered ∩ ceiling).
  token_ttl integer check (token_ttl > 0),
  may_act jsonb not null default '[]',
  integrations jsonb not null default '[]',
  egress jsonb not null default '[]',
  effective_egress jsonb not null default '[]',
  -- Apps: agents it may obtain tokens for on behalf of a user.
  may_delegate_to jsonb not null default '[]',
  check (num_nonnulls(jwks, jwks_uri, secret_env, secret_hash) = 1),
  check ((auth_method = 'private_key_jwt') = (jwks is not null or jwks_uri is not null)),
  check ((kind = 'agent') = (token_ttl is not null))
);
create index clients_tenant on clients (tenant);

create table trusted_issuers (
  tenant text not null references tenants (id) on delete cascade,
  issuer text not null,
  jwks jsonb,
  jwks_uri text,
  -- Accepted aud values; [] accepts any.
  audience jsonb not null,
  subject_claim text not null,
  groups_claim text not null,
  roles_claim text not null,
  primary key (tenant, issuer),
  check (num_nonnulls(jwks, jwks_uri) = 1)
);

-- User rights: a match on subject-token claims (json: issuer, sub, email, groups, roles, claims;
-- null members are not conditions) and the egress it grants.
create table user_rights (
  tenant text not null references tenants (id) on delete cascade,
  id text not null,
  match jsonb not null,
  integrations jsonb not null,
  egress jsonb not null,
  effective_egress jsonb not null,
  primary key (tenant, id)
);

-- Destinations a tenant owns: other tenants' agents never reach them (gateway reason
-- cross_tenant) unless the owner federates them below.
create table owned_destinations (
  tenant text not null references tenants (id) on delete cascade,
  position integer not null,
  rule text not null,
  primary key (tenant, position)
);

-- What of its owned destinations `tenant` lets the agents of `peer_tenant` reach.
create table federation (
  tenant text not null references tenants (id) on delete cascade,
  peer_tenant text not null references tenants (id) on delete cascade,
  egress jsonb not null,
  primary key (tenant, peer_tenant),
  check (tenant <> peer_tenant)
);
