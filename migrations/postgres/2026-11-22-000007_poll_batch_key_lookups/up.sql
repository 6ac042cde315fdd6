-- Keep the poll batch statement a nested loop of primary-key look-ups at every table size.
-- The generic plan (000006) estimates ten polls; against a small table (1,000 rows, as in a
-- new deployment or after retention) the planner costed a hash join over a sequential scan
-- of every pending request as cheaper, and used it for every batch, even of one poll: a
-- paced poll's p50 at 1,000 stored requests was 1.4-1.9x its p50 at 1,000,000 (where the
-- look-ups won) in each of five alternated rounds. A batch names its rows by key, so
-- look-ups are right at any size; without hash and merge joins they are the cheapest plan.
ALTER FUNCTION ciba_touch_pending_batch(TEXT[], TEXT[], BIGINT[], BIGINT)
    SET enable_hashjoin = off;
ALTER FUNCTION ciba_touch_pending_batch(TEXT[], TEXT[], BIGINT[], BIGINT)
    SET enable_mergejoin = off;
