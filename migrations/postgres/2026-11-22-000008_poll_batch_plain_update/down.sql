-- 000004's function with the settings of 000006 and 000007.
CREATE OR REPLACE FUNCTION ciba_touch_pending_batch(
    p_ids TEXT[], p_clients TEXT[], p_now_ms BIGINT[], p_grace_ms BIGINT
) RETURNS SETOF TEXT
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    WITH held AS (
        SELECT a.id, p.now_ms
          FROM unnest(p_ids, p_clients, p_now_ms) AS p(id, client_id, now_ms)
          JOIN auth_requests a ON a.id = p.id
         WHERE a.client_id = p.client_id
           AND a.status = 'pending'
           AND a.expires_at > p.now_ms / 1000
           AND (a.last_poll_ms IS NULL
                OR a.last_poll_ms <= p.now_ms + p_grace_ms - a.interval_secs * 1000)
           FOR NO KEY UPDATE OF a SKIP LOCKED
    )
    UPDATE auth_requests a
       SET last_poll_ms = held.now_ms
      FROM held
     WHERE a.id = held.id
    RETURNING a.id;
END
$$;
