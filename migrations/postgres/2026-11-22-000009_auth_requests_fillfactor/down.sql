ALTER TABLE auth_requests RESET (fillfactor);
