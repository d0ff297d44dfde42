-- 007_audit_request_id_unique: one row per exchange, whatever happens to the connection. The audit
-- writer retries a batch whose INSERT failed; when the connection died after PostgreSQL committed
-- it but before the answer arrived (a server restart, a network cut), the retry wrote the rows a
-- second time. Every exchange has its own request id (a random UUID), so the writer now inserts
-- with `on conflict (request_id) do nothing` against this index: a retry, or a spool replayed
-- after a crash, writes each row exactly once.
--
-- Duplicates already written that way are removed first (the oldest row of each is kept; the
-- copies are identical).
--
-- Forward only: once landed, never edited. Must run unchanged on PostgreSQL 15 and on PGlite.
delete from audit_events a using audit_events b where a.request_id = b.request_id and a.id > b.id;
create unique index audit_events_request_id on audit_events (request_id);
