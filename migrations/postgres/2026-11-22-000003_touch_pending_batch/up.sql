-- The polling hot path for many polls in one round trip: the API collects the polls that
-- arrive while the previous batch is in the database and records them with one call.
-- Returns the ids whose poll was recorded (well paced, pending, unexpired, of that client);
-- the others need a closer look, exactly as with ciba_touch_pending.
-- Rows another transaction holds are skipped, never waited for: a batch never deadlocks with
-- another batch (from this or another replica), and a poll racing another poll of the same
-- request is the too-fast one anyway.
CREATE FUNCTION ciba_touch_pending_batch(
    p_ids TEXT[], p_clients TEXT[], p_now_ms BIGINT[], p_grace_ms BIGINT
) RETURNS SETOF TEXT
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH polls AS (
        SELECT * FROM unnest(p_ids, p_clients, p_now_ms) AS t(id, client_id, now_ms)
    ), held AS (
        SELECT a.id FROM auth_requests a JOIN polls ON a.id = polls.id
           FOR UPDATE OF a SKIP LOCKED
    )
    UPDATE auth_requests a
       SET last_poll_ms = polls.now_ms
      FROM polls JOIN held ON held.id = polls.id
     WHERE a.id = polls.id
       AND a.client_id = polls.client_id
       AND a.status = 'pending'
       AND a.expires_at > polls.now_ms / 1000
       AND (a.last_poll_ms IS NULL
            OR a.last_poll_ms <= polls.now_ms + p_grace_ms - a.interval_secs * 1000)
    RETURNING a.id;
END
$$;
