-- Redeem an approved request exactly once, before its expiry, and record the event: one
-- statement, so one round trip and one commit (no BEGIN/COMMIT trips of their own). It
-- returns what the tokens are made of: the request as redeemed, and its permission and user
-- as JSON (no row when nothing was redeemed). A request whose user is gone is not redeemed:
-- its tokens could not be made, and the approval must outlive the fault.
-- $1 now (seconds), $2 the request, $3 the client, $4 the approved status,
-- $5..$13 the audit event (audit::bind_pg).
-- The conditions besides the key are written "(...) IS TRUE" (the same for NOT NULL columns)
-- so that the planner cannot take them to an index: found by its key, the row is one look-up.
-- A plan through (status, expires_at) was cheaper on paper while approved rows looked rare
-- (statistics from before a busy minute) and read every approved, unexpired request.
WITH redeemed AS (
    UPDATE auth_requests SET redeemed_at = $1
    WHERE id = $2 AND (client_id = $3 AND status = $4 AND redeemed_at IS NULL AND expires_at > $1
                   AND EXISTS (SELECT 1 FROM users u WHERE u.sub = auth_requests.user_sub)) IS TRUE
    RETURNING *
), audited AS (
    INSERT INTO audit_events (id, at_ms, actor_kind, actor_id, action, object_id, outcome, source, request_id)
    SELECT $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM redeemed
)
SELECT r.*,
    (SELECT row_to_json(p) FROM permissions p WHERE p.id = r.permission_id)::text AS permission_json,
    (SELECT row_to_json(u) FROM users u WHERE u.sub = r.user_sub)::text AS user_json
FROM redeemed r
