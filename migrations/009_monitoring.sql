-- 009_monitoring: what monitoring keeps (SPEC.md, "Monitoring and containment";
-- docs/monitoring.md): which process watches the audit trail and how far it has read, the
-- baselines it learnt, the alerts it raised, and the outbox their webhooks are sent from.
--
-- Forward only: once landed, never edited. Must run unchanged on PostgreSQL 15 and on PGlite.
-- Like the audit trail (001), these rows name tenants and agents as plain text, without foreign
-- keys to the policy tables: an alert must outlive a policy apply that removes its agent.

-- One process in a deployment watches the audit trail (src/runtime/monitoring.ts): the one that
-- holds this lease. It renews the lease while it runs; another takes over once it has lapsed,
-- and continues from where the last checkpoint left the cursor and the baselines.
create table monitor_lease (
  name text primary key,
  holder text not null,
  expires_at timestamptz not null,
  -- The cursor: every audit_events row with id <= after_id has been learnt, except those in
  -- pending (ids skipped over while their insert had not committed yet, still watched for).
  after_id bigint not null,
  pending jsonb not null default '[]'
);

-- What lasts of a baseline (src/monitor/baseline.ts's snapshot), written at checkpoints with
-- the cursor in one transaction, never per request. user_sub '' is the agent's own baseline;
-- otherwise the agent acting for that user (delegated tokens).
create table monitor_baselines (
  tenant text not null,
  agent text not null,
  user_sub text not null,
  snapshot jsonb not null,
  updated_at timestamptz not null default now(),
  primary key (tenant, agent, user_sub)
);

-- Every finding that opened an incident, with what was done about it. This row is the audit
-- record of the response: its evidence, and whether revoking or quarantining succeeded.
create table alerts (
  id bigserial primary key,
  -- When the condition was met (the time of the event that met it).
  time timestamptz not null,
  created_at timestamptz not null default now(),
  tenant text not null,
  agent text not null,
  -- The user the agent acted for, when the finding is of the agent-for-a-user baseline.
  user_sub text,
  detection text not null,
  response text not null check (response in ('alert', 'revoke', 'quarantine')),
  summary text not null,
  evidence jsonb not null,
  -- What the response did: tokens revoked, whether the agent was quarantined, or why not.
  outcome jsonb not null default '{}'
);
create index alerts_tenant_time on alerts (tenant, time);

-- The webhook outbox: one row per alert to send, written with the alert in one transaction, so
-- no alert is lost while the receiver is down; sent and retried apart from any request's path.
create table alert_deliveries (
  alert_id bigint primary key references alerts (id) on delete cascade,
  tenant text not null,
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  delivered_at timestamptz,
  last_error text
);
create index alert_deliveries_due on alert_deliveries (next_attempt_at) where delivered_at is null;

-- Budgets as counted (src/gateway/budget.ts): every gateway process adds what it counted since
-- its last sync (a few times a second) and reads back the sums, so an agent's budget holds
-- across processes without a database round trip per request. Windows are fixed and aligned to
-- the epoch: a minute for requests, an hour for bytes out. Rows of ended windows are deleted.
create table budget_usage (
  tenant text not null,
  agent text not null,
  kind text not null check (kind in ('requests', 'bytes_out')),
  window_start timestamptz not null,
  used bigint not null,
  primary key (tenant, agent, kind, window_start)
);
create index budget_usage_window on budget_usage (window_start);
