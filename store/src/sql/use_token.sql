-- A permission token used up (permissions::use_token): $1 now, $2 the permission, $3 pending.
UPDATE permissions SET token_used_at = $1
WHERE id = $2 AND (token_used_at IS NULL AND status = $3) IS TRUE
