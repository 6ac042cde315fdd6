//! Seeding stored requests directly in the database: the pending set that is polled, and
//! filler rows so the table holds as many requests as a busy deployment would.

use ciba_store::{DatabaseUrl, Store};
use diesel::RunQueryDsl;

/// A run of rows to insert: ids `{prefix}{from..=to}` with `status`.
struct Rows<'a> {
    prefix: &'a str,
    status: &'a str,
    from: u64,
    to: u64,
}

fn insert_sql(
    backend: ciba_store::Backend,
    rows: &Rows<'_>,
    client: &str,
    sub: &str,
    now: i64,
) -> String {
    let Rows {
        prefix,
        status,
        from,
        to,
    } = *rows;
    let cols = "id, link_ref, client_id, permission_id, user_sub, flow, scope, acr, binding_message, \
                client_notification_token, allowed_devices, status, interval_secs, last_poll_ms, created_at, \
                expires_at, decided_at, device_id, amr, redeemed_at";
    let values = format!(
        "'{prefix}' || g, 'ref{prefix}' || g, '{client}', NULL, '{sub}', 'ciba', 'openid', \
         'http://eidas.europa.eu/LoA/substantial', NULL, NULL, NULL, '{status}', 1, NULL, {now}, {exp}, NULL, NULL, NULL, NULL",
        exp = now + 3600
    );
    match backend {
        ciba_store::Backend::Postgres => {
            format!("INSERT INTO auth_requests ({cols}) SELECT {values} FROM generate_series({from}, {to}) AS g")
        }
        ciba_store::Backend::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT {from} UNION ALL SELECT g + 1 FROM s WHERE g < {to}) \
             INSERT INTO auth_requests ({cols}) SELECT {values} FROM s"
        ),
    }
}

/// Insert the pending polled requests `bench{from..=to}` and `filler` finished ones, in batches.
pub fn seed(
    url: &str,
    client: &str,
    sub: &str,
    pending: (u64, u64),
    filler: u64,
    filler_offset: u64,
) -> Result<(), String> {
    let url = DatabaseUrl::parse(url)?;
    let store = Store::open(&url, 1).map_err(|e| e.to_string())?;
    let now = ciba_runtime::clock::now();
    let batch = 100_000;
    let mut jobs = vec![];
    if pending.1 >= pending.0 {
        jobs.push(("bench", "pending", pending.0, pending.1));
    }
    let mut from = filler_offset + 1;
    while from <= filler_offset + filler {
        let to = (from + batch - 1).min(filler_offset + filler);
        jobs.push(("fill", "expired", from, to));
        from = to + 1;
    }
    for (prefix, status, from, to) in jobs {
        let rows = Rows {
            prefix,
            status,
            from,
            to,
        };
        let sql = insert_sql(store.backend(), &rows, client, sub, now);
        store
            .write(|c| Ok(diesel::sql_query(&sql).execute(c)?))
            .map_err(|e| e.to_string())?;
    }
    // Leave the database as a long-running one would be: statistics current and the
    // seeding's WAL checkpointed, so measured phases do not pay for the seeding (a million
    // rows are over a gigabyte of WAL: PostgreSQL would checkpoint during the next phases).
    let settle: &[&str] = match store.backend() {
        ciba_store::Backend::Postgres => &["ANALYZE auth_requests", "CHECKPOINT"],
        ciba_store::Backend::Sqlite => &["PRAGMA wal_checkpoint(TRUNCATE)"],
    };
    for statement in settle {
        store
            .read(|c| Ok(diesel::sql_query(*statement).execute(c)?))
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    Ok(())
}
