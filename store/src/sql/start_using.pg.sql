-- The permission used by the request it starts (auth_requests::start_recorded, PostgreSQL),
-- if no request was started from it yet and it is still pending and valid. Followed by
-- start_stored.pg.sql in one statement that begins "WITH used AS (".
-- $1 now (seconds), $2 the request, $3 the permission, $4 pending (permissions).
UPDATE permissions SET token_used_at = $1, auth_req_id = $2
WHERE id = $3 AND auth_req_id IS NULL AND status = $4 AND exp > $1
