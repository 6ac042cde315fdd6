-- The whole schema of the CIBA authorization server. Times are UNIX seconds (BIGINT).
-- migrations/sqlite holds the same tables and columns; a test keeps the two in step.
-- One migration holds the whole schema until the first tagged release; from then on
-- migrations are append-only.

CREATE TABLE clients (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    secret_hash           TEXT,                   -- argon2id PHC string; NULL for key and TLS methods
    auth_method           TEXT NOT NULL DEFAULT 'client_secret_basic', -- token_endpoint_auth_method
    previous_secret_hash  TEXT,                   -- the secret before a rotation, during its grace
    previous_secret_until BIGINT ,                   -- when that grace ends
    profile               TEXT,                   -- NULL | fapi-ciba
    tls_subject_dn        TEXT,                   -- tls_client_auth: the certificate's subject (RFC 4514)
    scopes                TEXT NOT NULL,          -- space separated
    callback_uris         TEXT NOT NULL,          -- JSON array of exact app_callback_uri values
    sub_nnin              BOOLEAN NOT NULL,
    jwks                  TEXT,                   -- JWK set for private_key_jwt
    jwks_uri              TEXT,                   -- or where to fetch it (cached)
    id_token_alg          TEXT NOT NULL,          -- ES256 | PS256 | RS256
    delivery_mode         TEXT NOT NULL,          -- poll | ping
    notification_endpoint TEXT,
    disabled              BOOLEAN NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

CREATE TABLE users (
    sub         TEXT PRIMARY KEY,                  -- stable, random, not the NNIN
    nnin        TEXT NOT NULL UNIQUE,
    given_name  TEXT NOT NULL,
    family_name TEXT NOT NULL,
    birthdate   TEXT NOT NULL,                     -- YYYY-MM-DD
    bankid_pid  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    user_sub     TEXT NOT NULL REFERENCES users (sub),
    platform     TEXT NOT NULL,
    manufacturer TEXT NOT NULL,
    model        TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    name         TEXT,
    status       TEXT NOT NULL,                    -- active | revoked
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    key_protection TEXT NOT NULL DEFAULT 'swk'     -- RFC 8176 'hwk' | 'swk', as declared at enrollment
);
CREATE INDEX devices_user_status ON devices (user_sub, status);

CREATE TABLE enrollment_codes (
    code_hash  TEXT PRIMARY KEY,                   -- SHA-256 of the code; the code is shown once
    user_sub   TEXT NOT NULL REFERENCES users (sub),
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    device_id  TEXT,
    created_at BIGINT NOT NULL,
    require_hwk BOOLEAN NOT NULL DEFAULT false     -- the operator requires a hardware-bound key
);
CREATE INDEX enrollment_codes_created ON enrollment_codes (created_at);

CREATE TABLE permissions (
    id               TEXT PRIMARY KEY,
    client_id        TEXT NOT NULL REFERENCES clients (id),
    kind             TEXT NOT NULL,                -- payment.v1 | text.v1 | authentication.v1
    loa              TEXT NOT NULL,                -- sub | high
    iat              BIGINT NOT NULL,
    exp              BIGINT NOT NULL,
    statement        TEXT NOT NULL,                -- base64url as registered
    digest           TEXT NOT NULL,                -- base64url SHA-256 of the decoded statement
    intents          TEXT NOT NULL,                -- space separated
    user_sub         TEXT,                         -- the hinted user, when known
    login_hint       TEXT NOT NULL,                -- the hinted NNIN
    app_callback_uri TEXT,
    acr_values       TEXT,
    status           TEXT NOT NULL,                -- pending | granted | declined | expired
    token_used_at    BIGINT,                       -- the permission token is single-use
    auth_req_id      TEXT,
    grant_jws        TEXT,
    decided_at       BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX permissions_client ON permissions (client_id);
CREATE INDEX permissions_created ON permissions (created_at);

-- Nonces outlive their permissions: unique per client forever.
CREATE TABLE permission_nonces (
    client_id  TEXT NOT NULL,
    nonce_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, nonce_hash)
);

CREATE TABLE auth_requests (
    id                        TEXT PRIMARY KEY,    -- auth_req_id
    link_ref                  TEXT NOT NULL UNIQUE,-- the universal link's ref
    client_id                 TEXT NOT NULL REFERENCES clients (id),
    permission_id             TEXT,
    user_sub                  TEXT NOT NULL,
    flow                      TEXT NOT NULL,       -- app2app | ciba
    scope                     TEXT NOT NULL,
    acr                       TEXT NOT NULL,
    binding_message           TEXT,
    client_notification_token TEXT,
    allowed_devices           TEXT,                -- JSON array; NULL = any active device of the user
    status                    TEXT NOT NULL,       -- pending | approved | declined | expired
    interval_secs             BIGINT NOT NULL,
    last_poll_ms              BIGINT,              -- UNIX milliseconds of the last well-paced poll (slow_down)
    created_at                BIGINT NOT NULL,
    expires_at                BIGINT NOT NULL,
    decided_at                BIGINT,
    device_id                 TEXT,
    amr                       TEXT,
    redeemed_at               BIGINT,
    slowed_down_ms            BIGINT               -- the last too-early poll that grew the interval
) WITH (fillfactor = 50);
CREATE INDEX auth_requests_user_status ON auth_requests (user_sub, status);
CREATE INDEX auth_requests_status_expiry ON auth_requests (status, expires_at);
CREATE INDEX auth_requests_created ON auth_requests (created_at);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    purpose      TEXT NOT NULL,                    -- oidc | grants
    alg          TEXT NOT NULL,                    -- ES256 | RS256
    public_jwk   TEXT NOT NULL,
    private_key  TEXT NOT NULL,                    -- AES-256-GCM under the operator's key
    kek_id       TEXT NOT NULL,                    -- which operator key encrypted it
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,                  -- published before it signs
    retires_at   BIGINT,                           -- stops signing
    expires_at   BIGINT                            -- leaves the JWKS
);
CREATE INDEX signing_keys_purpose ON signing_keys (purpose, alg);

