//! What the flow-step tests share: a store with one client and one user, audit events, rows.
#![allow(dead_code, clippy::unwrap_used)]

use ciba_domain::audit::{Actor, Origin, Outcome};
use ciba_store::audit::{self, AuditRow, By, Filter};
use ciba_store::auth_requests::AuthRequestRow;
use ciba_store::permissions::PermissionRow;
use ciba_store::testing::TestDatabase;
use ciba_store::{DatabaseUrl, Store};
use diesel::connection::SimpleConnection;

pub const NOW: i64 = 1_900_000_000;
pub const NNIN: &str = "01019010046";

pub fn store(db: &TestDatabase) -> Store {
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
    store.migrate().unwrap();
    let sql = "INSERT INTO clients (id, name, secret_hash, scopes, callback_uris, sub_nnin, \
               id_token_alg, delivery_mode, disabled, created_at, updated_at) VALUES \
               ('c1','one','x','openid','[]',false,'ES256','poll',false,1,1); \
               INSERT INTO users (sub, nnin, given_name, family_name, birthdate, created_at, \
               updated_at) VALUES ('u1','01019010046','Kari','Nordmann','1990-01-01',1,1);";
    store.write(|c| Ok(c.batch_execute(sql)?)).unwrap();
    store
}

pub fn event(what: &'static str, object: &str, at_ms: i64) -> AuditRow {
    let origin = Origin::default();
    let by = By {
        actor: Actor::Client("c1"),
        origin: &origin,
        at_ms,
    };
    audit::row(&by, what, Some(object), Outcome::Ok)
}

pub fn trail(store: &Store) -> Vec<(String, Option<String>)> {
    let f = Filter {
        limit: 100,
        ..Filter::default()
    };
    let rows = store.read(|c| audit::list(c, &f)).unwrap();
    rows.into_iter().map(|e| (e.action, e.object_id)).collect()
}

pub fn permission(id: &str) -> PermissionRow {
    PermissionRow {
        id: id.into(),
        client_id: "c1".into(),
        kind: "text.v1".into(),
        loa: "substantial".into(),
        iat: NOW,
        exp: NOW + 600,
        statement: "s".into(),
        digest: "d".into(),
        intents: "app2app".into(),
        user_sub: None,
        login_hint: NNIN.into(),
        app_callback_uri: Some("https://merchant.example/cb".into()),
        acr_values: None,
        status: "pending".into(),
        token_used_at: None,
        auth_req_id: None,
        grant_jws: None,
        decided_at: None,
        created_at: NOW,
    }
}

pub fn request(id: &str, permission_id: &str) -> AuthRequestRow {
    AuthRequestRow {
        id: id.into(),
        link_ref: format!("ref-{id}"),
        client_id: "c1".into(),
        permission_id: Some(permission_id.into()),
        user_sub: "u1".into(),
        flow: "app2app".into(),
        scope: "openid".into(),
        acr: "urn:bankid:substantial".into(),
        binding_message: Some("ABC".into()),
        client_notification_token: None,
        allowed_devices: Some(r#"["d1"]"#.into()),
        status: "pending".into(),
        interval_secs: 2,
        last_poll_ms: None,
        created_at: NOW,
        expires_at: NOW + 300,
        decided_at: None,
        device_id: None,
        amr: None,
        redeemed_at: None,
        slowed_down_ms: None,
    }
}
