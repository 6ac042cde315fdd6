//! Identifiers longer than any the server issues are refused before any lookup or cache, so
//! requests with huge client ids cannot grow the process's memory.

use crate::support::app::{nnin, App, Merchant, IPHONE, SCOPES};
use crate::support::keys::EcKey;
use crate::support::{with_assertion, Backend, TestServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

/// `ciba_cache_{entries,bytes}{cache="clients"}` from the metrics.
async fn client_cache(srv: &TestServer) -> (u64, u64) {
    let text = srv.metrics().await;
    let read = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{cache=\"clients\"}} ")))
            .unwrap_or_else(|| panic!("{name} missing from the metrics:\n{text}"))
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    (read("ciba_cache_entries"), read("ciba_cache_bytes"))
}

async fn oversized_identifiers_are_refused_without_growing_caches(backend: Backend) {
    let srv = TestServer::start_with(
        backend,
        &[
            ("CIBA_LIMIT_AUTH_FAILURES", "0"),
            ("CIBA_AUTH_FAILURE_DELAY_MS", "0"),
        ],
    )
    .await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let (entries_before, bytes_before) = client_cache(&srv).await;
    for i in 0..100 {
        // client_secret_post with a 60 KB client id (inside the 64 KiB body limit).
        let id = format!("{i}{}", "c".repeat(60_000));
        srv.post(
            "/oidc/v1/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "x"),
            ],
        )
        .await
        .expect_error(401, "invalid_client");
        // client_secret_basic with a 10 KB client id (inside the header limit).
        let id = format!("{i}{}", "b".repeat(10_000));
        srv.post(
            "/oidc/v1/token",
            Some((&id, "x")),
            &[("grant_type", "client_credentials")],
        )
        .await
        .expect_error(401, "invalid_client");
        // A JWT assertion whose issuer (the client id it claims) is 10 KB.
        let key = EcKey::generate("k");
        let assertion = key.sign(&json!({"iss": id, "sub": id, "aud": srv.base, "exp": 9_999_999_999i64, "jti": format!("j{i}")}));
        srv.post(
            "/oidc/v1/token",
            None,
            &with_assertion(&assertion, &[("grant_type", "client_credentials")]),
        )
        .await
        .expect(401);
    }
    let (entries, bytes) = client_cache(&srv).await;
    assert!(
        entries <= entries_before + 1,
        "{entries_before} -> {entries} entries"
    );
    assert!(
        bytes < bytes_before + 4_096,
        "{bytes_before} -> {bytes} bytes"
    );

    // Other identifiers from requests: refused with the contract's errors, no 5xx.
    let long = "a".repeat(5_000);
    srv.post(
        "/oidc/v1/token",
        Some((&m.id, &m.secret)),
        &[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", &long),
        ],
    )
    .await
    .expect_error(400, "invalid_grant");
    srv.get_bearer(&format!("/permissions/v1/{long}"), &m.token)
        .await
        .expect(404);
    let app = App::enroll(&srv, &nnin(40), IPHONE).await;
    app.get(&srv, &format!("/app/v1/auth-requests/{long}"))
        .await
        .expect(404);
    // A device JWT naming a 5 KB device id.
    let forged = EcKey {
        kid: long.clone(),
        ..EcKey::generate("x")
    };
    let t = crate::support::app::now();
    let jwt =
        forged.sign(&json!({"sub": long, "aud": srv.base, "iat": t, "exp": t + 60, "jti": "j"}));
    srv.get_bearer("/app/v1/auth-requests?status=pending", &jwt)
        .await
        .expect(401);
    // A statement nested deeper than any real one.
    let deep = format!("{{\"nonce\":{}1{}}}", "[".repeat(40), "]".repeat(40));
    let t = crate::support::app::now();
    srv.post_json(
        "/permissions/v1/",
        Some(&m.token),
        &json!({"type": "authentication.v1", "iat": t, "exp": t + 600,
                "permission": URL_SAFE_NO_PAD.encode(deep), "intents": ["ciba"],
                "loginHint": [{"scheme": "nnin", "value": nnin(40)}]}),
    )
    .await
    .expect_error(400, "invalid_request");
}

on_both_backends!(oversized_identifiers_are_refused_without_growing_caches);
