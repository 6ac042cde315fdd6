//! Generated requests (issue 24): bodies and headers drawn from proptest strategies with a
//! fixed seed, sent to the token endpoint, permission registration, app-authorize,
//! bc-authorize and the authenticating app's API, with real credentials or broken ones.
//! Whatever arrives, the answer is never a 5xx, and every error is the contract's JSON
//! (`error`, `error_description`). [`CASES`] requests on SQLite: a few seconds.

mod strategies;

use crate::support::app::{
    device_info, nnin, payment_statement, ref_of, start, App, Merchant, IPHONE, SCOPES,
};
use crate::support::{Backend, Reply, TestServer, ASSERTION_TYPE};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::StreamExt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use strategies::*;

/// Requests sent (a fifth to each target).
const CASES: usize = 200;

/// Who a request claims to be; real credentials are made when it is sent (device JWTs are
/// single use).
#[derive(Debug, Clone)]
enum Auth {
    None,
    MerchantBasic,
    MerchantBearer,
    Device,
    Raw(String),
}

#[derive(Debug)]
struct Case {
    get: bool,
    path: String,
    auth: Auth,
    content_type: Option<String>,
    body: Vec<u8>,
    /// Claims the app signs into `{"signed_decision": ...}` as the body, when set.
    decision: Option<Value>,
}

fn cases(nnin: &str, pt: &str, link_ref: &str) -> Vec<Case> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[24; 32]),
    );
    let mut draw = |s: BoxedStrategy<Case>| s.new_tree(&mut runner).unwrap().current();
    let grant = pair(
        "grant_type",
        prop_oneof![
            prop::sample::select(vec![
                "client_credentials",
                "urn:openid:params:grant-type:ciba"
            ])
            .prop_map(str::to_owned),
            text(),
        ]
        .boxed(),
    );
    let token = lead(
        grant,
        form(
            vec![
                "grant_type",
                "scope",
                "auth_req_id",
                "client_id",
                "client_secret",
                "client_assertion",
                "client_assertion_type",
            ],
            vec![
                "client_credentials".into(),
                "urn:openid:params:grant-type:ciba".into(),
                "permissions/client".into(),
                ASSERTION_TYPE.into(),
            ],
        ),
    );
    let authorize = |path: &'static str| {
        let values = vec![
            pt.to_owned(),
            "openid".into(),
            device_info(IPHONE),
            nnin.to_owned(),
            json!([{"scheme": "nnin", "value": nnin}]).to_string(),
            "ABC-123".into(),
            "60".into(),
        ];
        let names = vec![
            "login_hint_token",
            "login_hint",
            "scope",
            "device_info",
            "binding_message",
            "requested_expiry",
            "request",
            "user_code",
            "acr_values",
            "client_notification_token",
        ];
        let hint = if path.contains("app-") {
            pair(
                "login_hint_token",
                prop_oneof![Just(pt.to_owned()), jwt_like(), text()].boxed(),
            )
        } else {
            pair(
                "login_hint",
                prop_oneof![
                    Just(json!([{"scheme": "nnin", "value": nnin}]).to_string()),
                    json_value().prop_map(|v| v.to_string()),
                    text(),
                ]
                .boxed(),
            )
        };
        let scope = pair(
            "scope",
            prop_oneof![Just("openid".to_owned()), text()].boxed(),
        );
        let body = lead(scope, lead(hint, form(names, values)));
        (
            body,
            prop::bool::weighted(0.8),
            content_type("application/x-www-form-urlencoded"),
        )
            .prop_map(move |(body, assertion, content_type)| {
                // The merchant's access token as client_assertion, in front of the fields.
                let mut body = body;
                if assertion {
                    let prefix = format!(
                        "client_assertion_type={}&client_assertion=MERCHANT_TOKEN&",
                        form_urlencoded::byte_serialize(ASSERTION_TYPE.as_bytes())
                            .collect::<String>()
                    );
                    body = [prefix.into_bytes(), body].concat();
                }
                Case {
                    get: false,
                    path: path.into(),
                    auth: Auth::None,
                    content_type,
                    body,
                    decision: None,
                }
            })
            .boxed()
    };
    let targets: Vec<BoxedStrategy<Case>> = vec![
        (token, auth(), content_type("application/x-www-form-urlencoded"))
            .prop_map(|(body, auth, content_type)| Case { get: false, path: "/oidc/v1/token".into(), auth, content_type, body, decision: None })
            .boxed(),
        (registration(nnin.to_owned()), prop_oneof![4 => Just(Auth::MerchantBearer), 1 => auth()], content_type("application/json"))
            .prop_map(|(body, auth, content_type)| Case { get: false, path: "/permissions/v1/".into(), auth, content_type, body, decision: None })
            .boxed(),
        authorize("/oidc/v1/app-authorize"),
        authorize("/oidc/v1/bc-authorize"),
        (
            prop_oneof![Just("/app/v1/auth-requests".to_owned()), "[A-Za-z0-9_-]{1,40}".prop_map(|r| format!("/app/v1/auth-requests/{r}")),
                prop_oneof![Just(link_ref.to_owned()), "[A-Za-z0-9_-]{1,40}"].prop_map(|r| format!("/app/v1/auth-requests/{r}/decision")),
                Just(format!("/app/v1/auth-requests/{link_ref}")), Just("/app/v1/devices".to_owned())],
            prop_oneof![4 => Just(Auth::Device), 1 => auth()],
            content_type("application/json"),
            prop_oneof![
                (jwt_like(), text()).prop_map(|(a, b)| json!({"signed_decision": a, "x": b}).to_string().into_bytes()),
                (text(), json_value(), json_value()).prop_map(|(code, jwk, info)| json!({"enrollment_code": code, "public_jwk": jwk, "device_info": info, "key_protection": "hwk"}).to_string().into_bytes()),
                json_value().prop_map(|v| v.to_string().into_bytes()),
                prop::collection::vec(any::<u8>(), 0..60),
            ],
            "(\\?status=[ -~&&[^#]]{0,10})?",
            prop::option::weighted(0.5, decision(link_ref.to_owned())),
        )
            .prop_map(|(path, auth, content_type, body, query, decision)| {
                let get = !path.ends_with("decision") && !path.ends_with("devices");
                let path = if get { format!("{path}{}", query.replace(' ', "%20")) } else { path };
                let decision = decision.filter(|_| path.ends_with("decision"));
                Case { get, path, auth, content_type, body, decision }
            })
            .boxed(),
    ];
    (0..CASES)
        .map(|i| draw(targets[i % targets.len()].clone()))
        .collect()
}

