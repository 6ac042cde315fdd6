//! The JWTs only the api reads: an app's signed decision (`verify_decision`), a client's
//! signed authentication request (its envelope and parameters), and the unverified `iss`
//! that picks a client's verifier. Arbitrary or corrupted tokens, `alg` none, HS256 and
//! another device's signature are refused with a 4xx; what the checks accept meets their
//! rules; nothing panics.

use super::CASES;
use crate::auth::device::AuthenticatedDevice;
use crate::auth::peek_issuer;
use crate::service::device_app::verify_decision;
use crate::service::signed_request::{check_envelope, request_parameters, MAX_LIFETIME};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::client::SigningAlg;
use ciba_runtime::crypto::jwt::LEEWAY;
use ciba_runtime::crypto::keygen;
use ciba_store::users::DeviceRow;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;
const DEVICE: &str = "dev-1";

struct Fixture {
    device: AuthenticatedDevice,
    signing: EncodingKey,
    other: EncodingKey,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        ciba_runtime::crypto::provider::install();
        let keys = || {
            let k = keygen::generate(SigningAlg::Es256, "sig").unwrap();
            let (enc, dec) = keygen::load(SigningAlg::Es256, &k.private_der).unwrap();
            (enc, dec, k.public_jwk)
        };
        let (signing, key, jwk) = keys();
        let (other, _, _) = keys();
        let device = DeviceRow {
            id: DEVICE.into(),
            user_sub: "u1".into(),
            platform: "ios".into(),
            manufacturer: "Apple".into(),
            model: "iPhone11,2".into(),
            public_jwk: jwk.to_string(),
            name: None,
            status: "active".into(),
            created_at: NOW,
            revoked_at: None,
            key_protection: "hwk".into(),
        };
        Fixture {
            device: AuthenticatedDevice { device, key },
            signing,
            other,
        }
    })
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decision() -> Value {
    json!({"ref": "r1", "decision": "approve", "permission_digest": "d", "iat": NOW,
           "jti": "j1", "amr": ["hwk", "face"]})
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

/// The decision is refused as a client error.
fn refused(signed: &str) -> Result<(), TestCaseError> {
    match verify_decision(signed, &fixture().device) {
        Ok(c) => prop_assert!(false, "accepted {}: {}", signed, c),
        Err(e) => prop_assert_eq!(e.error.status(), 400),
    }
    Ok(())
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![i64::MIN, i64::MAX, NOW, NOW - 3600, NOW + 3600])
            .prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(json!("https://issuer")),
        Just(json!("c1")),
        Just(json!([1, "x"])),
        Just(json!({"a": 1})),
    ]
}

fn claims() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "iss",
        "aud",
        "iat",
        "nbf",
        "exp",
        "jti",
        "request",
        "scope",
        "login_hint",
        "binding_message",
        "requested_expiry",
        "x",
    ]);
    prop::collection::btree_map(names, leaf(), 0..10)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Signed by the device's key the decision is read; any changed character, any text,
    /// three parts of arbitrary JSON are refused.
    #[test]
    fn decisions_are_verified(
        at in any::<prop::sample::Index>(), to in "[A-Za-z0-9_.=-]",
        text in ".{0,80}", header in claims(), payload in claims(), sig in prop::collection::vec(any::<u8>(), 0..70),
    ) {
        let f = fixture();
        let good = sign(Algorithm::ES256, Some(DEVICE), &decision(), &f.signing);
        prop_assert_eq!(verify_decision(&good, &f.device).ok(), Some(decision()));
        let i = at.index(good.len());
        if good[i..=i] != to {
            refused(&format!("{}{}{}", &good[..i], to, &good[i + 1..]))?;
        }
        refused(&text)?;
        let mut header = header;
        header["alg"] = json!("ES256");
        refused(&format!("{}.{}.{}", b64(header.to_string()), b64(payload.to_string()), b64(sig)))?;
    }

    /// `alg` none, HS256 keyed with the device's public JWK, another key, another kid, or a
    /// repeated claim: refused.
    #[test]
    fn forged_decisions_are_refused(claim in prop::sample::select(vec!["decision", "ref", "exp", "iat"]), kid in "[a-z0-9-]{1,10}") {
        let f = fixture();
        let none = json!({"alg": "none", "kid": DEVICE});
        refused(&format!("{}.{}.", b64(none.to_string()), b64(decision().to_string())))?;
        let secret = EncodingKey::from_secret(f.device.device.public_jwk.as_bytes());
        refused(&sign(Algorithm::HS256, Some(DEVICE), &decision(), &secret))?;
        refused(&sign(Algorithm::ES256, Some(DEVICE), &decision(), &f.other))?;
        refused(&sign(Algorithm::ES256, None, &decision(), &f.other))?;
        if kid != DEVICE {
            refused(&sign(Algorithm::ES256, Some(&kid), &decision(), &f.signing))?;
        }
        let header = b64(json!({"alg": "ES256", "kid": DEVICE}).to_string());
        let payload = b64(format!(r#"{{"{claim}":"decline","jti":"j","{claim}":"approve"}}"#));
        let input = format!("{header}.{payload}");
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &f.signing, Algorithm::ES256).unwrap();
        let e = verify_decision(&format!("{input}.{sig}"), &f.device).unwrap_err();
        prop_assert_eq!(e.error.status(), 400);
        prop_assert!(e.error.description.contains("repeated"), "{}", e.error.description);
    }

    /// The unverified issuer: any text answers; a token's `iss` string is found.
    #[test]
    fn issuer_peek_never_panics(text in ".{0,80}", iss in ".{0,30}", rest in claims()) {
        let _ = peek_issuer(&text);
        let mut payload = rest;
        payload["iss"] = json!(iss);
        let token = format!("e30.{}.x", b64(payload.to_string()));
        prop_assert_eq!(peek_issuer(&token), Some(iss));
    }

    /// A signed request's envelope: what passes has iat, nbf and exp, lives at most an hour
    /// and is not older; its parameters are the other claims, strings and whole numbers only.
    #[test]
    fn signed_request_claims_are_checked(c in claims()) {
        if check_envelope(&c, "c1", &["https://issuer"], NOW).is_ok() {
            let num = |n: &str| c[n].as_i64().unwrap();
            let (nbf, exp) = (num("nbf"), num("exp"));
            prop_assert!(c["iat"].is_i64());
            prop_assert!(exp.saturating_sub(nbf) <= MAX_LIFETIME && nbf >= NOW - MAX_LIFETIME - LEEWAY);
            prop_assert!(exp.saturating_add(LEEWAY) > NOW);
        }
        match request_parameters(&c) {
            Ok(pairs) => {
                for (name, value) in pairs {
                    prop_assert!(!["iss", "aud", "iat", "nbf", "exp", "jti", "request"].contains(&name.as_str()));
                    match &c[&name] {
                        Value::String(s) => prop_assert_eq!(s, &value),
                        n => prop_assert_eq!(n.as_i64().map(|i| i.to_string()), Some(value)),
                    }
                }
            }
            Err(e) => prop_assert_eq!(e.error.status(), 400),
        }
    }
}
