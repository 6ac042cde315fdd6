#![allow(clippy::unwrap_used)]
//! The audit trail on both backends: events listed in time order and by filter, rows never
//! changed (the database refuses it), and the retention deletes only what is older than it.

use ciba_domain::audit::{Actor, Origin, Outcome};
use ciba_store::audit::{self, By, Filter};
use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl, Store};
use diesel::connection::SimpleConnection;

const DAY_MS: i64 = 86_400_000;
const NOW_MS: i64 = 1_900_000_000_000;

fn store(db: &TestDatabase) -> Store {
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
    store.migrate().unwrap();
    store
}

fn record(store: &Store, actor: Actor<'_>, action: &'static str, object: &str, at_ms: i64) {
    let origin = Origin {
        source: Some("192.0.2.7".into()),
        request_id: Some(format!("req-{at_ms}")),
    };
    let by = By {
        actor,
        origin: &origin,
        at_ms,
    };
    store
        .write(|c| audit::record(c, &by, action, Some(object), Outcome::Ok))
        .unwrap();
}

/// Every stored event, as the trail lists them.
fn listed(store: &Store) -> Vec<audit::AuditRow> {
    let every = Filter {
        limit: 1000,
        ..Filter::default()
    };
    store.read(|c| audit::list(c, &every)).unwrap()
}

fn trail(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    record(
        &store,
        Actor::Client("c1"),
        "request.started",
        "r1",
        NOW_MS - 40 * DAY_MS,
    );
    record(
        &store,
        Actor::Device("d1"),
        "request.approved",
        "r1",
        NOW_MS - 40 * DAY_MS + 5,
    );
    record(
        &store,
        Actor::Client("c2"),
        "request.started",
        "r2",
        NOW_MS - 1,
    );
    record(&store, Actor::System, "key.rotated", "k1", NOW_MS);

    let all = listed(&store);
    let actions: Vec<(&str, Option<&str>)> = all
        .iter()
        .map(|r| (r.action.as_str(), r.object_id.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("request.started", Some("r1")),
            ("request.approved", Some("r1")),
            ("request.started", Some("r2")),
            ("key.rotated", Some("k1"))
        ]
    );
    assert_eq!(
        (all[1].actor_kind.as_str(), all[1].actor_id.as_deref()),
        ("device", Some("d1"))
    );
    assert_eq!(
        (all[3].actor_kind.as_str(), all[3].actor_id.as_deref()),
        ("system", None)
    );
    assert_eq!(all[0].source.as_deref(), Some("192.0.2.7"));

    let by_client = Filter {
        client: Some("c1".into()),
        limit: 100,
        ..Filter::default()
    };
    assert_eq!(store.read(|c| audit::list(c, &by_client)).unwrap().len(), 1);
    let recent = Filter {
        since_ms: Some(NOW_MS - DAY_MS),
        action: Some("request.started".into()),
        limit: 100,
        ..Filter::default()
    };
    let recent = store.read(|c| audit::list(c, &recent)).unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].object_id.as_deref(), Some("r2"));

    // Append-only: the database refuses a change.
    let changed =
        store.write(|c| Ok(c.batch_execute("UPDATE audit_events SET outcome = 'refused'")?));
    assert!(changed.is_err(), "an audit row was changed");

    // Retention: what is older than the cutoff goes, the rest stays.
    let purged = store
        .write(|c| audit::purge_before(c, NOW_MS - 30 * DAY_MS, 1))
        .unwrap();
    assert_eq!(purged, 1, "bounded batches");
    let purged = store
        .write(|c| audit::purge_before(c, NOW_MS - 30 * DAY_MS, 100))
        .unwrap();
    assert_eq!(purged, 1);
    let left = listed(&store);
    assert_eq!(
        left.iter()
            .map(|r| r.object_id.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["r2", "k1"]
    );
}

#[test]
fn trail_sqlite() {
    trail(Backend::Sqlite);
}

#[test]
fn trail_postgres() {
    trail(Backend::Postgres);
}

/// A decision and its redemption often share a millisecond, and a poll that started before
/// the decision committed carries an earlier time than it: the trail still lists them in the
/// order they were written (ids were random within a millisecond, and the list ordered by
/// time first, so a redemption could come before the approval it redeemed).
fn written_order(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    for i in 0..40 {
        let object = format!("r{i}");
        record(
            &store,
            Actor::Device("d1"),
            "request.approved",
            &object,
            NOW_MS,
        );
        let at = if i % 2 == 0 { NOW_MS } else { NOW_MS - 1 };
        record(&store, Actor::Client("c1"), "request.redeemed", &object, at);
    }
    let all = listed(&store);
    let listed: Vec<(String, &str)> = all
        .iter()
        .map(|r| (r.object_id.clone().unwrap(), r.action.as_str()))
        .collect();
    let written: Vec<(String, &str)> = (0..40)
        .flat_map(|i| {
            [
                (format!("r{i}"), "request.approved"),
                (format!("r{i}"), "request.redeemed"),
            ]
        })
        .collect();
    assert_eq!(listed, written);
}

#[test]
fn written_order_sqlite() {
    written_order(Backend::Sqlite);
}

#[test]
fn written_order_postgres() {
    written_order(Backend::Postgres);
}
