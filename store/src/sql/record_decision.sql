-- A user's decision recorded if the request is still pending and unexpired
-- (auth_requests::record_decision), and the request as recorded.
-- $1 the status decided, $2 now, $3 the device, $4 the methods (a JSON array), $5 the request,
-- $6 pending.
UPDATE auth_requests SET status = $1, decided_at = $2, device_id = $3, amr = $4
WHERE id = $5 AND (status = $6 AND expires_at > $2) IS TRUE
RETURNING id, link_ref, client_id, permission_id, user_sub, flow, scope, acr, binding_message,
          client_notification_token, allowed_devices, status, interval_secs, last_poll_ms,
          created_at, expires_at, decided_at, device_id, amr, redeemed_at, slowed_down_ms
