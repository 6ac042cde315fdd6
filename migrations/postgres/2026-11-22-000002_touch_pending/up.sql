-- The polling hot path as one cacheable call. diesel never caches UPDATE statements (they
-- are re-parsed and re-planned each time); a SELECT of this function is a prepared statement,
-- and plpgsql keeps the UPDATE's plan for the session.
-- Records a well-paced poll of a pending, unexpired request; false means "look closer".
CREATE FUNCTION ciba_touch_pending(p_id TEXT, p_client TEXT, p_now_ms BIGINT, p_grace_ms BIGINT)
RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE auth_requests
       SET last_poll_ms = p_now_ms
     WHERE id = p_id
       AND client_id = p_client
       AND status = 'pending'
       AND expires_at > p_now_ms / 1000
       AND (last_poll_ms IS NULL OR last_poll_ms <= p_now_ms + p_grace_ms - interval_secs * 1000);
    RETURN FOUND;
END
$$;
