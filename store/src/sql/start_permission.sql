-- The permission used by the request started from it (auth_requests::start): $1 now, $2 the
-- request, $3 the permission, $4 pending.
UPDATE permissions SET token_used_at = $1, auth_req_id = $2
WHERE id = $3 AND (auth_req_id IS NULL AND status = $4 AND exp > $1) IS TRUE
