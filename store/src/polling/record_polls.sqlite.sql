-- Record the polls of pending, unexpired requests of their clients; one row per recorded
-- poll: its id, and whether it came too early. Each poll counts as the request's last; a
-- too-early one (not well paced: domain::auth_request::well_paced) also grows the interval
-- as domain::auth_request::slowed_interval says and is marked in slowed_down_ms. SET sees
-- the row as it was and RETURNING as written: slowed_down_ms = last_poll_ms tells the two
-- apart afterwards.
-- ?1 is the grace in ms, ?2 the maximum interval in seconds (NULL: record only well-paced
-- polls, and never slow down); /*POLLS*/ stands for one (?, ?, ?) per poll (id, client id,
-- now in ms), numbered after them.
UPDATE auth_requests
   SET last_poll_ms = p.column3,
       interval_secs = CASE
           WHEN ?2 IS NULL OR auth_requests.interval_secs >= ?2
                OR auth_requests.last_poll_ms IS NULL
                OR auth_requests.last_poll_ms <= p.column3 + ?1 - auth_requests.interval_secs * 1000
           THEN auth_requests.interval_secs
           ELSE min(auth_requests.interval_secs + 5, ?2) END,
       slowed_down_ms = CASE
           WHEN auth_requests.last_poll_ms IS NULL
                OR auth_requests.last_poll_ms <= p.column3 + ?1 - auth_requests.interval_secs * 1000
           THEN auth_requests.slowed_down_ms
           ELSE p.column3 END
  FROM (VALUES /*POLLS*/) AS p
 WHERE auth_requests.id = p.column1
   AND auth_requests.client_id = p.column2
   AND auth_requests.status = 'pending'
   AND auth_requests.expires_at > p.column3 / 1000
   AND (?2 IS NOT NULL
        OR auth_requests.last_poll_ms IS NULL
        OR auth_requests.last_poll_ms <= p.column3 + ?1 - auth_requests.interval_secs * 1000)
RETURNING auth_requests.id AS id,
          auth_requests.slowed_down_ms IS auth_requests.last_poll_ms AS slowed
