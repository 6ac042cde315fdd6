-- The rest of one statement that begins "WITH claimed AS (" followed by claim_token.sql
-- (permissions::claim_for_user, PostgreSQL): with the token's claim, the user the claimed
-- permission hints (by its user_sub, else by its login hint) and that user's active devices,
-- as JSON. App-authorize's claim and its look at the user's phones in one round trip; no
-- row when nothing was claimed. Its binds follow claim_token.sql's (prepared::Template::chain):
-- $1 active (devices).
), hinted AS (
    SELECT u.sub FROM claimed c JOIN users u ON u.sub = c.user_sub
    UNION ALL
    SELECT u.sub FROM claimed c JOIN users u ON u.nnin = c.login_hint WHERE c.user_sub IS NULL
)
SELECT c.*, h.sub AS hinted_sub,
    (SELECT json_agg(d) FROM devices d
     WHERE d.user_sub = h.sub AND d.status = $1)::text AS devices
FROM claimed c LEFT JOIN hinted h ON true
