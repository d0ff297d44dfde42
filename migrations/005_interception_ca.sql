-- 005_interception_ca: rotation of the gateway's interception CA (src/gateway/ca, docs/interception-ca.md).
--
-- Forward only: once landed, never edited. Must run unchanged on PostgreSQL 15 and on PGlite.
--
-- 001 gave the table one CA's worth of columns. Rotation needs to tell the CA that signs leaf
-- certificates ("active": retired_at is null) from those it replaced, which stay in the trusted
-- bundle (`reins ca export`) until trusted_until, the end of their overlap (never past not_after),
-- so that leaves they signed keep verifying at agents that already hold the new bundle.
alter table interception_ca
  add column retired_at timestamptz,
  add column trusted_until timestamptz,
  -- A replaced CA never signs again, so rotation erases its private key (null): a key that lets
  -- its holder impersonate any host to every agent that still trusts it should not outlive its use.
  alter column private_key drop not null;

-- Defensive: 001 could not say which CA is current. Should several rows exist, the newest one
-- signs and the others retire with their keys erased, staying trusted until they expire.
update interception_ca
   set retired_at = now(), trusted_until = not_after, private_key = null
 where id <> (select id from interception_ca order by created_at desc, id limit 1);

alter table interception_ca
  add constraint interception_ca_retirement check ((retired_at is null) = (trusted_until is null)),
  add constraint interception_ca_active_has_key check (retired_at is not null or private_key is not null);

-- At most one active CA, enforced by the database: the first start's `insert ... on conflict do
-- nothing` relies on it, so gateways starting together on an empty database agree on one CA.
create unique index interception_ca_one_active on interception_ca ((retired_at is null))
  where retired_at is null;
