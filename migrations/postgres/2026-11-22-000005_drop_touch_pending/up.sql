-- The one-poll function of migration 000002 has had no caller since the batch function of
-- 000003 took over the polling hot path. Only builds older than 000003 call it: upgrade
-- such a deployment through a version between before this one (rolling updates keep old
-- pods serving while the new schema is in place).
DROP FUNCTION IF EXISTS ciba_touch_pending(TEXT, TEXT, BIGINT, BIGINT);
