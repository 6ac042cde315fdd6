-- Abuse limits (contract §10): one row per limit, subject and fixed window, counted by every
-- replica with an upsert. The bucket holds a hash of the subject (never a client's address or
-- a user's id in the clear); expired windows are purged by the worker's retention.
CREATE TABLE rate_limits (
    bucket     TEXT PRIMARY KEY,
    hits       BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);
