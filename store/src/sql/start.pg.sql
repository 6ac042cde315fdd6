-- Start a request from a permission: the permission used by the request (if no request was
-- started from it yet and it is still pending and valid), the request stored, and the event
-- recorded; all or nothing. One statement, so one round trip and one commit.
-- $1 now (seconds), $2 the permission, $3..$17 the request (id, link_ref, client_id,
-- permission_id, user_sub, flow, scope, acr, binding_message, client_notification_token,
-- allowed_devices, status, interval_secs, created_at, expires_at), $18 pending
-- (permissions), $19..$27 the audit event (audit::bind_pg).
WITH used AS (
    UPDATE permissions SET token_used_at = $1, auth_req_id = $3
    WHERE id = $2 AND auth_req_id IS NULL AND status = $18 AND exp > $1
    RETURNING id
), stored AS (
    INSERT INTO auth_requests (id, link_ref, client_id, permission_id, user_sub, flow, scope, acr,
                               binding_message, client_notification_token, allowed_devices, status,
                               interval_secs, created_at, expires_at)
    SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 FROM used
    RETURNING id
), audited AS (
    INSERT INTO audit_events (id, at_ms, actor_kind, actor_id, action, object_id, outcome, source, request_id)
    SELECT $19, $20, $21, $22, $23, $24, $25, $26, $27 FROM stored
)
SELECT count(*) AS n FROM stored
