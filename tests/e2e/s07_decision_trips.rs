//! Issue 21: a decision writes once (the decision, both jtis and the event in one step),
//! whatever its answer: an approval, a refused signature, another user's request. It reads
//! nothing when the request started through this process and the device was read here
//! lately; otherwise it reads both in one trip. A view reads both in one trip too, and
//! writes once (its jti). Counted by `ciba_db_trips_total`.
#![allow(clippy::unwrap_used)]

use crate::s07_decision_jti::pending_request;
use crate::support;

use support::app::*;
use support::{Backend, TestServer};

async fn a_decision_reads_once_and_writes_once(b: Backend) {
    // The view names the merchant: from the client cache, kept for the whole test.
    let srv = TestServer::start_with(b, &[("CIBA_CLIENT_CACHE_TTL", "300")]).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(310), IPHONE).await;
    let other = App::enroll(&srv, &nnin(311), IPHONE).await;

    let started = start(&srv, &m, &app.nnin, IPHONE).await;
    started.ok();
    let link_ref = ref_of(started.str("authorize_uri"));
    let path = format!("/app/v1/auth-requests/{link_ref}");
    let (view, reads, writes) = srv.trips_of(app.get(&srv, &path)).await;
    view.ok();
    assert_eq!((reads, writes), (1.0, 1.0), "a view");
    let (r, reads, writes) = srv.trips_of(other.get(&srv, &path)).await;
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(
        (reads, writes),
        (1.0, 1.0),
        "a view of another user's request"
    );

    // Started here, its device read here by the view: nothing to read.
    let digest = view.str("permission_digest").to_owned();
    let signed = app.sign_decision(&link_ref, "approve", &digest);
    let (r, reads, writes) = srv
        .trips_of(app.send_decision(&srv, &link_ref, &signed))
        .await;
    r.ok();
    assert_eq!((reads, writes), (0.0, 1.0), "an approval");

    // Refused decisions make the same trips: the jti is spent by the one write.
    let (_, link_ref, digest) = pending_request(&srv, &m, &app).await;
    let forged = other.sign_decision(&link_ref, "approve", &digest);
    let (r, reads, writes) = srv
        .trips_of(app.send_decision(&srv, &link_ref, &forged))
        .await;
    r.expect_error(400, "invalid_request");
    assert_eq!(
        (reads, writes),
        (0.0, 1.0),
        "a decision signed by another key"
    );

    let signed = other.sign_decision(&link_ref, "approve", &digest);
    let (r, reads, writes) = srv
        .trips_of(other.send_decision(&srv, &link_ref, &signed))
        .await;
    assert_eq!(r.status, 403, "{r}");
    assert_eq!((reads, writes), (0.0, 1.0), "another user's request");
}

on_both_backends!(a_decision_reads_once_and_writes_once);

async fn a_decision_this_process_knows_nothing_of_reads_once(b: Backend) {
    let mut srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(312), IPHONE).await;
    let (id, link_ref, digest) = pending_request(&srv, &m, &app).await;
    // Another process, or this one restarted: neither the request nor the device in memory.
    srv.restart().await;
    let signed = app.sign_decision(&link_ref, "approve", &digest);
    let (r, reads, writes) = srv
        .trips_of(app.send_decision(&srv, &link_ref, &signed))
        .await;
    r.ok();
    assert_eq!((reads, writes), (1.0, 1.0), "an approval read in one trip");
    m.poll(&srv, &id).await.ok();
}

on_both_backends!(a_decision_this_process_knows_nothing_of_reads_once);
