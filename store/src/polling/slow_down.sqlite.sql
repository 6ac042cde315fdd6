-- Slow down the polls that came too fast (not well paced) of pending, unexpired requests of
-- their clients: the poll counts as the last one and the interval grows as
-- domain::auth_request::slowed_interval says; one row per slowed poll. Run after
-- record_polls.sqlite.sql in the same transaction, over the polls it did not record.
-- ?1 is the grace in ms, ?2 the maximum interval in seconds; /*POLLS*/ stands for one
-- (?, ?, ?) per poll (id, client id, now in ms), numbered after them.
UPDATE auth_requests SET last_poll_ms = p.column3,
       interval_secs = CASE WHEN auth_requests.interval_secs < ?2
                            THEN min(auth_requests.interval_secs + 5, ?2)
                            ELSE auth_requests.interval_secs END
  FROM (VALUES /*POLLS*/) AS p
 WHERE auth_requests.id = p.column1
   AND auth_requests.client_id = p.column2
   AND auth_requests.status = 'pending'
   AND auth_requests.expires_at > p.column3 / 1000
   AND auth_requests.last_poll_ms > p.column3 + ?1 - auth_requests.interval_secs * 1000
RETURNING auth_requests.id AS id
