//! One permission token, one answer about the user: a merchant cannot probe a victim's phone
//! model (`device_mismatch`) or enrolment (`unknown_user_id`) again and again with it.

use crate::support::app::{device_info, nnin, payment_statement, App, Merchant, IPHONE, SCOPES};
use crate::support::{Backend, Reply, TestServer};

async fn try_device(srv: &TestServer, m: &Merchant, pt: &str, device: (&str, &str, &str)) -> Reply {
    m.app_authorize(
        srv,
        &[
            ("login_hint_token", pt),
            ("scope", "openid"),
            ("device_info", &device_info(device)),
        ],
    )
    .await
}

/// A server, a merchant, a victim with an iPhone, and one permission token for the victim.
async fn victim_and_token(backend: Backend) -> (TestServer, Merchant, String) {
    let srv = TestServer::start(backend).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let victim = nnin(50);
    App::enroll(&srv, &victim, IPHONE).await;
    let created = m
        .register(&srv, &payment_statement(), "payment.v1", &victim, "app2app")
        .await;
    let pt = created["permissionToken"].as_str().unwrap().to_owned();
    (srv, m, pt)
}

async fn a_mismatch_uses_up_the_permission_token(backend: Backend) {
    let (srv, m, pt) = victim_and_token(backend).await;
    let pt = pt.as_str();
    // The attacker guesses a model: wrong.
    try_device(&srv, &m, pt, ("ios", "Apple", "iPhone15,3"))
        .await
        .expect_error(400, "device_mismatch");
    // A second guess with the same token learns nothing more, even the right model.
    let r = try_device(&srv, &m, pt, IPHONE).await;
    assert_ne!(r.error(), "device_mismatch", "{r}");
    r.expect_error(400, "invalid_request");

    // The same for a user with no enrolled app.
    let stranger = nnin(60);
    let created = m
        .register(
            &srv,
            &payment_statement(),
            "payment.v1",
            &stranger,
            "app2app",
        )
        .await;
    let pt = created["permissionToken"].as_str().unwrap();
    try_device(&srv, &m, pt, IPHONE)
        .await
        .expect_error(400, "unknown_user_id");
    try_device(&srv, &m, pt, IPHONE)
        .await
        .expect_error(400, "invalid_request");
}

/// The same token sent in parallel with many guesses: only one of them is answered about
/// the phone; the others are told the token was already used.
async fn parallel_guesses_with_one_token_get_one_answer(backend: Backend) {
    let (srv, m, pt) = victim_and_token(backend).await;
    let pt = pt.as_str();
    let models = [
        "iPhone11,2",
        "iPhone12,1",
        "iPhone13,2",
        "iPhone14,5",
        "iPhone15,2",
        "iPhone15,3",
        "iPhone16,1",
        "iPhone16,2",
    ];
    let guesses = models
        .iter()
        .map(|model| try_device(&srv, &m, pt, ("ios", "Apple", model)));
    let answers = futures_util::future::join_all(guesses).await;
    let informative = answers
        .iter()
        .filter(|r| r.status == 200 || r.error() == "device_mismatch")
        .count();
    let shown: Vec<String> = answers.iter().map(Reply::to_string).collect();
    assert_eq!(informative, 1, "{shown:?}");
    assert!(answers.iter().all(|r| r.status == 200
        || r.error() == "device_mismatch"
        || r.error() == "invalid_request"));
}

on_both_backends!(
    a_mismatch_uses_up_the_permission_token,
    parallel_guesses_with_one_token_get_one_answer,
);
