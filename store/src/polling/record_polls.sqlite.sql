-- Record the polls of pending, unexpired requests of their clients; one row per recorded
-- poll: its id, and whether it came too early. Each poll counts as the request's last; a
-- too-early one (not well paced: domain::auth_request::well_paced) also grows the interval
-- as domain::auth_request::slowed_interval says and is marked in slowed_down_ms. SET sees
-- the row as it was and RETURNING as written: slowed_down_ms = last_poll_ms tells the two
-- apart afterwards.
-- $1 is the grace in ms, $2 the maximum interval in seconds (NULL: record only well-paced
-- polls, and never slow down), $3 the polls as a JSON array of [id, client id, now in ms]:
-- one text for any number of polls, so the statement is prepared once per connection.
-- The unary + keeps the planner off the status and expiry indexes: each poll's row is found
-- by its key (store/tests/poll_batch.rs checks the plan).
UPDATE auth_requests
   SET last_poll_ms = p.now_ms,
       interval_secs = CASE
           WHEN $2 IS NULL OR auth_requests.interval_secs >= $2
                OR auth_requests.last_poll_ms IS NULL
                OR auth_requests.last_poll_ms <= p.now_ms + $1 - auth_requests.interval_secs * 1000
           THEN auth_requests.interval_secs
           ELSE min(auth_requests.interval_secs + 5, $2) END,
       slowed_down_ms = CASE
           WHEN auth_requests.last_poll_ms IS NULL
                OR auth_requests.last_poll_ms <= p.now_ms + $1 - auth_requests.interval_secs * 1000
           THEN auth_requests.slowed_down_ms
           ELSE p.now_ms END
  FROM (SELECT value ->> 0 AS id, value ->> 1 AS client_id, value ->> 2 AS now_ms
          FROM json_each($3)) AS p
 WHERE auth_requests.id = p.id
   AND auth_requests.client_id = p.client_id
   AND +auth_requests.status = 'pending'
   AND +auth_requests.expires_at > p.now_ms / 1000
   AND ($2 IS NOT NULL
        OR auth_requests.last_poll_ms IS NULL
        OR auth_requests.last_poll_ms <= p.now_ms + $1 - auth_requests.interval_secs * 1000)
RETURNING auth_requests.id AS id,
          auth_requests.slowed_down_ms IS auth_requests.last_poll_ms AS slowed