CREATE TABLE used_jtis (
    jti_key    TEXT PRIMARY KEY,                   -- SHA-256 of (issuer, jti)
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_jtis_expiry ON used_jtis (expires_at);

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL,                    -- queued | running | done | dead
    attempts     INTEGER NOT NULL,
    run_at       BIGINT NOT NULL,
    locked_by    TEXT,
    locked_until BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs (status, run_at);

-- Abuse limits (contract §10): one row per limit, subject and fixed window, counted by every
-- replica with an upsert. The bucket holds a hash of the subject (never a client's address or
-- a user's id in the clear); expired windows are purged by the worker's retention.
CREATE TABLE rate_limits (
    bucket     TEXT PRIMARY KEY,
    hits       BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);

-- The pacing rule of polls (domain::auth_request::well_paced), once for PostgreSQL: a poll at
-- now_ms keeps the interval when the last one is at least interval_secs ago, less grace_ms.
-- A one-expression SQL function: the planner inlines it into the statements below.
CREATE FUNCTION ciba_poll_due(
    last_poll_ms BIGINT, interval_secs BIGINT, now_ms BIGINT, grace_ms BIGINT
) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT last_poll_ms IS NULL OR last_poll_ms <= now_ms + grace_ms - interval_secs * 1000 $$;

-- The interval after a poll (the domain's slowed_interval for a too-early one): it grows by
-- 5 s up to max_interval when the poll is not due; it stays when it is, or when max_interval
-- is NULL (the careful path records only due polls).
CREATE FUNCTION ciba_paced_interval(
    last_poll_ms BIGINT, interval_secs BIGINT, now_ms BIGINT, grace_ms BIGINT,
    max_interval BIGINT
) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE
    WHEN max_interval IS NULL OR interval_secs >= max_interval
         OR ciba_poll_due(last_poll_ms, interval_secs, now_ms, grace_ms)
    THEN interval_secs
    ELSE least(interval_secs + 5, max_interval) END $$;

-- The poll hot path (store/src/polling): record the polls of pending, unexpired requests of
-- their clients, many in one call (replaced by migration 2026-12-05-000001_slow_down_reads,
-- where only a well-paced poll counts as the last one): each counts as the request's last
-- poll; a too-early one (when p_max_interval is given) also grows the interval by 5 s up to
-- p_max_interval (the domain's slowed_interval) and is marked in slowed_down_ms. One row per
-- recorded poll: (request_id, slowed_down). Why it looks as it does (each measured; the
-- numbers are in bench/RESULTS.md):
-- - one plain conditional UPDATE, since nothing holds these rows for long (11% more polls
--   per second than locking the rows first in a CTE and updating them after). Its SET sees
--   the row as it was, so it can tell a well-paced poll from a too-early one, but RETURNING
--   sees the row as written (PostgreSQL 15 has no OLD): slowed_down_ms = last_poll_ms tells
--   them apart afterwards. A too-early poll costs what a well-paced one does (one look-up,
--   one in-place update);
-- - rows another transaction holds (a decision being committed, another replica's batch) are
--   waited for up to lock_timeout; past it the statement is rolled back and run again
--   skipping the held rows (each such poll is left out and takes the careful path).
--   Batches lock their rows in the order of their ids (the API sorts them), so two batches
--   wait for each other rather than deadlock. The careful path records its one well-paced
--   poll with p_wait (and no p_max_interval): it waits for the row as long as it takes, and
--   never slows down;
-- - the touched rows are gathered before they are returned: rows already returned by a
--   statement that then fails would stay in the function's result;
-- - a generic plan (plan_cache_mode): custom plans for one-element arrays were planned again
--   on every call (317-364 us against 79 us per call);
-- - no hash or merge joins: against a small table the planner chose a sequential scan of
--   every pending request; a batch names its rows by key, so look-ups are right at any size.
-- The auth_requests table leaves half of each page free (fillfactor 50) so a poll's update
-- stays on the row's page (a HOT update: none of its columns is indexed; no index writes,
-- less WAL).
CREATE FUNCTION ciba_record_polls(
    p_ids TEXT[], p_clients TEXT[], p_now_ms BIGINT[], p_grace_ms BIGINT, p_wait BOOLEAN,
    p_max_interval BIGINT
) RETURNS TABLE (request_id TEXT, slowed_down BOOLEAN)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET lock_timeout = '20ms'
AS $$
DECLARE
    touched TEXT[];
    slowed BOOLEAN[];
BEGIN
    IF p_wait THEN
        -- Until the function returns (its SET clauses are restored on exit).
        PERFORM set_config('lock_timeout', '0', true);
    END IF;
    BEGIN
        WITH polled AS (
            UPDATE auth_requests a
               SET last_poll_ms = p.now_ms,
                   interval_secs = ciba_paced_interval(a.last_poll_ms, a.interval_secs,
                                                       p.now_ms, p_grace_ms, p_max_interval),
                   slowed_down_ms = CASE
                       WHEN ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms)
                       THEN a.slowed_down_ms ELSE p.now_ms END
              FROM unnest(p_ids, p_clients, p_now_ms) AS p(id, client_id, now_ms)
             WHERE a.id = p.id
               AND a.client_id = p.client_id
               AND a.status = 'pending'
               AND a.expires_at > p.now_ms / 1000
               AND (p_max_interval IS NOT NULL
                    OR ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms))
            RETURNING a.id, a.slowed_down_ms IS NOT DISTINCT FROM a.last_poll_ms AS slow
        )
        SELECT array_agg(polled.id), array_agg(polled.slow) INTO touched, slowed FROM polled;
    EXCEPTION WHEN lock_not_available THEN
        WITH held AS (
            SELECT a.id, p.now_ms
              FROM unnest(p_ids, p_clients, p_now_ms) AS p(id, client_id, now_ms)
              JOIN auth_requests a ON a.id = p.id
             WHERE a.client_id = p.client_id
               AND a.status = 'pending'
               AND a.expires_at > p.now_ms / 1000
               AND (p_max_interval IS NOT NULL
                    OR ciba_poll_due(a.last_poll_ms, a.interval_secs, p.now_ms, p_grace_ms))
               FOR NO KEY UPDATE OF a SKIP LOCKED
        ), polled AS (
            UPDATE auth_requests a
               SET last_poll_ms = held.now_ms,
                   interval_secs = ciba_paced_interval(a.last_poll_ms, a.interval_secs,
                                                       held.now_ms, p_grace_ms, p_max_interval),
                   slowed_down_ms = CASE
                       WHEN ciba_poll_due(a.last_poll_ms, a.interval_secs, held.now_ms, p_grace_ms)
                       THEN a.slowed_down_ms ELSE held.now_ms END
              FROM held
             WHERE a.id = held.id
            RETURNING a.id, a.slowed_down_ms IS NOT DISTINCT FROM a.last_poll_ms AS slow
        )
        SELECT array_agg(polled.id), array_agg(polled.slow) INTO touched, slowed FROM polled;
    END;
    RETURN QUERY SELECT * FROM unnest(touched, slowed);
END
$$;

-- The audit trail: append-only, written in the transaction of the change it records, kept
-- CIBA_AUDIT_RETENTION (400 days) whatever the request retention. Never an NNIN, a secret
-- or a token: objects are the ids the server issued.
CREATE TABLE audit_events (
    id         TEXT PRIMARY KEY,                   -- UUID v7 (ordered by time)
    at_ms      BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,                      -- client | device | operator | system
    actor_id   TEXT,
    action     TEXT NOT NULL,                      -- e.g. request.approved
    object_id  TEXT,
    outcome    TEXT NOT NULL,                      -- ok | refused
    source     TEXT,                               -- the caller's address
    request_id TEXT                                -- the HTTP request's id
);
CREATE INDEX audit_events_at ON audit_events (at_ms);

-- Rows are never changed. (Deleting is the retention job's; give the API's own role no
-- DELETE on this table where the roles are separate, see README "Audit trail".)
CREATE FUNCTION ciba_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION ciba_audit_append_only();
