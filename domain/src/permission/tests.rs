use super::*;
use crate::client::{AuthMethod, Client, DeliveryMode, SigningAlg};
use crate::scope::ScopeSet;
use serde_json::json;

/// The statement of the reference document (App2App guide, step 5), byte for byte.
pub const REFERENCE_STATEMENT: &str = "eyJub25jZSI6ImRXNXBjWFZsSUhaaGJIVmwiLCJpZCI6IlltRnphMlYwSUdsayIsInBheW1lbnRzIjpbeyJwYXltZW50SWQiOiJjR0Y1YldWdWRDQnBaQSIsImFtb3VudCI6IjEyMy40NSIsImN1cnJlbmN5IjoiTk9LIiwiY3JlZGl0b3JOYW1lIjoiU2Nyb29nZSBNY0R1Y2sifV19";

const NOW: i64 = 1_800_000_000;
const CALLBACK: &str = "https://merchant.app/app_callback";

fn nnin() -> String {
    crate::nnin::first_valid("010190", 100).unwrap()
}

fn client(scopes: &str) -> Client {
    Client {
        id: "c1".into(),
        name: "Shop".into(),
        scopes: ScopeSet::parse(scopes).unwrap(),
        callback_uris: vec![CALLBACK.into()],
        sub_nnin: false,
        jwks: None,
        jwks_uri: None,
        auth_method: AuthMethod::ClientSecretBasic,
        profile: None,
        tls_subject_dn: None,
        id_token_alg: SigningAlg::Es256,
        delivery: DeliveryMode::Poll,
        disabled: false,
    }
}

fn full() -> Client {
    client("permissions/client permissions/app2app permissions/ciba permissions/text openid")
}

fn body() -> Value {
    json!({
        "type": "payment.v1", "loa": "sub", "iat": NOW, "exp": NOW + 900,
        "permission": REFERENCE_STATEMENT, "intents": ["app2app"],
        "loginHint": [{"scheme": "nnin", "value": nnin()}],
        "app_callback_uri": CALLBACK,
    })
}

fn err_of(b: &Value, c: &Client) -> String {
    validate_registration(b, c, NOW)
        .unwrap_err()
        .description
        .into_owned()
}

#[test]
fn accepts_the_reference_example_byte_for_byte() {
    let p = validate_registration(&body(), &full(), NOW).unwrap();
    assert_eq!(p.statement, REFERENCE_STATEMENT);
    assert_eq!(p.kind, PermissionType::Payment);
    assert_eq!(p.nonce, "dW5pcXVlIHZhbHVl");
    let bytes = URL_SAFE_NO_PAD.decode(REFERENCE_STATEMENT).unwrap();
    assert_eq!(p.digest, sha256_b64url(&bytes));
    assert_eq!(p.intents, vec![Intent::App2App]);
    assert_eq!(p.loa, Loa::Substantial);
}

#[test]
fn loa_defaults_and_maps_to_acr() {
    let mut b = body();
    b.as_object_mut().unwrap().remove("loa");
    assert_eq!(
        validate_registration(&b, &full(), NOW).unwrap().loa,
        Loa::Substantial
    );
    b["loa"] = json!("high");
    assert_eq!(
        validate_registration(&b, &full(), NOW).unwrap().loa.acr(),
        ACR_HIGH
    );
    b["loa"] = json!("low");
    assert!(err_of(&b, &full()).starts_with("loa"));
}

#[test]
fn time_rules() {
    let cases = [
        (NOW - 61, NOW + 100, "iat"),
        (NOW + 31, NOW + 100, "iat"),
        (NOW, NOW, "exp"),
        (NOW, NOW + 3601, "exp"),
        (NOW - 60, NOW - 1, "exp"),
    ];
    for (iat, exp, field) in cases {
        let mut b = body();
        b["iat"] = json!(iat);
        b["exp"] = json!(exp);
        assert!(err_of(&b, &full()).starts_with(field), "{iat} {exp}");
    }
    let mut b = body();
    b["iat"] = json!(NOW - 60);
    b["exp"] = json!(NOW - 60 + 3600);
    assert!(validate_registration(&b, &full(), NOW).is_ok());
    b["iat"] = json!("1");
    assert!(err_of(&b, &full()).starts_with("iat"));
}

