//! One portable diesel schema for PostgreSQL and SQLite (text ids, BIGINT UNIX times).

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        secret_hash -> Nullable<Text>,
        auth_method -> Text,
        previous_secret_hash -> Nullable<Text>,
        previous_secret_until -> Nullable<BigInt>,
        profile -> Nullable<Text>,
        tls_subject_dn -> Nullable<Text>,
        scopes -> Text,
        callback_uris -> Text,
        sub_nnin -> Bool,
        jwks -> Nullable<Text>,
        jwks_uri -> Nullable<Text>,
        id_token_alg -> Text,
        delivery_mode -> Text,
        notification_endpoint -> Nullable<Text>,
        disabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    users (sub) {
        sub -> Text,
        nnin -> Text,
        given_name -> Text,
        family_name -> Text,
        birthdate -> Text,
        bankid_pid -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    devices (id) {
        id -> Text,
        user_sub -> Text,
        platform -> Text,
        manufacturer -> Text,
        model -> Text,
        public_jwk -> Text,
        name -> Nullable<Text>,
        status -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        key_protection -> Text,
    }
}

diesel::table! {
    enrollment_codes (code_hash) {
        code_hash -> Text,
        user_sub -> Text,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        device_id -> Nullable<Text>,
        created_at -> BigInt,
        require_hwk -> Bool,
    }
}

diesel::table! {
    permissions (id) {
        id -> Text,
        client_id -> Text,
        kind -> Text,
        loa -> Text,
        iat -> BigInt,
        exp -> BigInt,
        statement -> Text,
        digest -> Text,
        intents -> Text,
        user_sub -> Nullable<Text>,
        login_hint -> Text,
        app_callback_uri -> Nullable<Text>,
        acr_values -> Nullable<Text>,
        status -> Text,
        token_used_at -> Nullable<BigInt>,
        auth_req_id -> Nullable<Text>,
        grant_jws -> Nullable<Text>,
        decided_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    permission_nonces (client_id, nonce_hash) {
        client_id -> Text,
        nonce_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    auth_requests (id) {
        id -> Text,
        link_ref -> Text,
        client_id -> Text,
        permission_id -> Nullable<Text>,
        user_sub -> Text,
        flow -> Text,
        scope -> Text,
        acr -> Text,
        binding_message -> Nullable<Text>,
        client_notification_token -> Nullable<Text>,
        allowed_devices -> Nullable<Text>,
        status -> Text,
        interval_secs -> BigInt,
        last_poll_ms -> Nullable<BigInt>,
        created_at -> BigInt,
        expires_at -> BigInt,
        decided_at -> Nullable<BigInt>,
        device_id -> Nullable<Text>,
        amr -> Nullable<Text>,
        redeemed_at -> Nullable<BigInt>,
        slowed_down_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        purpose -> Text,
        alg -> Text,
        public_jwk -> Text,
        private_key -> Text,
        kek_id -> Text,
        created_at -> BigInt,
        activates_at -> BigInt,
        retires_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    used_jtis (jti_key) {
        jti_key -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        kind -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        run_at -> BigInt,
        locked_by -> Nullable<Text>,
        locked_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    rate_limits (bucket) {
        bucket -> Text,
        hits -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        at_ms -> BigInt,
        actor_kind -> Text,
        actor_id -> Nullable<Text>,
        action -> Text,
        object_id -> Nullable<Text>,
        outcome -> Text,
        source -> Nullable<Text>,
        request_id -> Nullable<Text>,
    }
}

diesel::table! {
    sandbox_users (user_sub) {
        user_sub -> Text,
        device_id -> Text,
        private_key -> Text,
        kek_id -> Text,
        behaviour -> Text,
        delay_secs -> BigInt,
        created_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    clients,
    users,
    devices,
    enrollment_codes,
    permissions,
    permission_nonces,
    auth_requests,
    signing_keys,
    used_jtis,
    jobs,
    rate_limits,
    sandbox_users,
);
