-- The permission a request was started from follows the request's end, if it is still
-- pending (permissions::follow_request); who decided is recorded when known.
-- $1 the permission's new status, $2 now, $3 the user who decided (NULL: unchanged),
-- $4 the permission, $5 the request, $6 pending.
UPDATE permissions SET status = $1, decided_at = $2, user_sub = COALESCE($3, user_sub)
WHERE id = $4 AND (auth_req_id = $5 AND status = $6) IS TRUE
