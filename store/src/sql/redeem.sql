-- An approved request redeemed once, by its client (auth_requests::redeem): $1 now, $2 the
-- request, $3 its client, $4 approved. Not while its user is missing (see redeem.pg.sql).
UPDATE auth_requests SET redeemed_at = $1
WHERE id = $2 AND (client_id = $3 AND status = $4 AND redeemed_at IS NULL AND expires_at > $1
                   AND EXISTS (SELECT 1 FROM users u WHERE u.sub = auth_requests.user_sub)) IS TRUE
