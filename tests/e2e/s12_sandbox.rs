//! Contract §12 over real HTTP on SQLite and PostgreSQL: sandbox mode's test users, their
//! simulated apps, the `/sandbox` page and its forms, the automatic behaviours, and the
//! `sandbox` commands; and that none of it exists outside sandbox mode.
#![allow(clippy::unwrap_used)]

use crate::support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::app::*;
use support::{Backend, TestServer};

/// The seeded manual user (README lists the seeded NNINs).
const KARI: &str = "01818010083";
const SANDBOX_PHONE: (&str, &str, &str) = ("ios", "Apple", "iPhone15,2");

async fn sandbox(b: Backend) -> TestServer {
    TestServer::start_with(
        b,
        &[
            ("CIBA_SANDBOX", "true"),
            ("CIBA_SANDBOX_ALLOW_POSTGRES", "true"),
        ],
    )
    .await
}

/// The browser's view: no redirects followed, cookies handled by hand.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Page {
    status: u16,
    html: String,
    cookie: Option<String>,
}

async fn page(srv: &TestServer, cookie: Option<&str>) -> Page {
    page_at(srv, "/sandbox", cookie).await
}

async fn page_at(srv: &TestServer, path: &str, cookie: Option<&str>) -> Page {
    let mut req = browser().get(srv.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("ciba_sandbox_csrf={c}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("ciba_sandbox_csrf="))
        .map(|v| v.split(';').next().unwrap().to_owned());
    if status == 200 {
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
        assert_eq!(h["cache-control"], "no-store");
    }
    let html = resp.text().await.unwrap();
    Page {
        status,
        html,
        cookie,
    }
}

/// The value of `name="field" value="..."` in the form for `link_ref`.
fn form_field(html: &str, link_ref: &str, field: &str) -> String {
    let at = html
        .find(&format!("data-ref=\"{link_ref}\""))
        .unwrap_or_else(|| panic!("no request {link_ref} on the page: {html}"));
    let rest = &html[at..];
    let key = format!("name=\"{field}\" value=\"");
    let start = rest.find(&key).unwrap() + key.len();
    rest[start..].split('"').next().unwrap().to_owned()
}

async fn post_decision(
    srv: &TestServer,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
    fetch_site: Option<&str>,
) -> (u16, String, String) {
    let mut req = browser().post(srv.url("/sandbox/decisions")).form(fields);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("ciba_sandbox_csrf={c}"));
    }
    if let Some(s) = fetch_site {
        req = req.header("sec-fetch-site", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, resp.text().await.unwrap())
}

/// Start an App2App flow for `nnin` on the sandbox phone; (auth_req_id, ref, binding message).
async fn start_for(srv: &TestServer, m: &Merchant, nnin: &str) -> (String, String, String) {
    let created = m
        .register(srv, &payment_statement(), "payment.v1", nnin, "app2app")
        .await;
    let started = m
        .app_authorize(
            srv,
            &[
                (
                    "login_hint_token",
                    created["permissionToken"].as_str().unwrap(),
                ),
                ("scope", "openid profile"),
                ("device_info", &device_info(SANDBOX_PHONE)),
            ],
        )
        .await;
    started.ok();
    (
        started.str("auth_req_id").to_owned(),
        ref_of(started.str("authorize_uri")),
        created["bindingMessage"].as_str().unwrap().to_owned(),
    )
}

fn claims_of(id_token: &str) -> Value {
    let payload = id_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn page_approves_and_declines_through_the_decision_path(b: Backend) {
    let srv = sandbox(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let (auth_req_id, link_ref, binding) = start_for(&srv, &m, KARI).await;

    let first = page(&srv, None).await;
    assert_eq!(first.status, 200);
    let cookie = first.cookie.clone().expect("a CSRF cookie");
    let html = &first.html;
    // What the real app would show: the merchant, the payment, the binding message.
    for shown in [
        "Test Shop",
        "123.45",
        "NOK",
        "Scrooge McDuck",
        &binding,
        "Kari Nordmann",
    ] {
        assert!(html.contains(shown), "{shown} missing: {html}");
    }
    // The seeded users, their NNINs masked: never one in full.
    assert!(html.contains("018180*****"), "{html}");
    for seeded in support::app::SANDBOX_NNINS {
        assert!(!html.contains(seeded), "an NNIN in full: {html}");
    }
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    let token = form_field(html, &link_ref, "csrf");
    assert_eq!(token, cookie);
    let user = form_field(html, &link_ref, "user");
    let approve = [
        ("csrf", token.as_str()),
        ("user", &user),
        ("ref", &link_ref),
        ("decision", "approve"),
    ];

    // A forged form: no cookie, another cookie, or sent from another site.
    for (c, site) in [
        (None, None),
        (
            Some("forged-but-well-formed-token-aaaaaaaaaaaaaaaaaa"),
            None,
        ),
        (Some(cookie.as_str()), Some("cross-site")),
    ] {
        let (status, _, body) = post_decision(&srv, c, &approve, site).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("access_denied"), "{body}");
    }
    m.poll(&srv, &auth_req_id)
        .await
        .expect_error(400, "authorization_pending");
    // Another user's request cannot be answered with this user's app.
    let ola = srv.admin(&["sandbox", "users", "list"]);
    let ola = ola
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["given_name"] == "Ola")
        .unwrap();
    let wrong = [
        ("csrf", token.as_str()),
        ("user", ola["sub"].as_str().unwrap()),
        ("ref", &link_ref),
        ("decision", "approve"),
    ];
    let (status, _, body) = post_decision(&srv, Some(&cookie), &wrong, Some("same-origin")).await;
    assert_eq!(status, 403, "{body}");

    let (status, location, _) =
        post_decision(&srv, Some(&cookie), &approve, Some("same-origin")).await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/sandbox?decided=approve")
    );
    let after = page_at(&srv, &location, Some(&cookie)).await;
    assert!(after.cookie.is_none(), "the cookie is kept");
    assert!(after.html.contains("id=\"notice\""));
    assert!(
        !after.html.contains(&link_ref),
        "still pending: {}",
        after.html
    );
    // Twice is refused: the request is no longer pending.
    let (status, _, body) = post_decision(&srv, Some(&cookie), &approve, None).await;
    assert_eq!(status, 409, "{body}");

    let tokens = m.poll(&srv, &auth_req_id).await;
    let claims = claims_of(tokens.ok()["id_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["swk"]));
    assert_eq!(claims["aud"], m.id.as_str());
    assert_eq!(claims["sub"], user.as_str());

    // Decline: the merchant's next poll is access_denied.
    let (auth_req_id, link_ref, _) = start_for(&srv, &m, KARI).await;
    let html = page(&srv, Some(&cookie)).await.html;
    let decline = [
        ("csrf", cookie.as_str()),
        ("user", &form_field(&html, &link_ref, "user")),
        ("ref", &link_ref),
        ("decision", "decline"),
    ];
    let (status, location, _) = post_decision(&srv, Some(&cookie), &decline, None).await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/sandbox?decided=decline")
    );
    m.poll(&srv, &auth_req_id)
        .await
        .expect_error(400, "access_denied");
}

/// Wait (bounded) until the permission behind a flow is no longer pending.
async fn settled(srv: &TestServer, m: &Merchant, pid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let p = srv
            .get_bearer(&format!("/permissions/v1/{pid}"), &m.token)
            .await;
        let status = p.str("status").to_owned();
        if status != "pending" || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn behaviours_answer_on_their_own(b: Backend) {
    let srv = sandbox(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let mut flows = Vec::new();
    for behaviour in ["approve", "decline", "ignore"] {
        let made = srv.admin(&[
            "sandbox",
            "users",
            "create",
            "--behaviour",
            behaviour,
            "--delay",
            "0",
        ]);
        let nnin = made["nnin"].as_str().unwrap().to_owned();
        assert!(ciba_domain::nnin::Nnin::parse(&nnin).is_ok(), "{made}");
        let month: u32 = nnin[2..4].parse().unwrap();
        assert!(
            (81..=92).contains(&month),
            "a synthetic test number: {nnin}"
        );
        let created = m
            .register(&srv, &payment_statement(), "payment.v1", &nnin, "app2app")
            .await;
        let started = m
            .app_authorize(
                &srv,
                &[
                    (
                        "login_hint_token",
                        created["permissionToken"].as_str().unwrap(),
                    ),
                    ("scope", "openid"),
                    ("device_info", &device_info(SANDBOX_PHONE)),
                ],
            )
            .await;
        started.ok();
        flows.push((
            created["id"].as_str().unwrap().to_owned(),
            started.str("auth_req_id").to_owned(),
        ));
    }
    assert_eq!(settled(&srv, &m, &flows[0].0).await, "granted");
    assert_eq!(settled(&srv, &m, &flows[1].0).await, "declined");
    let tokens = m.poll(&srv, &flows[0].1).await;
    assert_eq!(
        claims_of(tokens.ok()["id_token"].as_str().unwrap())["amr"],
        json!(["swk"])
    );
    m.poll(&srv, &flows[1].1)
        .await
        .expect_error(400, "access_denied");
    // The ignoring user's app has had as long as the others, and two ticks more.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let p = srv
        .get_bearer(&format!("/permissions/v1/{}", flows[2].0), &m.token)
        .await;
    assert_eq!(p["status"], "pending");
    // Its request expires as any other would.
    srv.advance(Duration::from_secs(901));
    m.poll(&srv, &flows[2].1)
        .await
        .expect_error(400, "expired_token");
}

fn sandbox_cli(srv: &TestServer, args: &[&str]) -> std::process::Output {
    srv.command().arg("sandbox").args(args).output().unwrap()
}

async fn scripts_answer_and_keys_are_sealed(b: Backend) {
    let mut srv = sandbox(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let (auth_req_id, link_ref, _) = start_for(&srv, &m, KARI).await;
    let out = sandbox_cli(&srv, &["approve", "--nnin", KARI]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said, json!({"ref": link_ref, "status": "approved"}));
    m.poll(&srv, &auth_req_id).await.ok();
    // Nothing pending is an error; so is a user who is not a test user, or a bad number.
    let out = sandbox_cli(&srv, &["decline", "--nnin", KARI]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such pending request"));
    let real = nnin(100);
    create_user(&srv, &real).unwrap();
    let out = sandbox_cli(&srv, &["approve", "--nnin", &real]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a sandbox test user"));
    let out = sandbox_cli(&srv, &["approve", "--nnin", "12345678901"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nnin"));

    // The simulated apps' keys are sealed like the signing keys: a rotation of the
    // key-encryption key reseals them, and they still sign under the new key.
    let new_kek = STANDARD.encode([9u8; 32]);
    srv.set_env("CIBA_KEY_ENCRYPTION_KEY_PREVIOUS", support::TEST_KEK);
    srv.set_env("CIBA_KEY_ENCRYPTION_KEY", &new_kek);
    let resealed = srv.admin(&["kek", "rotate"]);
    assert!(
        resealed["resealed"].as_i64().unwrap() >= 4 + 4,
        "{resealed}"
    );
    srv.restart().await;
    let (auth_req_id, _, _) = start_for(&srv, &m, KARI).await;
    let out = sandbox_cli(&srv, &["decline", "--nnin", KARI]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.poll(&srv, &auth_req_id)
        .await
        .expect_error(400, "access_denied");
}

async fn loa_high_is_out_of_a_simulated_apps_reach(b: Backend) {
    let srv = sandbox(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let t = now();
    let body = json!({
        "type": "payment.v1", "loa": "high", "iat": t, "exp": t + 900, "permission": payment_statement(),
        "intents": ["app2app"], "loginHint": [{"scheme": "nnin", "value": KARI}], "app_callback_uri": CALLBACK,
    });
    let created = srv
        .post_json("/permissions/v1/", Some(&m.token), &body)
        .await;
    let started = m
        .app_authorize(
            &srv,
            &[
                (
                    "login_hint_token",
                    created.expect(201)["permissionToken"].as_str().unwrap(),
                ),
                ("scope", "openid"),
                ("device_info", &device_info(SANDBOX_PHONE)),
            ],
        )
        .await;
    assert_eq!(started.status, 400, "{started}");
    assert!(
        started.str("error_description").contains("high"),
        "{started}"
    );
}

async fn nothing_of_it_outside_sandbox_mode(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.get("/sandbox").await.expect_error(404, "not_found");
    srv.post("/sandbox/decisions", None, &[("csrf", "x")])
        .await
        .expect_error(404, "not_found");
    let out = srv.admin_raw(&["sandbox", "users", "create"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CIBA_SANDBOX=true"));
    let out = sandbox_cli(&srv, &["approve", "--nnin", KARI]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CIBA_SANDBOX=true"));
    assert!(
        srv.admin(&["users", "list"]).as_array().unwrap().is_empty(),
        "nothing seeded"
    );
}

on_both_backends!(
    page_approves_and_declines_through_the_decision_path,
    behaviours_answer_on_their_own,
    scripts_answer_and_keys_are_sealed,
    loa_high_is_out_of_a_simulated_apps_reach,
    nothing_of_it_outside_sandbox_mode,
);
