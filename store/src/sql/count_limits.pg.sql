-- Events counted in their windows (rate_limits::hit_many), and each window's count after.
-- $1 the batch as a JSON array of {"b": bucket, "h": events, "e": expires_at}, buckets
-- distinct and sorted: one parameter for any batch, so the statement is prepared once.
INSERT INTO rate_limits (bucket, hits, expires_at)
SELECT b, h, e FROM json_to_recordset($1::json) AS x(b text, h bigint, e bigint)
ON CONFLICT (bucket) DO UPDATE SET hits = rate_limits.hits + excluded.hits
RETURNING bucket, hits
