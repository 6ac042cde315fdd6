-- The rest of one statement that begins "WITH used AS (" followed by start_claiming.sql
-- (auth_requests::claim_and_start, PostgreSQL): the request stored and its event recorded
-- if the token was used by it; all or nothing, one round trip and one commit.
-- $11..$25 the request (id, link_ref, client_id, permission_id, user_sub, flow, scope, acr,
-- binding_message, client_notification_token, allowed_devices, status, interval_secs,
-- created_at, expires_at), $26..$34 the audit event (audit::bind_pg).
RETURNING id
), stored AS (
    INSERT INTO auth_requests (id, link_ref, client_id, permission_id, user_sub, flow, scope, acr,
                               binding_message, client_notification_token, allowed_devices, status,
                               interval_secs, created_at, expires_at)
    SELECT $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25 FROM used
    RETURNING id
), audited AS (
    INSERT INTO audit_events (id, at_ms, actor_kind, actor_id, action, object_id, outcome, source, request_id)
    SELECT $26, $27, $28, $29, $30, $31, $32, $33, $34 FROM stored
)
SELECT count(*) AS n FROM stored
