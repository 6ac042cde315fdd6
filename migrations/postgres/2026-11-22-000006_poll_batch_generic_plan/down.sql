ALTER FUNCTION ciba_touch_pending_batch(TEXT[], TEXT[], BIGINT[], BIGINT)
    RESET plan_cache_mode;
