DROP FUNCTION ciba_touch_pending_batch(TEXT[], TEXT[], BIGINT[], BIGINT);
