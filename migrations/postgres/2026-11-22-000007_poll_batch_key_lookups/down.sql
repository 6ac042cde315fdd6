ALTER FUNCTION ciba_touch_pending_batch(TEXT[], TEXT[], BIGINT[], BIGINT)
    RESET enable_hashjoin;
ALTER FUNCTION ciba_touch_pending_batch(TEXT[], TEXT[], BIGINT[], BIGINT)
    RESET enable_mergejoin;
