-- Sandbox mode (CIBA_SANDBOX): test users whose authenticating app the server simulates.
-- The simulated device is an ordinary row in devices (key_protection 'swk'); its private key
-- is kept here, sealed under CIBA_KEY_ENCRYPTION_KEY like the signing keys.
CREATE TABLE sandbox_users (
    user_sub    TEXT PRIMARY KEY REFERENCES users (sub),
    device_id   TEXT NOT NULL UNIQUE REFERENCES devices (id),
    private_key TEXT NOT NULL,                     -- sealed PKCS#8, associated data: the device id
    kek_id      TEXT NOT NULL,
    behaviour   TEXT NOT NULL,                     -- manual | approve | decline | ignore
    delay_secs  INTEGER NOT NULL,                  -- how long approve / decline wait
    created_at  INTEGER NOT NULL
);
