#![allow(clippy::unwrap_used)]
//! A request's end reaches its permission by the permission's key: the search by
//! `auth_req_id` it replaced read the whole permissions table at every decision and expiry
//! (the flow benchmark slowed down as permissions piled up).

use ciba_domain::status::PermissionStatus;
use ciba_store::permissions;
use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl, Store};
use diesel::connection::SimpleConnection;

#[derive(diesel::QueryableByName)]
struct Scans {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq_scan: i64,
}

#[test]
fn a_decision_finds_its_permission_by_key_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
    store.migrate().unwrap();
    let sql = "INSERT INTO clients (id, name, secret_hash, scopes, callback_uris, sub_nnin, \
               id_token_alg, delivery_mode, disabled, created_at, updated_at) VALUES \
               ('c1','one','x','openid','[]',false,'ES256','poll',false,1,1); \
               INSERT INTO permissions (id, client_id, kind, loa, iat, exp, statement, digest, \
               intents, login_hint, status, auth_req_id, created_at) \
               SELECT 'p' || g, 'c1', 'text.v1', 'sub', 1, 4000000000, 's', 'd', 'ciba', \
               '01019010046', 'pending', 'r' || g, 1 FROM generate_series(1, 2000) AS g; \
               ANALYZE permissions;";
    store.write(|c| Ok(c.batch_execute(sql)?)).unwrap();
    let scans = |c: &mut ciba_store::DbConnection| {
        diesel::RunQueryDsl::get_result::<Scans>(
            diesel::sql_query(
                "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'permissions'",
            ),
            c,
        )
        .map(|s| s.seq_scan)
    };
    let (changed, before, after) = store
        .write(|c| {
            let before = scans(c)?;
            let changed = permissions::follow_request(
                c,
                ("p1234", "r1234"),
                PermissionStatus::Granted,
                Some("sub"),
                5,
            )?;
            Ok((changed, before, scans(c)?))
        })
        .unwrap();
    assert!(changed);
    assert_eq!(after, before, "the decision scanned the permissions table");
    // Another request's id does not move this permission.
    let moved = store
        .write(|c| {
            permissions::follow_request(c, ("p7", "r8"), PermissionStatus::Declined, None, 5)
        })
        .unwrap();
    assert!(!moved);
    let p = store
        .read(|c| permissions::find(c, "p1234"))
        .unwrap()
        .unwrap();
    assert_eq!((p.status.as_str(), p.decided_at), ("granted", Some(5)));
}
