-- A permission token used up, and the permission it names (permissions::claim_token): only
-- by the client that owns it, for an intent the permission has, while it is pending, unused
-- and unexpired. One conditional statement: no read before the write.
-- $1 now, $2 the permission, $3 the client, $4 the intent (a whole word of `intents`: the
-- text changes when it is taken out; no LIKE, so no character of it is a pattern), $5 pending.
UPDATE permissions SET token_used_at = $1
WHERE id = $2 AND client_id = $3
  AND (token_used_at IS NULL AND status = $5 AND exp > $1
       AND replace(' ' || intents || ' ', ' ' || $4 || ' ', '') <> ' ' || intents || ' ') IS TRUE
RETURNING id, client_id, kind, loa, iat, exp, statement, digest, intents, user_sub, login_hint,
          app_callback_uri, acr_values, status, token_used_at, auth_req_id, grant_jws, decided_at,
          created_at
