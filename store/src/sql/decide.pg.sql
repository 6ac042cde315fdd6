-- A user's signed decision, recorded once: its jti and that of the device JWT that carried
-- it spent, the request decided if both were fresh and it is still pending and unexpired, the request's permission following it, and the event recorded. One
-- statement, so one round trip and one commit. A used jti changes nothing but the other jti,
-- spent all the same; a fresh jti on a request no longer pending is spent all the same (as
-- the transaction it replaces did).
-- (A request with a ping to queue takes the transaction instead.) The request is found by
-- its key alone: "(...) IS TRUE" keeps its other conditions away from the planner's indexes
-- (see redeem.pg.sql).
-- $1 jti key, $2 its expiry, $3 the request's new status, $4 now (seconds), $5 the device,
-- $6 amr (JSON), $7 the request, $8 pending (requests), $9 the permission's new status,
-- $10 pending (permissions), $11 the device JWT's jti key, $12 its expiry, $13..$21 the
-- audit event (audit::bind_pg), $22 active (devices): the device must still be active (it
-- may have been revoked since the API read it).
WITH active AS (
    SELECT 1 FROM devices WHERE id = $5 AND status = $22
), spent AS (
    INSERT INTO used_jtis (jti_key, expires_at) VALUES ($1, $2), ($11, $12)
    ON CONFLICT DO NOTHING
    RETURNING jti_key
), decided AS (
    UPDATE auth_requests SET status = $3, decided_at = $4, device_id = $5, amr = $6
    WHERE id = $7 AND (status = $8 AND expires_at > $4) IS TRUE AND (SELECT count(*) FROM spent) = 2
        AND EXISTS (SELECT 1 FROM active)
    RETURNING id, permission_id, user_sub
), followed AS (
    UPDATE permissions p SET status = $9, decided_at = $4, user_sub = d.user_sub
    FROM decided d
    WHERE p.id = d.permission_id AND p.auth_req_id = d.id AND p.status = $10
), audited AS (
    INSERT INTO audit_events (id, at_ms, actor_kind, actor_id, action, object_id, outcome, source, request_id)
    SELECT $13, $14, $15, $16, $17, $18, $19, $20, $21 FROM decided
)
SELECT (SELECT count(*) FROM spent WHERE jti_key = $1) AS spent,
    (SELECT count(*) FROM spent WHERE jti_key = $11) AS device_spent,
    (SELECT count(*) FROM active) AS device_active,
    (SELECT count(*) FROM decided) AS n
