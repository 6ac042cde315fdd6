//! The rows and polls of the poll-batch tests (`poll_batch.rs`, `poll_batch_database.rs`):
//! two clients and requests in every state the pacing rules tell apart.

use ciba_store::polling::Poll;
use ciba_store::testing::TestDatabase;
use ciba_store::{DatabaseUrl, Store};
use diesel::connection::SimpleConnection;

pub const NOW_MS: i64 = 1_900_000_000_000;
pub const GRACE_MS: i64 = 500;

/// A migrated store with clients c1 and c2 and the requests below (ids as named).
pub fn store(db: &TestDatabase) -> Store {
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 4).unwrap();
    store.migrate().unwrap();
    let now = NOW_MS / 1000;
    let mut sql = format!(
        "INSERT INTO clients (id, name, secret_hash, scopes, callback_uris, sub_nnin, \
         id_token_alg, delivery_mode, disabled, created_at, updated_at) VALUES \
         ('c1','one','x','openid','[]',false,'ES256','poll',false,{now},{now}), \
         ('c2','two','x','openid','[]',false,'ES256','poll',false,{now},{now});"
    );
    // (id, client, status, interval, last poll, expires)
    #[rustfmt::skip]
    let rows = [
        ("fresh", "c1", "pending", 2, None, now + 60),
        ("paced", "c1", "pending", 2, Some(NOW_MS - 2_000), now + 60),
        ("grace", "c1", "pending", 2, Some(NOW_MS - 1_600), now + 60),
        ("early", "c1", "pending", 2, Some(NOW_MS - 1_000), now + 60),
        ("slowed", "c1", "pending", 7, Some(NOW_MS - 5_000), now + 60),
        ("other", "c2", "pending", 2, None, now + 60),
        ("approved", "c1", "approved", 2, None, now + 60),
        ("expired", "c1", "pending", 2, None, now - 1),
        // interval at its maximum (60 s), polled a second ago
        ("capped", "c1", "pending", 60, Some(NOW_MS - 1_000), now + 60),
        ("capped_other", "c2", "pending", 60, Some(NOW_MS - 1_000), now + 60),
        ("capped_approved", "c1", "approved", 60, Some(NOW_MS - 1_000), now + 60),
        ("capped_expired", "c1", "pending", 60, Some(NOW_MS - 1_000), now - 1),
        // at the maximum and due: recorded (and then looks too early: not answered twice)
        ("capped_due", "c1", "pending", 60, Some(NOW_MS - 60_000), now + 60),
    ];
    for (i, (id, client, status, interval, last, expires)) in rows.iter().enumerate() {
        let last = last.map_or("NULL".to_owned(), |v: i64| v.to_string());
        sql += &format!(
            "INSERT INTO auth_requests (id, link_ref, client_id, user_sub, flow, scope, acr, \
             status, interval_secs, last_poll_ms, created_at, expires_at) VALUES \
             ('{id}','ref{i}','{client}','sub','app2app','openid','urn:acr:high','{status}', \
             {interval},{last},{now},{expires});"
        );
    }
    store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
    store
}

pub fn poll(id: &str) -> Poll {
    Poll {
        id: id.into(),
        client_id: "c1".into(),
        now_ms: NOW_MS,
    }
}
