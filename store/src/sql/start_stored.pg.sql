-- The rest of one statement that begins "WITH used AS (" followed by the permission's
-- UPDATE (start_using.pg.sql, or start_claiming.sql for auth_requests::claim_and_start): the
-- request stored and its event recorded if the permission was used by it; all or nothing,
-- one round trip and one commit. Its binds follow the UPDATE's (prepared::Template::chain):
-- $1..$15 the request (id, link_ref, client_id, permission_id, user_sub, flow, scope, acr,
-- binding_message, client_notification_token, allowed_devices, status, interval_secs,
-- created_at, expires_at), $16..$24 the audit event (audit::bind_event).
RETURNING id
), stored AS (
    INSERT INTO auth_requests (id, link_ref, client_id, permission_id, user_sub, flow, scope, acr,
                               binding_message, client_notification_token, allowed_devices, status,
                               interval_secs, created_at, expires_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM used
    RETURNING id
), audited AS (
    INSERT INTO audit_events (id, at_ms, actor_kind, actor_id, action, object_id, outcome, source, request_id)
    SELECT $16, $17, $18, $19, $20, $21, $22, $23, $24 FROM stored
)
SELECT count(*) AS n FROM stored
