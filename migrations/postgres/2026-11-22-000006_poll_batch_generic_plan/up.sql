-- Plan the poll batch statement once per session. With the default plan_cache_mode, the
-- plan cache weighs custom plans (made for the actual arrays) against the generic one, and
-- for one-element arrays it kept choosing custom plans: under light load, where most
-- batches hold a single poll, every call was planned again: 317-364 us per call
-- against 79 us with the generic plan (track_functions), and a paced poll's p50 0.94-1.41 ms
-- against 0.67-0.70 ms. The generic plan (index look-ups in a nested loop) is the right one
-- at every batch size; a custom plan for a large array could pick a scan of the table.
ALTER FUNCTION ciba_touch_pending_batch(TEXT[], TEXT[], BIGINT[], BIGINT)
    SET plan_cache_mode = force_generic_plan;