#[test]
fn statement_encoding_rules() {
    let padded = format!("{}==", URL_SAFE_NO_PAD.encode(br#"{"nonce":"a"}"#));
    let std_b64 = base64::engine::general_purpose::STANDARD.encode(br#"{"nonce":"a?>"}"#);
    for (kind, statement) in [
        ("authentication.v1", padded.as_str()),
        ("authentication.v1", std_b64.as_str()),
        ("authentication.v1", "bm90IGpzb24"),
        ("payment.v1", &URL_SAFE_NO_PAD.encode(br#"{"nonce":"a"}"#)),
    ] {
        let mut b = body();
        b["type"] = json!(kind);
        b["permission"] = json!(statement);
        assert!(err_of(&b, &full()).starts_with("permission"), "{statement}");
    }
    let mut b = body();
    b["type"] = json!("authentication.v1");
    b["permission"] = json!(URL_SAFE_NO_PAD.encode(br#"{"nonce":"a"}"#));
    assert!(validate_registration(&b, &full(), NOW).is_ok());
    b["type"] = json!("signature.v1");
    assert!(err_of(&b, &full()).starts_with("type"));
}

#[test]
fn scopes_gate_types_and_intents() {
    let no_text = client("permissions/client permissions/app2app");
    let mut b = body();
    b["type"] = json!("text.v1");
    b["permission"] = json!(URL_SAFE_NO_PAD.encode(br#"{"nonce":"a","id":"i","text":"t"}"#));
    let e = validate_registration(&b, &no_text, NOW).unwrap_err();
    assert_eq!((e.code.as_str(), e.status()), ("unauthorized_client", 403));
    assert!(validate_registration(&b, &full(), NOW).is_ok());

    let no_app2app = client("permissions/client permissions/ciba");
    let e = validate_registration(&body(), &no_app2app, NOW).unwrap_err();
    assert_eq!(e.code.as_str(), "unauthorized_client");
    let mut b = body();
    b["intents"] = json!(["ciba"]);
    assert!(validate_registration(&b, &no_app2app, NOW).is_ok());
    for bad in [
        json!([]),
        json!(["sms"]),
        json!(["ciba", "ciba"]),
        json!("ciba"),
    ] {
        b["intents"] = bad;
        assert!(err_of(&b, &full()).starts_with("intents"));
    }
}

#[test]
fn login_hint_rules() {
    let mut good_d = body();
    good_d["loginHint"][0]["value"] = json!(crate::nnin::first_valid("410190", 100).unwrap());
    assert!(
        validate_registration(&good_d, &full(), NOW).is_ok(),
        "D-number"
    );
    let mut wrong_digits = nnin().into_bytes();
    wrong_digits[10] = if wrong_digits[10] == b'0' { b'1' } else { b'0' };
    let wrong_digits = String::from_utf8(wrong_digits).unwrap();
    for hint in [
        json!([]),
        json!([{"scheme": "nnin", "value": wrong_digits}]),
        json!([{"scheme": "email", "value": nnin()}]),
        json!([{"scheme": "nnin", "value": nnin()}, {"scheme": "nnin", "value": nnin()}]),
        json!([{"scheme": "nnin", "value": 1234}]),
    ] {
        let mut b = body();
        b["loginHint"] = hint;
        let e = err_of(&b, &full());
        assert!(e.starts_with("loginHint"), "{e}");
        assert!(
            !e.contains(&nnin()) && !e.contains(&wrong_digits),
            "no NNIN in errors"
        );
    }
}

#[test]
fn callback_rules() {
    let mut b = body();
    b.as_object_mut().unwrap().remove("app_callback_uri");
    assert!(err_of(&b, &full()).starts_with("app_callback_uri"));
    b["intents"] = json!(["ciba"]);
    assert!(
        validate_registration(&b, &full(), NOW).is_ok(),
        "not needed for ciba"
    );
    for uri in [
        "http://merchant.app/app_callback",
        "https://merchant.app/other",
        "https://merchant.app/app_callback/",
    ] {
        let mut b = body();
        b["app_callback_uri"] = json!(uri);
        assert!(err_of(&b, &full()).starts_with("app_callback_uri"), "{uri}");
    }
}

#[test]
fn acr_values_rules() {
    let mut b = body();
    b["acr_values"] = json!([ACR_HIGH]);
    assert_eq!(
        validate_registration(&b, &full(), NOW).unwrap().acr_values,
        vec![ACR_HIGH]
    );
    b["acr_values"] = json!(["urn:other"]);
    assert!(err_of(&b, &full()).starts_with("acr_values"));
}

#[test]
fn binding_messages_are_short_and_stable() {
    let m = binding_message("perm-1");
    assert_eq!(m, binding_message("perm-1"));
    assert_ne!(m, binding_message("perm-2"));
    assert_eq!(m.len(), 7);
    assert_eq!(&m[3..4], "-");
}

#[test]
fn a_login_permission_carries_a_fresh_statement_and_its_digest() {
    let (a, b) = (
        NewPermission::login(Nnin::parse(&nnin()).unwrap(), NOW, NOW + 600),
        NewPermission::login(Nnin::parse(&nnin()).unwrap(), NOW, NOW + 600),
    );
    assert_ne!(a.nonce, b.nonce);
    let bytes = decode_b64url("statement", &a.statement).unwrap();
    assert_eq!(a.digest, sha256_b64url(&bytes));
    let statement: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(statement, json!({"nonce": a.nonce}));
    assert_eq!(
        (a.kind, a.loa, a.intents.as_slice()),
        (
            PermissionType::Authentication,
            Loa::Substantial,
            &[Intent::Ciba][..]
        )
    );
    assert_eq!(a.exp, NOW + 600);
}
