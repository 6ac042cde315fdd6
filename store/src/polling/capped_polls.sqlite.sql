-- The polls of a batch that record_polls.sqlite.sql did not write which are too early for
-- pending, unexpired requests of their clients whose interval is at its maximum: slow_down,
-- with nothing to write. A read. $1 is the grace in ms, $2 the maximum interval in seconds,
-- $3 the polls as in record_polls.sqlite.sql; the rows are found by key as there.
SELECT a.id AS id
  FROM (SELECT value ->> 0 AS id, value ->> 1 AS client_id, value ->> 2 AS now_ms
          FROM json_each($3)) AS p
  JOIN auth_requests a ON a.id = p.id
 WHERE a.client_id = p.client_id
   AND +a.status = 'pending'
   AND +a.expires_at > p.now_ms / 1000
   AND a.interval_secs >= $2
   AND a.last_poll_ms > p.now_ms + $1 - a.interval_secs * 1000
