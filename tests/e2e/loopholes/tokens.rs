//! Tokens: a user's access token is not the merchant's; approvals expire; a failure while
//! making the tokens does not lose the approval; token-bearing answers are never cached.

use super::approved;
use crate::support::app::{nnin, nonce_statement, now, App, Merchant, IPHONE, SCOPES};
use crate::support::{Backend, TestServer, ASSERTION_TYPE};
use ciba_store::schema::auth_requests;
use diesel::prelude::*;
use serde_json::json;

/// The thief of one user's access token tries to act as the merchant: redeem the merchant's
/// other approved requests (other users' ID tokens) and register permissions.
async fn a_users_access_token_does_not_authenticate_the_merchant(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let (alice, bob) = (
        App::enroll(&srv, &nnin(100), IPHONE).await,
        App::enroll(&srv, &nnin(200), IPHONE).await,
    );
    let (alice_req, _) = approved(&srv, &m, &alice).await;
    let tokens = m.poll(&srv, &alice_req).await;
    tokens.ok();
    let stolen = tokens.str("access_token");

    let (bob_req, _) = approved(&srv, &m, &bob).await;
    srv.post(
        "/oidc/v1/token",
        None,
        &[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", &bob_req),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", stolen),
        ],
    )
    .await
    .expect_error(401, "invalid_client");
    let t = now();
    let permission = json!({"type": "authentication.v1", "iat": t, "exp": t + 600, "permission": nonce_statement(),
                            "intents": ["ciba"], "loginHint": [{"scheme": "nnin", "value": bob.nnin}]});
    srv.post_json("/permissions/v1/", Some(stolen), &permission)
        .await
        .expect_error(401, "invalid_client");
    // The merchant itself still redeems Bob's request.
    assert_eq!(m.poll(&srv, &bob_req).await.status, 200);
}

/// An approved request left unredeemed past its expiry is expired, not a token forever.
async fn an_approved_request_expires(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (id, _) = approved(&srv, &m, &app).await;
    let past = now() - 1;
    let i = id.clone();
    srv.store()
        .read(move |c| {
            diesel::update(auth_requests::table.find(&i))
                .set(auth_requests::expires_at.eq(past))
                .execute(c)?;
            Ok(())
        })
        .unwrap();
    m.poll(&srv, &id).await.expect_error(400, "expired_token");
}

/// Making the tokens fails after approval (here: the user's row cannot be found): the
/// approval is not spent, and the next poll once the fault is gone gets the tokens.
async fn a_failure_while_making_tokens_keeps_the_approval(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (id, _) = approved(&srv, &m, &app).await;
    let set_sub = |sub: String| {
        let i = id.clone();
        srv.store()
            .read(move |c| {
                diesel::update(auth_requests::table.find(&i))
                    .set(auth_requests::user_sub.eq(sub))
                    .execute(c)?;
                Ok(())
            })
            .unwrap();
    };
    set_sub("no-such-user".into());
    m.poll(&srv, &id).await.expect(500);
    set_sub(app.sub.clone());
    let r = m.poll(&srv, &id).await;
    assert_eq!(r.status, 200, "the approval was lost: {r}");
    assert!(r["id_token"].is_string());
    m.poll(&srv, &id).await.expect_error(400, "invalid_grant");
}

/// The permission registration answer holds a permission token: no cache may keep it.
async fn token_answers_are_never_cached(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let t = now();
    let created = srv
        .post_json(
            "/permissions/v1/",
            Some(&m.token),
            &json!({"type": "authentication.v1", "iat": t, "exp": t + 600, "permission": nonce_statement(),
                    "intents": ["ciba"], "loginHint": [{"scheme": "nnin", "value": nnin(100)}]}),
        )
        .await;
    created.expect(201);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    assert_eq!(created.header("pragma"), Some("no-cache"));
    let read = srv
        .get_bearer(&format!("/permissions/v1/{}", created.str("id")), &m.token)
        .await;
    assert_eq!(read.header("cache-control"), Some("no-store"));
}

on_both_backends!(
    a_users_access_token_does_not_authenticate_the_merchant,
    an_approved_request_expires,
    a_failure_while_making_tokens_keeps_the_approval,
    token_answers_are_never_cached,
);
