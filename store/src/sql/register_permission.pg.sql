-- Store a new permission: its nonce claimed (unique per client forever; a nonce used
-- before stores nothing), its user looked up by the NNIN, and the event recorded. One
-- statement, so one round trip and one commit; concurrent registrations with one nonce:
-- the second waits for the first and stores nothing.
-- $1 id, $2 client, $3 kind, $4 loa, $5 iat, $6 exp, $7 statement, $8 digest, $9 intents,
-- $10 login hint (NNIN), $11 app_callback_uri, $12 acr_values, $13 status, $14 created_at,
-- $15 nonce hash, $16..$24 the audit event (audit::bind_pg), $25 active (devices).
-- Also answers who the hint names now and their active devices (as JSON), for the process to
-- start the request from without reading them again (permissions::register_reading_user).
WITH claimed AS (
    INSERT INTO permission_nonces (client_id, nonce_hash, created_at) VALUES ($2, $15, $14)
    ON CONFLICT DO NOTHING
    RETURNING 1
), stored AS (
    INSERT INTO permissions (id, client_id, kind, loa, iat, exp, statement, digest, intents,
                             user_sub, login_hint, app_callback_uri, acr_values, status, created_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9,
           (SELECT sub FROM users WHERE nnin = $10), $10, $11, $12, $13, $14
    FROM claimed
    RETURNING id
), audited AS (
    INSERT INTO audit_events (id, at_ms, actor_kind, actor_id, action, object_id, outcome, source, request_id)
    SELECT $16, $17, $18, $19, $20, $21, $22, $23, $24 FROM stored
)
SELECT count(*) AS n,
    (SELECT sub FROM users WHERE nnin = $10) AS hinted_sub,
    (SELECT json_agg(d) FROM users u JOIN devices d ON d.user_sub = u.sub
     WHERE u.nnin = $10 AND d.status = $25)::text AS devices
FROM stored
