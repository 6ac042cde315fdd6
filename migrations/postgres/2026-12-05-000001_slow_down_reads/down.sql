-- Back to the initial migration's ciba_record_polls: every poll counts as the last one.
CREATE OR REPLACE FUNCTION ciba_record_polls(
    p_ids TEXT[], p_clients TEXT[], p_now_ms BIGINT[], p_grace_ms BIGINT, p_wait BOOLEAN,
    p_max_interval BIGINT
) RETURNS TABLE (request_id TEXT, slowed_down BOOLEAN)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET lock_timeout = '20ms'
AS $$
DECLARE
    touched TEXT[];
    slowed BOOLEAN[];
BEGIN
    IF p_wait THEN
        -- Until the function returns (its SET clauses are restored on exit).
        PERFORM set_config('lock_timeout', '0', true);
    END IF;
    BEGIN
        WITH polled AS (
            UPDATE auth_requests a
               SET last_poll_ms = p.now_ms,
                   interval_secs = ciba_paced_interval(a.last_poll_ms, a.interval_secs,
                                                       p.now_ms, p_grace_ms, p_max_interval),
                   slowed_down_ms = CASE
                       WHEN ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms)
                       THEN a.slowed_down_ms ELSE p.now_ms END
              FROM unnest(p_ids, p_clients, p_now_ms) AS p(id, client_id, now_ms)
             WHERE a.id = p.id
               AND a.client_id = p.client_id
               AND a.status = 'pending'
               AND a.expires_at > p.now_ms / 1000
               AND (p_max_interval IS NOT NULL
                    OR ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms))
            RETURNING a.id, a.slowed_down_ms IS NOT DISTINCT FROM a.last_poll_ms AS slow
        )
        SELECT array_agg(polled.id), array_agg(polled.slow) INTO touched, slowed FROM polled;
    EXCEPTION WHEN lock_not_available THEN
        WITH held AS (
            SELECT a.id, p.now_ms
              FROM unnest(p_ids, p_clients, p_now_ms) AS p(id, client_id, now_ms)
              JOIN auth_requests a ON a.id = p.id
             WHERE a.client_id = p.client_id
               AND a.status = 'pending'
               AND a.expires_at > p.now_ms / 1000
               AND (p_max_interval IS NOT NULL
                    OR ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms))
               FOR NO KEY UPDATE OF a SKIP LOCKED
        ), polled AS (
            UPDATE auth_requests a
               SET last_poll_ms = held.now_ms,
                   interval_secs = ciba_paced_interval(a.last_poll_ms, a.interval_secs,
                                                       held.now_ms, p_grace_ms, p_max_interval),
                   slowed_down_ms = CASE
                       WHEN ciba_poll_due(a.last_poll_ms, a.interval_secs, held.now_ms, p_grace_ms)
                       THEN a.slowed_down_ms ELSE held.now_ms END
              FROM held
             WHERE a.id = held.id
            RETURNING a.id, a.slowed_down_ms IS NOT DISTINCT FROM a.last_poll_ms AS slow
        )
        SELECT array_agg(polled.id), array_agg(polled.slow) INTO touched, slowed FROM polled;
    END;
    RETURN QUERY SELECT * FROM unnest(touched, slowed);
END
$$;
