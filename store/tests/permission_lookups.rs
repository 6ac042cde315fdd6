#![allow(clippy::unwrap_used)]
//! A request's end reaches its permission by the permission's key: the search by
//! `auth_req_id` it replaced read the whole permissions table at every decision and expiry
//! (the flow benchmark slowed down as permissions piled up). And a permission token's
//! permission is read by its key too, even by a connection whose cached plan was made while
//! the table was empty; and a redemption finds its request by its key, whatever the
//! statistics say about approved requests.

use ciba_domain::audit::Outcome;
use ciba_domain::status::PermissionStatus;
use ciba_store::testing::TestDatabase;
use ciba_store::{auth_requests, permissions};
use ciba_store::{Backend, DatabaseUrl, Store};
use diesel::connection::SimpleConnection;

#[derive(diesel::QueryableByName)]
struct Scans {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq_scan: i64,
}

#[derive(diesel::QueryableByName)]
struct IndexScans {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    idx_scan: i64,
}

const ONE_CLIENT: &str = "INSERT INTO clients (id, name, secret_hash, scopes, callback_uris, \
    sub_nnin, id_token_alg, delivery_mode, disabled, created_at, updated_at) VALUES \
    ('c1','one','x','openid','[]',false,'ES256','poll',false,1,1),\
    ('c2','two','x','openid','[]',false,'ES256','poll',false,1,1);";

/// PostgreSQL caches a generic plan for a prepared statement after five executions. Made
/// while `permissions` was empty, a plan for "id and client_id" used the client's index:
/// once the client had many permissions, each app-authorize read all of them (1 ms of the
/// flow benchmark's PostgreSQL time per flow, the most of any statement).
#[test]
fn a_permission_token_finds_its_permission_by_key_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    // One connection: the plan cached on it is the one measured.
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 1).unwrap();
    store.migrate().unwrap();
    store.write(|c| Ok(c.batch_execute(ONE_CLIENT)?)).unwrap();
    for _ in 0..8 {
        assert!(store
            .read(|c| permissions::find_owned(c, "p1", "c1"))
            .unwrap()
            .is_none());
    }
    let sql = "INSERT INTO permissions (id, client_id, kind, loa, iat, exp, statement, digest, \
               intents, login_hint, status, created_at) \
               SELECT 'p' || g, 'c1', 'text.v1', 'sub', 1, 4000000000, 's', 'd', 'ciba', \
               '01019010046', 'pending', 1 FROM generate_series(1, 2000) AS g;";
    store.write(|c| Ok(c.batch_execute(sql)?)).unwrap();
    let by_client = |c: &mut ciba_store::DbConnection| {
        diesel::RunQueryDsl::get_result::<IndexScans>(
            diesel::sql_query(
                "SELECT pg_stat_get_xact_numscans('permissions_client'::regclass) AS idx_scan",
            ),
            c,
        )
        .map(|s| s.idx_scan)
    };
    let (found, other, before, after) = store
        .write(|c| {
            let before = by_client(c)?;
            let found = permissions::find_owned(c, "p1500", "c1")?;
            let other = permissions::find_owned(c, "p1500", "c2")?;
            Ok((found, other, before, by_client(c)?))
        })
        .unwrap();
    assert_eq!(found.map(|p| p.id).as_deref(), Some("p1500"));
    assert!(
        other.is_none(),
        "another client's permission reads as absent"
    );
    assert_eq!(
        after, before,
        "the permission was searched among the client's"
    );
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

/// The one-statement redemption once took the (status, expires_at) index: with statistics
/// from when approved requests were rare, that plan looked cheaper than the key, and it read
/// every approved, unexpired request (4 ms per redemption in the flow benchmark, growing
/// with every flow).
#[test]
fn a_redemption_finds_its_request_by_key_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 1).unwrap();
    store.migrate().unwrap();
    let sql = format!(
        "{ONE_CLIENT} \
         INSERT INTO users (sub, nnin, given_name, family_name, birthdate, created_at, \
         updated_at) VALUES ('u1','01019010046','Kari','Nordmann','1990-01-01',1,1); \
         INSERT INTO auth_requests (id, link_ref, client_id, user_sub, flow, scope, acr, status, \
         interval_secs, created_at, expires_at) \
         SELECT 'r' || g, 'l' || g, 'c1', 'u1', 'ciba', 'openid', 'a', 'pending', 5, 1, \
         4000000000 FROM generate_series(1, 3000) AS g; \
         ANALYZE auth_requests; \
         UPDATE auth_requests SET status = 'approved' WHERE id IN \
         (SELECT 'r' || g FROM generate_series(1, 1500) AS g);"
    );
    store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
    let numscans = |c: &mut ciba_store::DbConnection| {
        diesel::RunQueryDsl::get_result::<IndexScans>(
            diesel::sql_query(
                "SELECT pg_stat_get_xact_numscans('auth_requests_status_expiry'::regclass) AS idx_scan",
            ),
            c,
        )
        .map(|s| s.idx_scan)
    };
    let origin = ciba_domain::audit::Origin::default();
    let by = ciba_store::audit::By {
        actor: ciba_domain::audit::Actor::Client("c1"),
        origin: &origin,
        at_ms: 1,
    };
    // Past PostgreSQL's five custom plans, so a cached plan is in use too.
    for i in 1..=8 {
        let id = format!("r{i}");
        let event = ciba_store::audit::row(&by, "request.redeemed", Some(&id), Outcome::Ok);
        let (before, redeemed, after) = store
            .write(|c| {
                let before = numscans(c)?;
                let redeemed = auth_requests::redeem_recorded(c, (&id, "c1"), 5, &event)?;
                Ok((before, redeemed, numscans(c)?))
            })
            .unwrap();
        assert!(redeemed.is_some(), "{id}");
        assert_eq!(
            after, before,
            "redemption {i} searched the approved requests"
        );
    }
}
