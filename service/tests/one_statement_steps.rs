#![allow(clippy::unwrap_used)]
//! The flow's write steps that PostgreSQL runs as one statement (registration, start,
//! decision, redemption) do on both backends what the transactions they replaced did: all of
//! a step or none of it, its audit event exactly when its change happens, a used nonce, jti
//! or token changing nothing, and the permission following its request.

use ciba_domain::audit::{action, Actor, Origin, Outcome};
use ciba_domain::status::{PermissionStatus, RequestStatus};
use ciba_service::requests::{decide_signed, Decision, DecisionJtis, Recorded};
use ciba_store::audit::{self, AuditRow, By, Filter};
use ciba_store::auth_requests::{self, AuthRequestRow};
use ciba_store::permissions::{self, Insert, PermissionRow};
use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl, Store};
use diesel::connection::SimpleConnection;

const NOW: i64 = 1_900_000_000;
const NNIN: &str = "01019010046";

fn store(db: &TestDatabase) -> Store {
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

fn event(what: &'static str, object: &str, at_ms: i64) -> AuditRow {
    let origin = Origin::default();
    let by = By {
        actor: Actor::Client("c1"),
        origin: &origin,
        at_ms,
    };
    audit::row(&by, what, Some(object), Outcome::Ok)
}

fn trail(store: &Store) -> Vec<(String, Option<String>)> {
    let f = Filter {
        limit: 100,
        ..Filter::default()
    };
    let rows = store.read(|c| audit::list(c, &f)).unwrap();
    rows.into_iter().map(|e| (e.action, e.object_id)).collect()
}

fn permission(id: &str) -> PermissionRow {
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

fn request(id: &str, permission_id: &str) -> AuthRequestRow {
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

fn whole_flow(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let reg = |id: &str, nonce: &str| {
        let e = event(action::PERMISSION_REGISTERED, id, 1);
        let p = permission(id);
        store
            .write_one(|c| permissions::register(c, &p, nonce, &e))
            .unwrap()
    };
    // Registration: stored with its user found by the NNIN; a used nonce stores nothing.
    assert_eq!(reg("p1", "n1"), Insert::Created);
    assert_eq!(reg("p2", "n1"), Insert::NonceReused);
    let p1 = store.read(|c| permissions::find(c, "p1")).unwrap().unwrap();
    assert_eq!(p1.user_sub.as_deref(), Some("u1"));
    assert_eq!(p1.intents, "app2app");
    assert!(store
        .read(|c| permissions::find(c, "p2"))
        .unwrap()
        .is_none());

    // Start: the request stored and the permission used by it; a second start from the same
    // permission stores nothing.
    let start = |id: &str| {
        let e = event(action::REQUEST_STARTED, id, 2);
        let r = request(id, "p1");
        store
            .write_one(|c| auth_requests::start_recorded(c, &r, "p1", NOW, &e))
            .unwrap()
    };
    assert!(start("r1"));
    assert!(!start("r2"));
    let r1 = store
        .read(|c| auth_requests::find(c, "r1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            r1.link_ref.as_str(),
            r1.binding_message.as_deref(),
            r1.expires_at
        ),
        ("ref-r1", Some("ABC"), NOW + 300)
    );
    assert!(store
        .read(|c| auth_requests::find(c, "r2"))
        .unwrap()
        .is_none());
    let p1 = store.read(|c| permissions::find(c, "p1")).unwrap().unwrap();
    assert_eq!(
        (p1.auth_req_id.as_deref(), p1.token_used_at),
        (Some("r1"), Some(NOW))
    );

    // Decision: a used jti (the decision's or its device JWT's) changes nothing; a fresh
    // jti on a decided request is spent and changes nothing else.
    let decide = |jti: &str, device_jti: &str, status: RequestStatus| {
        let e = event(action::REQUEST_APPROVED, "r1", 3);
        let d = Decision {
            status,
            device_id: "d1",
            amr: r#"["swk"]"#,
        };
        let spent = DecisionJtis {
            decision: (jti, NOW + 180),
            device: (device_jti, NOW + 180),
        };
        store
            .write_one(|c| decide_signed(c, &spent, "r1", &d, (&e, false), NOW + 1))
            .unwrap()
    };
    let spent_device_jti = store
        .write_one(|c| ciba_store::jtis::record(c, "dj0", NOW + 180))
        .unwrap();
    assert!(spent_device_jti);
    // (decision jti, device JWT jti, status) in order, and what each write did.
    let steps = [
        // a replayed device JWT decides nothing, and the decision's jti is spent with it
        (
            "j0",
            "dj0",
            RequestStatus::Approved,
            Recorded::DeviceJtiUsed,
        ),
        ("j0", "dj00", RequestStatus::Approved, Recorded::JtiUsed),
        ("j1", "dj1", RequestStatus::Approved, Recorded::Decided),
        ("j1", "dj2", RequestStatus::Declined, Recorded::JtiUsed),
        (
            "j3",
            "dj1",
            RequestStatus::Declined,
            Recorded::DeviceJtiUsed,
        ),
        ("j2", "dj3", RequestStatus::Declined, Recorded::NotPending),
        ("j2", "dj4", RequestStatus::Declined, Recorded::JtiUsed),
    ];
    for (jti, device_jti, status, expected) in steps {
        assert_eq!(
            decide(jti, device_jti, status),
            expected,
            "{jti} {device_jti}"
        );
    }
    let r1 = store
        .read(|c| auth_requests::find(c, "r1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            r1.status.as_str(),
            r1.device_id.as_deref(),
            r1.amr.as_deref()
        ),
        ("approved", Some("d1"), Some(r#"["swk"]"#))
    );
    let p1 = store.read(|c| permissions::find(c, "p1")).unwrap().unwrap();
    assert_eq!(
        (p1.status.as_str(), p1.decided_at, p1.user_sub.as_deref()),
        ("granted", Some(NOW + 1), Some("u1"))
    );

    // Redemption: once, by its client.
    let redeem = |client: &str| {
        let e = event(action::REQUEST_REDEEMED, "r1", 4);
        store
            .write_one(|c| auth_requests::redeem_recorded(c, ("r1", client), NOW + 2, &e))
            .unwrap()
    };
    assert!(
        redeem("c2").is_none(),
        "another client's poll redeems nothing"
    );
    let (r1, p1, u1) = redeem("c1").expect("redeemed");
    assert_eq!(
        (r1.id.as_str(), r1.redeemed_at, r1.status.as_str()),
        ("r1", Some(NOW + 2), "approved")
    );
    let (p1, u1) = (p1.expect("its permission"), u1.expect("its user"));
    assert_eq!(
        (
            p1.id.as_str(),
            p1.status.as_str(),
            p1.exp,
            p1.app_callback_uri.as_deref()
        ),
        (
            "p1",
            "granted",
            NOW + 600,
            Some("https://merchant.example/cb")
        )
    );
    assert_eq!(
        (
            u1.sub.as_str(),
            u1.nnin.as_str(),
            u1.given_name.as_str(),
            u1.bankid_pid
        ),
        ("u1", NNIN, "Kari", None)
    );
    assert!(redeem("c1").is_none(), "once");

    // Each step's event exactly once, in order.
    let expected = [
        (action::PERMISSION_REGISTERED, "p1"),
        (action::REQUEST_STARTED, "r1"),
        (action::REQUEST_APPROVED, "r1"),
        (action::REQUEST_REDEEMED, "r1"),
    ]
    .map(|(a, o)| (a.to_owned(), Some(o.to_owned())));
    assert_eq!(trail(&store), expected);
}

#[test]
fn whole_flow_sqlite() {
    whole_flow(Backend::Sqlite);
}

#[test]
fn whole_flow_postgres() {
    whole_flow(Backend::Postgres);
}

/// Concurrent decisions with fresh jtis on one request: exactly one decides, the others
/// are told it is no longer pending, and the trail has one decision.
fn racing_decisions(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let p = permission("p1");
    let e = event(action::PERMISSION_REGISTERED, "p1", 1);
    store
        .write_one(|c| permissions::register(c, &p, "n1", &e))
        .unwrap();
    let (r, e) = (request("r1", "p1"), event(action::REQUEST_STARTED, "r1", 2));
    assert!(store
        .write_one(|c| auth_requests::start_recorded(c, &r, "p1", NOW, &e))
        .unwrap());
    let outcomes: Vec<Recorded> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                s.spawn(move || {
                    let e = event(action::REQUEST_APPROVED, "r1", 3);
                    let d = Decision {
                        status: RequestStatus::Approved,
                        device_id: "d1",
                        amr: r#"["swk"]"#,
                    };
                    let (jti, device_jti) = (format!("j{i}"), format!("dj{i}"));
                    let spent = DecisionJtis {
                        decision: (&jti, NOW + 180),
                        device: (&device_jti, NOW + 180),
                    };
                    store
                        .write_one(|c| decide_signed(c, &spent, "r1", &d, (&e, false), NOW + 1))
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let decided = outcomes.iter().filter(|o| **o == Recorded::Decided).count();
    assert_eq!(decided, 1, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Recorded::Decided | Recorded::NotPending)));
    let approvals = trail(&store)
        .into_iter()
        .filter(|(a, _)| a == action::REQUEST_APPROVED)
        .count();
    assert_eq!(approvals, 1);
}

#[test]
fn racing_decisions_sqlite() {
    racing_decisions(Backend::Sqlite);
}

#[test]
fn racing_decisions_postgres() {
    racing_decisions(Backend::Postgres);
}

#[derive(diesel::QueryableByName)]
struct Plans {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    statements: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    executions: i64,
}

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

/// Each one-statement step is prepared once per connection and executed from then on: parsing
/// and planning the CTEs on every call was the PostgreSQL server's largest cost per flow.
#[test]
fn steps_are_prepared_once_per_connection_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    drop(store(&db)); // the schema, the client and the user
                      // One connection, so every call below runs on the session that is inspected.
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 1).unwrap();
    for (n, id) in ["p1", "p2", "p3"].iter().enumerate() {
        let e = event(action::PERMISSION_REGISTERED, id, 1);
        let nonce = format!("n{n}");
        let p = permission(id);
        let done = store.write_one(|c| permissions::register(c, &p, &nonce, &e));
        assert_eq!(done.unwrap(), Insert::Created);
    }
    for (r, p) in [("r1", "p1"), ("r2", "p2"), ("r3", "p3")] {
        let e = event(action::REQUEST_STARTED, r, 2);
        let row = request(r, p);
        assert!(store
            .write_one(|c| auth_requests::start_recorded(c, &row, p, NOW, &e))
            .unwrap());
    }
    let plans = |marker: &'static str| {
        store
            .read(move |c| {
                let sql = "SELECT count(*) AS statements, \
                           coalesce(sum(generic_plans + custom_plans), 0)::bigint AS executions \
                           FROM pg_prepared_statements WHERE statement LIKE $1";
                let q = diesel::sql_query(sql).bind::<diesel::sql_types::Text, _>(marker);
                Ok(diesel::RunQueryDsl::get_result::<Plans>(q, c)?)
            })
            .unwrap()
    };
    for marker in [
        "%INSERT INTO permission_nonces%",
        "%UPDATE permissions SET token_used_at%",
    ] {
        let p = plans(marker);
        assert_eq!((p.statements, p.executions), (1, 3), "{marker}");
    }
}

/// The statements diesel would prepare afresh on every call (an `UPDATE`, an insert of
/// optional values) are prepared once per connection on both backends: diesel reports a
/// statement as cached once, however often it runs.
fn written_statements_are_cached(backend: Backend) {
    use std::sync::{Arc, Mutex};
    let db = TestDatabase::create(backend);
    drop(store(&db));
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 1).unwrap();
    let cached: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = cached.clone();
    store
        .read(move |c| {
            let log = move |e: diesel::connection::InstrumentationEvent<'_>| {
                if let diesel::connection::InstrumentationEvent::CacheQuery { sql, .. } = e {
                    seen.lock().unwrap().push(sql.to_owned());
                }
            };
            match c {
                ciba_store::DbConnection::Pg(c) => diesel::Connection::set_instrumentation(c, log),
                ciba_store::DbConnection::Sqlite(c) => {
                    diesel::Connection::set_instrumentation(c, log)
                }
            }
            Ok(())
        })
        .unwrap();
    for i in 0..3 {
        let id = format!("e{i}");
        let e = event(action::REQUEST_REDEEMED, &id, i);
        store.write_one(|c| audit::insert(c, &e)).unwrap();
        let redeemed = store.write_one(|c| auth_requests::redeem(c, &id, "c1", NOW));
        assert!(!redeemed.unwrap(), "no such request");
        let claimed = store.write_one(|c| permissions::claim_token(c, (&id, "c1"), "ciba", NOW));
        assert!(claimed.unwrap().is_none(), "no such permission");
        let decided = store.write_one(|c| {
            auth_requests::record_decision(c, &id, RequestStatus::Approved, "d1", "[]", NOW)
        });
        assert!(decided.unwrap().is_none(), "no such request");
        let followed = store.write_one(|c| {
            permissions::follow_request(c, (&id, &id), PermissionStatus::Granted, Some("u1"), NOW)
        });
        assert!(!followed.unwrap(), "no such permission");
        // Batches of 1, 2 and 3 polls.
        let polls: Vec<_> = (0..=i)
            .map(|k| ciba_store::polling::Poll {
                id: format!("{id}-{k}"),
                client_id: "c1".into(),
                now_ms: NOW * 1000,
            })
            .collect();
        let polled = store.write_one(|c| ciba_store::polling::record_polls(c, &polls, 500));
        assert_eq!(polled.unwrap().len() as i64, i + 1);
    }
    let cached = cached.lock().unwrap().clone();
    for marker in [
        "INSERT INTO audit_events",
        "UPDATE auth_requests SET redeemed_at",
        "UPDATE permissions SET token_used_at",
        "UPDATE auth_requests SET status",
        "UPDATE permissions SET status",
    ] {
        let n = cached.iter().filter(|s| s.contains(marker)).count();
        assert_eq!(n, 1, "{marker} cached once: {cached:?}");
    }
    // SQLite's poll batch: one statement for every batch size (PostgreSQL's is a function).
    let batches = cached.iter().filter(|s| s.contains("json_each")).count();
    assert_eq!(
        batches,
        usize::from(backend == Backend::Sqlite),
        "{cached:?}"
    );
    assert_eq!(trail(&store).len(), 3);
}

#[test]
fn written_statements_are_cached_sqlite() {
    written_statements_are_cached(Backend::Sqlite);
}

#[test]
fn written_statements_are_cached_postgres() {
    written_statements_are_cached(Backend::Postgres);
}
