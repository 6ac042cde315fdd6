#![allow(clippy::unwrap_used)]
//! `polling::record_polls` answers each poll exactly as one conditional UPDATE of that poll
//! alone would, on both backends, and the careful path's `slow_down` writes what the batch
//! would. How a batch uses the database (held rows, look-ups, writes) is in
//! `poll_batch_database.rs`.

mod poll_rows;

use ciba_store::auth_requests as requests;
use ciba_store::polling::{self, Paced, Poll};
use ciba_store::testing::TestDatabase;
use ciba_store::Backend;
use diesel::connection::SimpleConnection;
use poll_rows::{poll, store, GRACE_MS, NOW_MS};

fn answers_like_one_poll_each(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let ids = [
        "fresh",
        "paced",
        "grace",
        "early",
        "slowed",
        "other",
        "approved",
        "expired",
        "unknown",
        "capped",
        "capped_other",
        "capped_approved",
        "capped_expired",
        "capped_due",
    ];
    let before: Vec<_> = ids
        .iter()
        .map(|id| store.read(|c| requests::find(c, id)).unwrap())
        .collect();
    let polls: Vec<Poll> = ids.iter().map(|id| poll(id)).collect();
    let got = store
        .write_soft(|c| polling::record_polls(c, &polls, GRACE_MS))
        .unwrap();
    use Paced::{LookCloser as L, Recorded as R, SlowedDown as S};
    let expected = [R, R, R, S, S, L, L, L, L, S, L, L, L, R];
    assert_eq!(got, expected, "{ids:?}");
    // A recorded poll is the request's last; a slowed one keeps the last poll, grows the
    // interval by 5 s and is marked with its time; one at the maximum interval and the
    // others leave their rows as they were.
    for (i, id) in ids.iter().enumerate() {
        let (was, row) = (
            before[i].as_ref(),
            store.read(|c| requests::find(c, id)).unwrap(),
        );
        let Some(row) = row else {
            assert!(was.is_none(), "{id}");
            continue;
        };
        let was = was.unwrap();
        match expected[i] {
            R => {
                assert_eq!(row.last_poll_ms, Some(NOW_MS), "{id}");
                assert_eq!(row.interval_secs, was.interval_secs, "{id}");
                assert_eq!(row.slowed_down_ms, None, "{id}");
            }
            S if was.interval_secs < 60 => {
                assert_eq!(row.last_poll_ms, was.last_poll_ms, "{id}");
                assert_eq!(row.interval_secs, was.interval_secs + 5, "{id}");
                assert_eq!(row.slowed_down_ms, Some(NOW_MS), "{id}");
            }
            _ => assert_eq!(format!("{row:?}"), format!("{was:?}"), "{id}: untouched"),
        }
    }
    // Polling again at once: the three are now too early, and their interval grows.
    let again = store
        .write_soft(|c| polling::record_polls(c, &polls[..3], GRACE_MS))
        .unwrap();
    assert_eq!(again, [S, S, S]);
    // One (new) interval later the three are well paced again; an empty batch is fine.
    let later: Vec<Poll> = polls[..3]
        .iter()
        .map(|p| Poll {
            now_ms: NOW_MS + 7_000,
            ..p.clone()
        })
        .collect();
    let ok = store
        .write_soft(|c| polling::record_polls(c, &later, GRACE_MS))
        .unwrap();
    assert_eq!(ok, [R, R, R]);
    for id in &ids[..3] {
        let row = store.read(|c| requests::find(c, id)).unwrap().unwrap();
        assert_eq!(row.interval_secs, 7, "well paced again: the interval stays");
    }
    let none = store
        .write_soft(|c| polling::record_polls(c, &[], GRACE_MS))
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn answers_like_one_poll_each_sqlite() {
    answers_like_one_poll_each(Backend::Sqlite);
}

#[test]
fn answers_like_one_poll_each_postgres() {
    answers_like_one_poll_each(Backend::Postgres);
}

/// A too-early poll grows the interval up to 60 s and no further (an interval configured
/// longer stays); it is not the last poll. At the maximum it writes nothing.
fn the_interval_stops_growing_at_its_maximum(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let now = NOW_MS / 1000;
    let mut sql = String::new();
    for (id, interval) in [("i57", 57), ("i60", 60), ("i90", 90)] {
        sql += &format!(
            "INSERT INTO auth_requests (id, link_ref, client_id, user_sub, flow, scope, acr, \
             status, interval_secs, last_poll_ms, created_at, expires_at) VALUES \
             ('{id}','ref-{id}','c1','sub','ciba','openid','urn:acr:high','pending', \
             {interval},{},{now},{});",
            NOW_MS - 1_000,
            now + 600
        );
    }
    store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
    let polls = [poll("i57"), poll("i60"), poll("i90")];
    let got = store
        .write_soft(|c| polling::record_polls(c, &polls, GRACE_MS))
        .unwrap();
    assert_eq!(got, [Paced::SlowedDown; 3]);
    for (id, interval, mark) in [
        ("i57", 60, Some(NOW_MS)),
        ("i60", 60, None),
        ("i90", 90, None),
    ] {
        let row = store.read(|c| requests::find(c, id)).unwrap().unwrap();
        assert_eq!(row.interval_secs, interval, "{id}");
        assert_eq!(row.last_poll_ms, Some(NOW_MS - 1_000), "{id}");
        assert_eq!(row.slowed_down_ms, mark, "{id}");
    }
}

#[test]
fn the_interval_stops_growing_at_its_maximum_sqlite() {
    the_interval_stops_growing_at_its_maximum(Backend::Sqlite);
}

#[test]
fn the_interval_stops_growing_at_its_maximum_postgres() {
    the_interval_stops_growing_at_its_maximum(Backend::Postgres);
}

/// A batch as large as the API sends (128 polls), in an order unrelated to the rows', mixing
/// well-paced and too-early polls: each answer belongs to its own poll.
fn a_full_batch_answers_each_poll_in_order(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let now = NOW_MS / 1000;
    let mut sql = String::new();
    for i in 0..128 {
        // i % 3 == 0: never polled; else polled a second ago (too early), with a 2 s
        // interval (which grows) or with one at the maximum (nothing to write)
        let last = if i % 3 == 0 {
            "NULL".to_owned()
        } else {
            (NOW_MS - 1_000).to_string()
        };
        let interval = if i % 3 == 2 { 60 } else { 2 };
        sql += &format!(
            "INSERT INTO auth_requests (id, link_ref, client_id, user_sub, flow, scope, acr, \
             status, interval_secs, last_poll_ms, created_at, expires_at) VALUES \
             ('bulk{i}','bulkref{i}','c1','sub','app2app','openid','urn:acr:high','pending', \
             {interval},{last},{now},{});",
            now + 60
        );
    }
    store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
    let order: Vec<usize> = (0..128).map(|k| (k * 37) % 128).collect();
    let polls: Vec<Poll> = order.iter().map(|i| poll(&format!("bulk{i}"))).collect();
    let got = store
        .write_soft(|c| polling::record_polls(c, &polls, GRACE_MS))
        .unwrap();
    let want: Vec<Paced> = order
        .iter()
        .map(|i| {
            if i % 3 == 0 {
                Paced::Recorded
            } else {
                Paced::SlowedDown
            }
        })
        .collect();
    assert_eq!(got, want);
    // The recorded polls are now the last ones: the same batch again is too early throughout.
    let again = store
        .write_soft(|c| polling::record_polls(c, &polls, GRACE_MS))
        .unwrap();
    assert!(again.iter().all(|t| *t == Paced::SlowedDown), "{again:?}");
}

#[test]
fn a_full_batch_answers_each_poll_in_order_sqlite() {
    a_full_batch_answers_each_poll_in_order(Backend::Sqlite);
}

#[test]
fn a_full_batch_answers_each_poll_in_order_postgres() {
    a_full_batch_answers_each_poll_in_order(Backend::Postgres);
}

/// The careful path's `slow_down` (a too-early poll it read): the interval grows by 5 s and
/// the poll is marked, but it is not the last poll; an interval another poll grew since it
/// was read is not grown again, and at the maximum nothing is written.
fn the_careful_path_slows_down_as_the_batch_does(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let slow = |id: &str, read: i64| {
        store
            .write_one(|c| polling::slow_down(c, id, read, NOW_MS))
            .unwrap();
        store.read(|c| requests::find(c, id)).unwrap().unwrap()
    };
    let row = slow("early", 2);
    assert_eq!(
        (row.interval_secs, row.last_poll_ms, row.slowed_down_ms),
        (7, Some(NOW_MS - 1_000), Some(NOW_MS))
    );
    let row = slow("paced", 5);
    assert_eq!(
        (row.interval_secs, row.slowed_down_ms),
        (2, None),
        "read 5, is 2"
    );
    let row = slow("capped", 60);
    assert_eq!((row.interval_secs, row.slowed_down_ms), (60, None));
}

#[test]
fn the_careful_path_slows_down_as_the_batch_does_sqlite() {
    the_careful_path_slows_down_as_the_batch_does(Backend::Sqlite);
}

#[test]
fn the_careful_path_slows_down_as_the_batch_does_postgres() {
    the_careful_path_slows_down_as_the_batch_does(Backend::Postgres);
}
