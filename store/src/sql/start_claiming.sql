-- A permission token used up by the request it starts, in one conditional statement
-- (auth_requests::claim_and_start): only by the client that owns it, for an intent the
-- permission has, while it is pending, unused and unexpired, and only while the hinted user
-- has exactly the active devices the request was matched against (their number and their
-- ids): a phone enrolled or revoked since makes it change nothing.
-- $1 now, $2 the request, $3 the permission, $4 pending, $5 the client, $6 the intent (a
-- whole word of `intents`, as in claim_token.sql), $7 the user, $8 active (devices), $9 how
-- many active devices the user had, $10 their ids, each between spaces (ids hold none).
UPDATE permissions SET token_used_at = $1, auth_req_id = $2
WHERE id = $3 AND client_id = $5
  AND (token_used_at IS NULL AND auth_req_id IS NULL AND status = $4 AND exp > $1
       AND replace(' ' || intents || ' ', ' ' || $6 || ' ', '') <> ' ' || intents || ' '
       AND user_sub = $7) IS TRUE
  AND (SELECT count(*) FROM devices WHERE user_sub = $7 AND status = $8) = $9
  AND (SELECT count(*) FROM devices
       WHERE user_sub = $7 AND status = $8 AND replace($10, ' ' || id || ' ', '') <> $10) = $9
