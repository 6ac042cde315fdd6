-- Record the polls of pending, unexpired requests of their clients that change their row; one
-- row per such poll: its id and slowed_down_ms. A well-paced poll (domain::auth_request::
-- well_paced) is the request's last poll; a too-early one grows the interval as
-- domain::auth_request::slowed_interval says and is marked in slowed_down_ms (its own time:
-- polling::sqlite_record tells the two apart by it). A too-early poll at the maximum
-- interval changes nothing and is left to capped_polls.sqlite.sql, which only reads.
-- $1 is the grace in ms, $2 the maximum interval in seconds (NULL: record only well-paced
-- polls, and never slow down), $3 the polls as a JSON array of [id, client id, now in ms]:
-- one text for any number of polls, so the statement is prepared once per connection.
-- The unary + keeps the planner off the status and expiry indexes: each poll's row is found
-- by its key (store/tests/poll_batch_database.rs checks the plan).
UPDATE auth_requests
   SET last_poll_ms = CASE
           WHEN auth_requests.last_poll_ms IS NULL
                OR auth_requests.last_poll_ms <= p.now_ms + $1 - auth_requests.interval_secs * 1000
           THEN p.now_ms
           ELSE auth_requests.last_poll_ms END,
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
   AND (auth_requests.last_poll_ms IS NULL
        OR auth_requests.last_poll_ms <= p.now_ms + $1 - auth_requests.interval_secs * 1000
        OR auth_requests.interval_secs < $2)
RETURNING auth_requests.id AS id, auth_requests.slowed_down_ms AS slowed_down_ms
