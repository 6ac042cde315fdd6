#![allow(clippy::unwrap_used)]
//! A permission token's claim (app-authorize, bc-authorize), alone and with the hinted
//! user's devices: one conditional statement, the same on both backends.

use ciba_domain::audit::action;
use ciba_store::permissions::{self, Insert, PermissionRow};
use ciba_store::testing::TestDatabase;
use ciba_store::Backend;
use diesel::connection::SimpleConnection;

mod common;
use common::*;

/// A permission token is claimed in one conditional statement: only by the client that owns
/// the permission, for an intent it has (a whole word of `intents`), while it is pending and
/// unexpired, and once.
fn token_claims(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let sql = "INSERT INTO clients (id, name, secret_hash, scopes, callback_uris, sub_nnin, \
               id_token_alg, delivery_mode, disabled, created_at, updated_at) VALUES \
               ('c2','two','x','openid','[]',false,'ES256','poll',false,1,1);";
    store.write(|c| Ok(c.batch_execute(sql)?)).unwrap();
    let e = event(action::PERMISSION_REGISTERED, "p1", 1);
    let p = PermissionRow {
        intents: "login app2app".into(),
        ..permission("p1")
    };
    let done = store.write_one(|c| permissions::register(c, &p, "n1", &e));
    assert_eq!(done.unwrap(), Insert::Created);
    let claim = |client: &str, intent: &str, now: i64| {
        store
            .write_one(|c| permissions::claim_token(c, ("p1", client), intent, now))
            .unwrap()
    };
    assert!(claim("c2", "app2app", NOW).is_none(), "another client's");
    assert!(claim("c1", "ciba", NOW).is_none(), "an intent it lacks");
    assert!(claim("c1", "app", NOW).is_none(), "part of a word");
    assert!(claim("c1", "%", NOW).is_none(), "a pattern");
    assert!(claim("c1", "app2app", NOW + 600).is_none(), "expired");
    let unused = store.read(|c| permissions::find(c, "p1")).unwrap().unwrap();
    assert_eq!(unused.token_used_at, None, "refusals use nothing");
    let claimed = claim("c1", "app2app", NOW + 599).expect("claimed");
    assert_eq!(
        (
            claimed.id.as_str(),
            claimed.token_used_at,
            claimed.user_sub.as_deref()
        ),
        ("p1", Some(NOW + 599), Some("u1"))
    );
    assert!(claim("c1", "app2app", NOW + 599).is_none(), "claimed once");
    assert!(claim("c1", "login", NOW).is_none(), "once for any intent");
}

#[test]
fn token_claims_sqlite() {
    token_claims(Backend::Sqlite);
}

#[test]
fn token_claims_postgres() {
    token_claims(Backend::Postgres);
}

/// App-authorize's claim with the hinted user's active devices (one statement on
/// PostgreSQL): the same claim as `claim_token`, the user by the permission's `user_sub` or
/// else its login hint, only active devices, and nothing for a refused claim.
fn claims_for_user(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let other_nnin = "02029010045";
    let register = |id: &str, nnin: &str, nonce: &str| {
        let e = event(action::PERMISSION_REGISTERED, id, 1);
        let p = PermissionRow {
            login_hint: nnin.into(),
            ..permission(id)
        };
        let done = store.write_one(|c| permissions::register(c, &p, nonce, &e));
        assert_eq!(done.unwrap(), Insert::Created);
    };
    register("p1", NNIN, "n1");
    register("p2", other_nnin, "n2");
    register("p3", "03039010043", "n3");
    let sql = format!(
        "UPDATE permissions SET user_sub = 'u1' WHERE id = 'p1'; \
         UPDATE permissions SET user_sub = NULL WHERE id IN ('p2', 'p3'); \
         INSERT INTO users (sub, nnin, given_name, family_name, birthdate, created_at, \
         updated_at) VALUES ('u2','{other_nnin}','Ola','Nordmann','1990-02-02',1,1); \
         INSERT INTO devices (id, user_sub, platform, manufacturer, model, public_jwk, name, \
         status, created_at, revoked_at, key_protection) VALUES \
         ('d3','u1','ios','Apple','iPhone11,2','{{\"k\":3}}',NULL,'active',3,NULL,'swk'), \
         ('d1','u1','ios','Apple','iPhone11,2','{{\"k\":1}}','Mine','active',1,NULL,'hwk'), \
         ('d2','u1','ios','Apple','iPhone11,2','{{\"k\":2}}',NULL,'revoked',2,5,'swk'), \
         ('d4','u2','android','Google','Pixel 8','{{\"k\":4}}',NULL,'revoked',4,6,'swk');"
    );
    store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
    let claim = |id: &str, client: &str| {
        store
            .write_one(|c| permissions::claim_for_user(c, (id, client), "app2app", NOW))
            .unwrap()
    };
    assert!(claim("p1", "c2").is_none(), "another client's");
    let (p, user) = claim("p1", "c1").expect("claimed");
    assert_eq!((p.id.as_str(), p.token_used_at), ("p1", Some(NOW)));
    let (sub, devices) = user.expect("the user by user_sub");
    assert_eq!(sub, "u1");
    let mut seen: Vec<_> = devices
        .iter()
        .map(|d| {
            (
                d.id.as_str(),
                d.user_sub.as_str(),
                d.model.as_str(),
                d.public_jwk.as_str(),
                d.name.as_deref(),
                d.status.as_str(),
                d.created_at,
                d.key_protection.as_str(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "d1",
                "u1",
                "iPhone11,2",
                r#"{"k":1}"#,
                Some("Mine"),
                "active",
                1,
                "hwk"
            ),
            (
                "d3",
                "u1",
                "iPhone11,2",
                r#"{"k":3}"#,
                None,
                "active",
                3,
                "swk"
            ),
        ]
    );
    assert!(claim("p1", "c1").is_none(), "claimed once");
    let (_, user) = claim("p2", "c1").expect("claimed");
    assert_eq!(
        user.map(|(sub, d)| (sub, d.len())),
        Some(("u2".to_owned(), 0)),
        "by login hint; a revoked device is no device"
    );
    let (p, user) = claim("p3", "c1").expect("claimed");
    assert_eq!(
        (p.id.as_str(), user.is_none()),
        ("p3", true),
        "no such user"
    );
}

#[test]
fn claims_for_user_sqlite() {
    claims_for_user(Backend::Sqlite);
}

#[test]
fn claims_for_user_postgres() {
    claims_for_user(Backend::Postgres);
}
