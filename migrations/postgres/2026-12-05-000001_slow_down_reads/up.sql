-- slow_down as the cheapest answer (issue 21): a too-early poll no longer counts as the
-- request's last poll (last_poll_ms is the last poll answered authorization_pending); it only
-- grows the interval by 5 s up to p_max_interval and is marked in slowed_down_ms. A too-early
-- poll of a request whose interval is already at its maximum therefore changes nothing: it is
-- answered from a read, with no row version, no WAL and no commit to flush. A client that
-- polls too fast can only make the server read.
--
-- Otherwise as before (the initial migration says why the function looks as it does): one
-- conditional UPDATE for the polls that change their row, waiting up to lock_timeout for
-- held rows and then skipping them; then, only when some polls were not recorded, one
-- SELECT for the too-early polls of requests at the maximum interval. RETURNING sees the row
-- as written and may name the polls' own columns: a slowed poll's slowed_down_ms is its own
-- time, a recorded one's is older (once a poll at a time T is too early, every poll at T is).
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
    capped TEXT[];
BEGIN
    IF p_wait THEN
        -- Until the function returns (its SET clauses are restored on exit).
        PERFORM set_config('lock_timeout', '0', true);
    END IF;
    -- A poll changes its row when it is due (recorded), or too early while the interval can
    -- still grow (p_max_interval NULL: the careful path records due polls only).
    BEGIN
        WITH polled AS (
            UPDATE auth_requests a
               SET last_poll_ms = CASE
                       WHEN ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms)
                       THEN p.now_ms ELSE a.last_poll_ms END,
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
               AND (ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms)
                    OR a.interval_secs < p_max_interval)
            RETURNING a.id, a.slowed_down_ms IS NOT DISTINCT FROM p.now_ms AS slow
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
               AND (ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms)
                    OR a.interval_secs < p_max_interval)
               FOR NO KEY UPDATE OF a SKIP LOCKED
        ), polled AS (
            UPDATE auth_requests a
               SET last_poll_ms = CASE
                       WHEN ciba_poll_due(a.last_poll_ms, a.interval_secs, held.now_ms, p_grace_ms)
                       THEN held.now_ms ELSE a.last_poll_ms END,
                   interval_secs = ciba_paced_interval(a.last_poll_ms, a.interval_secs,
                                                       held.now_ms, p_grace_ms, p_max_interval),
                   slowed_down_ms = CASE
                       WHEN ciba_poll_due(a.last_poll_ms, a.interval_secs, held.now_ms, p_grace_ms)
                       THEN a.slowed_down_ms ELSE held.now_ms END
              FROM held
             WHERE a.id = held.id
            RETURNING a.id, a.slowed_down_ms IS NOT DISTINCT FROM held.now_ms AS slow
        )
        SELECT array_agg(polled.id), array_agg(polled.slow) INTO touched, slowed FROM polled;
    END;
    -- Too early at the maximum interval: nothing to write. Rows this call wrote are left out
    -- (a recorded one may look too early now). Each poll's row is looked up by its key in a
    -- subquery the planner may not flatten (OFFSET 0): joined as a table, the statistics of
    -- a table whose rows are rarely at the maximum interval made it scan the whole table.
    IF p_max_interval IS NOT NULL
       AND coalesce(cardinality(touched), 0) < cardinality(p_ids) THEN
        SELECT array_agg(c.id) INTO capped
          FROM unnest(p_ids, p_clients, p_now_ms) AS p(id, client_id, now_ms)
          CROSS JOIN LATERAL (
              SELECT a.id FROM auth_requests a
               WHERE a.id = p.id
                 AND a.client_id = p.client_id
                 AND a.status = 'pending'
                 AND a.expires_at > p.now_ms / 1000
                 AND a.interval_secs >= p_max_interval
                 AND NOT ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms)
              OFFSET 0) AS c
         WHERE p.id <> ALL (coalesce(touched, '{}'));
    END IF;
    RETURN QUERY SELECT * FROM unnest(touched, slowed)
        UNION ALL SELECT c, true FROM unnest(capped) AS c;
END
$$;
