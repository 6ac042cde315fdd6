#![allow(clippy::unwrap_used)]
//! The flow's write steps that PostgreSQL runs as one statement (registration, start,
//! decision, redemption) do on both backends what the transactions they replaced did: all of
//! a step or none of it, its audit event exactly when its change happens, a used nonce, jti
//! or token changing nothing, and the permission following its request.

use ciba_domain::audit::action;
use ciba_domain::status::RequestStatus;
use ciba_service::requests::{decide_signed, Decision, DecisionJtis, Recorded};
use ciba_store::auth_requests;
use ciba_store::permissions::{self, Insert};
use ciba_store::testing::TestDatabase;
use ciba_store::Backend;

mod common;
use common::*;

/// [`store`] with the user's phones: `phone` active, `stolen` revoked.
fn store_with_phones(db: &TestDatabase) -> ciba_store::Store {
    let store = store(db);
    let sql = "INSERT INTO devices (id, user_sub, platform, manufacturer, model, public_jwk, \
               status, created_at) VALUES ('phone','u1','ios','Apple','iPhone','{}','active',1), \
               ('stolen','u1','ios','Apple','iPhone','{}','revoked',1);";
    store
        .write(|c| Ok(diesel::connection::SimpleConnection::batch_execute(c, sql)?))
        .unwrap();
    store
}

fn whole_flow(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store_with_phones(&db);
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
            device_id: "phone",
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
    // A device revoked since it was authenticated decides nothing; both jtis are spent.
    let e = event(action::REQUEST_APPROVED, "r1", 3);
    let by_revoked = Decision {
        status: RequestStatus::Approved,
        device_id: "stolen",
        amr: r#"["swk"]"#,
    };
    let spent = DecisionJtis {
        decision: ("jr", NOW + 180),
        device: ("djr", NOW + 180),
    };
    let outcome = store
        .write_one(|c| decide_signed(c, &spent, "r1", &by_revoked, (&e, false), NOW + 1))
        .unwrap();
    assert_eq!(outcome, Recorded::DeviceInactive);
    assert_eq!(
        decide("jr", "djr2", RequestStatus::Approved),
        Recorded::JtiUsed
    );
    assert_eq!(
        decide("jr2", "djr", RequestStatus::Approved),
        Recorded::DeviceJtiUsed
    );
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
        ("approved", Some("phone"), Some(r#"["swk"]"#))
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
    let store = store_with_phones(&db);
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
                        device_id: "phone",
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
