-- The same function, same answers, planned in linear time. The first version joined the
-- locked rows back to the polls; planned with the generic estimate of ten polls, that join
-- was a nested loop over both lists (128 polls: 16,384 comparisons, 2.2 ms instead of 0.8).
-- Now one query finds, checks and locks the rows (conditions first, so a too-early poll
-- locks nothing) and the UPDATE follows the locked rows by primary key.
-- FOR NO KEY UPDATE is the lock the UPDATE takes anyway (it changes no key column); rows
-- other transactions hold are still skipped, never waited for, so batches never deadlock.
-- A row changed by another transaction between this statement's snapshot and its lock has
-- its conditions checked again on the new version before it is locked (READ COMMITTED).
CREATE OR REPLACE FUNCTION ciba_touch_pending_batch(
    p_ids TEXT[], p_clients TEXT[], p_now_ms BIGINT[], p_grace_ms BIGINT
) RETURNS SETOF TEXT
LANGUAGE plpgsql AS $$
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
