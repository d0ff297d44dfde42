-- 004_audit_indexes: `reins audit query --agent NAME` reads one agent's newest events. 001 indexes
-- audit_events by (tenant, time) and by time only, so an agent filter without a tenant scanned
-- the whole time index. Agent names are unique across the deployment, so (agent, time) answers
-- it alone. Tail and follow read by id (the primary key) and need nothing more.
--
-- Forward only: once landed, never edited. Must run unchanged on PostgreSQL 15 and on PGlite.
create index audit_events_agent_time on audit_events (agent, time) where agent is not null;