async fn send(srv: &TestServer, m: &Merchant, app: &App, case: &Case) -> Reply {
    let url = srv.url(&case.path);
    let mut req = if case.get {
        srv.http.get(url)
    } else {
        srv.http.post(url)
    };
    let authorization = match &case.auth {
        Auth::None => None,
        Auth::MerchantBasic => Some(format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", m.id, m.secret))
        )),
        Auth::MerchantBearer => Some(format!("Bearer {}", m.token)),
        Auth::Device => Some(format!("Bearer {}", app.device_jwt(srv))),
        Auth::Raw(v) => Some(v.clone()),
    };
    if let Some(v) = authorization.filter(|v| reqwest::header::HeaderValue::from_str(v).is_ok()) {
        req = req.header("authorization", v);
    }
    if let Some(ct) = case
        .content_type
        .as_ref()
        .filter(|v| reqwest::header::HeaderValue::from_str(v).is_ok())
    {
        req = req.header("content-type", ct);
    }
    let body = String::from_utf8_lossy(&case.body).replace("MERCHANT_TOKEN", &m.token);
    let body = match &case.decision {
        Some(claims) => json!({"signed_decision": app.key.sign(claims)})
            .to_string()
            .into_bytes(),
        None if std::str::from_utf8(&case.body).is_ok() => body.into_bytes(),
        None => case.body.clone(),
    };
    Reply::read(req.body(body).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_no_5xx_and_contract_errors() {
    let srv = TestServer::start_with(
        Backend::Sqlite,
        &[
            ("CIBA_LIMIT_AUTH_FAILURES", "0"),
            ("CIBA_AUTH_FAILURE_DELAY_MS", "0"),
        ],
    )
    .await;
    let m = Merchant::new(&srv, &format!("{SCOPES} permissions/text"), &[]).await;
    let user = nnin(70);
    let app = App::enroll(&srv, &user, IPHONE).await;
    let created = m
        .register(&srv, &payment_statement(), "payment.v1", &user, "app2app")
        .await;
    let pt = created["permissionToken"].as_str().unwrap().to_owned();
    // A pending request of the app's user, for the decisions to name.
    let started = start(&srv, &m, &user, IPHONE).await;
    let link_ref = ref_of(started.str("authorize_uri"));
    let cases = cases(&user, &pt, &link_ref);
    let (srv, m, app) = (&srv, &m, &app);
    let replies: Vec<(usize, Reply)> = futures_util::stream::iter(cases.iter().enumerate())
        .map(|(i, case)| async move { (i, send(srv, m, app, case).await) })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut statuses = std::collections::BTreeMap::new();
    for (i, r) in &replies {
        let case = &cases[*i];
        *statuses.entry(r.status).or_insert(0) += 1;
        assert!(r.status < 500, "case {i} {case:?}: {r}\n{}", srv.logs());
        if r.status >= 400 {
            assert!(
                !r.error().is_empty() && r.body["error_description"].is_string(),
                "case {i} {case:?}: {r}"
            );
        }
    }
    assert_eq!(replies.len(), CASES);
    // Some generated requests got past client authentication and were refused by what
    // they carried (or accepted): the cases reach the decoders behind it.
    let past_auth = replies.iter().filter(|(_, r)| r.status != 401).count();
    assert!(past_auth > CASES / 2, "{statuses:?}");
    eprintln!("statuses of {CASES} generated requests: {statuses:?}");
}
