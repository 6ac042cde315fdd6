-- Events counted in their windows (rate_limits::hit_many), and each window's count after.
-- $1 the batch as a JSON array of {"b": bucket, "h": events, "e": expires_at}, buckets
-- distinct: one parameter for any batch, so the statement is prepared once. (WHERE true:
-- an upsert from a SELECT needs a WHERE for SQLite to parse ON CONFLICT.)
INSERT INTO rate_limits (bucket, hits, expires_at)
SELECT value ->> 'b', value ->> 'h', value ->> 'e' FROM json_each($1) WHERE true
ON CONFLICT (bucket) DO UPDATE SET hits = rate_limits.hits + excluded.hits
RETURNING bucket, hits
