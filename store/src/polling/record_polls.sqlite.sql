-- Record the well-paced polls of pending, unexpired requests of their clients; one row per
-- recorded poll. /*POLLS*/ stands for one (?, ?, ?) per poll (id, client id, now in ms); the
-- last parameter is the grace in ms. The pacing rule is domain::auth_request::well_paced.
UPDATE auth_requests SET last_poll_ms = p.column3
  FROM (VALUES /*POLLS*/) AS p
 WHERE auth_requests.id = p.column1
   AND auth_requests.client_id = p.column2
   AND auth_requests.status = 'pending'
   AND auth_requests.expires_at > p.column3 / 1000
   AND (auth_requests.last_poll_ms IS NULL
        OR auth_requests.last_poll_ms <= p.column3 + ? - auth_requests.interval_secs * 1000)
RETURNING auth_requests.id AS id
