-- Restores the function exactly as migration 000002 created it.
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
