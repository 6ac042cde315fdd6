-- Back to the first version (migration 000003).
CREATE OR REPLACE FUNCTION ciba_touch_pending_batch(
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
