-- 008_monitoring_policy: a tenant's `monitoring:` and an agent's `budget:` (SPEC.md, "Monitoring
-- and containment"; src/policy/model.ts MonitoringModel and BudgetModel), as `reins policy apply`
-- writes them.
--
-- Forward only: once landed, never edited. Must run unchanged on PostgreSQL 15 and on PGlite.
-- Rows applied before this migration read back as null in both columns (not monitored, no
-- budget), which is what their files, having neither key, compile to now.

-- The tenant's MonitoringModel as JSON: learningPeriodMs, the detections it declares (absent
-- ones left out, thresholds in milliseconds and counts), and webhook ({ url, secretEnv }: the
-- name of the environment variable, never the secret) or null. null: the tenant is not monitored.
alter table tenants
  add column monitoring jsonb
    check (monitoring is null or jsonb_typeof(monitoring) = 'object');

-- An agent's budget, counted across every gateway; null: that limit is not set. Bytes out per
-- hour is a bigint: 50GB does not fit an integer. Apps have no budget.
alter table clients
  add column budget_requests_per_minute integer check (budget_requests_per_minute > 0),
  add column budget_bytes_out_per_hour bigint check (budget_bytes_out_per_hour > 0),
  add constraint clients_budget_agents_only
    check (kind = 'agent' or num_nonnulls(budget_requests_per_minute, budget_bytes_out_per_hour) = 0);
