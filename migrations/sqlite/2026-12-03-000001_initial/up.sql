-- The whole schema of the CIBA authorization server (SQLite). Times are UNIX seconds (INTEGER).
-- migrations/postgres holds the same tables and columns; a test keeps the two in step.
-- One migration holds the whole schema until the first tagged release; from then on
-- migrations are append-only.

CREATE TABLE clients (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    secret_hash           TEXT,                   -- argon2id PHC string; NULL for key and TLS methods
    auth_method           TEXT NOT NULL DEFAULT 'client_secret_basic', -- token_endpoint_auth_method
    previous_secret_hash  TEXT,                   -- the secret before a rotation, during its grace
    previous_secret_until INTEGER,                   -- when that grace ends
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
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);

CREATE TABLE users (
    sub         TEXT PRIMARY KEY,                  -- stable, random, not the NNIN
    nnin        TEXT NOT NULL UNIQUE,
    given_name  TEXT NOT NULL,
    family_name TEXT NOT NULL,
    birthdate   TEXT NOT NULL,                     -- YYYY-MM-DD
    bankid_pid  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
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
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    key_protection TEXT NOT NULL DEFAULT 'swk'     -- RFC 8176 'hwk' | 'swk', as declared at enrollment
);
CREATE INDEX devices_user_status ON devices (user_sub, status);

CREATE TABLE enrollment_codes (
    code_hash  TEXT PRIMARY KEY,                   -- SHA-256 of the code; the code is shown once
    user_sub   TEXT NOT NULL REFERENCES users (sub),
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    device_id  TEXT,
    created_at INTEGER NOT NULL,
    require_hwk BOOLEAN NOT NULL DEFAULT false     -- the operator requires a hardware-bound key
);
CREATE INDEX enrollment_codes_created ON enrollment_codes (created_at);

CREATE TABLE permissions (
    id               TEXT PRIMARY KEY,
    client_id        TEXT NOT NULL REFERENCES clients (id),
    kind             TEXT NOT NULL,                -- payment.v1 | text.v1 | authentication.v1
    loa              TEXT NOT NULL,                -- sub | high
    iat              INTEGER NOT NULL,
    exp              INTEGER NOT NULL,
    statement        TEXT NOT NULL,                -- base64url as registered
    digest           TEXT NOT NULL,                -- base64url SHA-256 of the decoded statement
    intents          TEXT NOT NULL,                -- space separated
    user_sub         TEXT,                         -- the hinted user, when known
    login_hint       TEXT NOT NULL,                -- the hinted NNIN
    app_callback_uri TEXT,
    acr_values       TEXT,
    status           TEXT NOT NULL,                -- pending | granted | declined | expired
    token_used_at    INTEGER,                       -- the permission token is single-use
    auth_req_id      TEXT,
    grant_jws        TEXT,
    decided_at       INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE INDEX permissions_client ON permissions (client_id);
CREATE INDEX permissions_created ON permissions (created_at);

-- Nonces outlive their permissions: unique per client forever.
CREATE TABLE permission_nonces (
    client_id  TEXT NOT NULL,
    nonce_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
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
    interval_secs             INTEGER NOT NULL,
    last_poll_ms              INTEGER,             -- UNIX milliseconds of the last well-paced poll (slow_down)
    created_at                INTEGER NOT NULL,
    expires_at                INTEGER NOT NULL,
    decided_at                INTEGER,
    device_id                 TEXT,
    amr                       TEXT,
    redeemed_at               INTEGER,
    slowed_down_ms            INTEGER              -- the last too-early poll that grew the interval
);
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
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,                  -- published before it signs
    retires_at   INTEGER,                           -- stops signing
    expires_at   INTEGER                            -- leaves the JWKS
);
CREATE INDEX signing_keys_purpose ON signing_keys (purpose, alg);

CREATE TABLE used_jtis (
    jti_key    TEXT PRIMARY KEY,                   -- SHA-256 of (issuer, jti)
    expires_at INTEGER NOT NULL
);
CREATE INDEX used_jtis_expiry ON used_jtis (expires_at);

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL,                    -- queued | running | done | dead
    attempts     INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    locked_by    TEXT,
    locked_until INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
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

-- The audit trail: append-only, written in the transaction of the change it records, kept
-- CIBA_AUDIT_RETENTION (400 days) whatever the request retention. Never an NNIN, a secret
-- or a token: objects are the ids the server issued.
CREATE TABLE audit_events (
    id         TEXT PRIMARY KEY,                   -- UUID v7 (ordered by time)
    at_ms      INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,                      -- client | device | operator | system
    actor_id   TEXT,
    action     TEXT NOT NULL,                      -- e.g. request.approved
    object_id  TEXT,
    outcome    TEXT NOT NULL,                      -- ok | refused
    source     TEXT,                               -- the caller's address
    request_id TEXT                                -- the HTTP request's id
);
CREATE INDEX audit_events_at ON audit_events (at_ms);

CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
