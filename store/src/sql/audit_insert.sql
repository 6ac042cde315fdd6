-- One audit event (audit::insert); $1..$9 in the order of audit::bind_pg.
INSERT INTO audit_events (id, at_ms, actor_kind, actor_id, action, object_id, outcome, source, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
