//! Properties of JWT verification, the decoder behind every token a client or an app sends:
//! our access and permission tokens (`KeyRing::verify`), JWTs verified with someone else's
//! keys (`verify_with_set_using`: client assertions, signed requests, external tokens) and
//! the bare signature check under both (`verify_signature`: device JWTs, signed decisions).
//! Arbitrary text, three-part strings of arbitrary JSON, any corrupted character, `alg`
//! `none` and HS256 (keyed with public key material) are refused, never a panic; the claim
//! checks never panic and accept only what they promise.
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::client::SigningAlg;
use ciba_runtime::crypto::jwk_set::{verify_with_set_using, ACCEPTED_ALGS};
use ciba_runtime::crypto::jwt::{
    self, check_claims, Expect, LEEWAY, REPEATED_CLAIM, TYP_CLIENT_TOKEN, TYP_PERMISSION_TOKEN,
    TYP_USER_ACCESS_TOKEN,
};
use ciba_runtime::crypto::kek::Kek;
use ciba_runtime::crypto::keygen;
use ciba_runtime::crypto::keyring::{KeyRing, LoadedKey, Purpose};
use ciba_store::keys::SigningKeyRow;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

const CASES: u32 = 256;
const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.example";

struct Fixture {
    ring: KeyRing,
    key: Arc<LoadedKey>,
    set: JwkSet,
}

/// One ES256 key of purpose `oidc` in a key ring, and its public JWK as a client's key set.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        ciba_runtime::crypto::provider::install();
        let kek = Kek::new(&[7; 32]);
        let k = keygen::generate(SigningAlg::Es256, "sig").unwrap();
        let row = SigningKeyRow {
            private_key: kek.seal(&k.private_der, &k.kid),
            kid: k.kid.clone(),
            purpose: Purpose::Oidc.as_str().into(),
            alg: SigningAlg::Es256.as_str().into(),
            public_jwk: k.public_jwk.to_string(),
            kek_id: kek.id().into(),
            created_at: NOW - 100,
            activates_at: NOW - 100,
            retires_at: None,
            expires_at: None,
        };
        let ring = KeyRing::new(kek);
        ring.install(&[row]).unwrap();
        let key = ring.find(Purpose::Oidc, &k.kid, NOW).unwrap();
        let set = serde_json::from_value(json!({ "keys": [k.public_jwk] })).unwrap();
        Fixture { ring, key, set }
    })
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": ISSUER, "sub": "c1", "client_id": "c1", "iat": NOW,
           "exp": NOW + 300, "jti": "j1"})
}

/// A token signed over `header` and `payload` exactly as given (by our key, with ES256).
fn signed_raw(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &fixture().key.encoding, Algorithm::ES256)
            .unwrap();
    format!("{input}.{sig}")
}

/// Every verifier a token from outside meets: all must refuse `token`.
fn all_refuse(token: &str) -> Result<(), TestCaseError> {
    let f = fixture();
    for typ in [TYP_CLIENT_TOKEN, TYP_PERMISSION_TOKEN] {
        prop_assert!(
            f.ring.verify(token, Purpose::Oidc, typ, NOW).is_err(),
            "{}",
            token
        );
    }
    prop_assert!(jwt::verify_signature(token, &f.key.decoding, Algorithm::ES256).is_err());
    prop_assert!(verify_with_set_using(token, &f.set, &ACCEPTED_ALGS).is_err());
    Ok(())
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![i64::MIN, i64::MAX, NOW, NOW + 60, NOW - 60, 0])
            .prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(json!(ISSUER)),
        Just(json!([ISSUER, "x"])),
        Just(json!("x".repeat(300))),
    ]
}

/// JSON objects with the members JWT headers and claims have, of any type.
fn json_object() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "alg",
        "typ",
        "kid",
        "jku",
        "x5u",
        "crit",
        "iss",
        "aud",
        "sub",
        "exp",
        "nbf",
        "iat",
        "jti",
        "client_id",
        "x",
    ]);
    prop::collection::btree_map(names, json_leaf(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_text_is_refused(s in any::<String>(), parts in prop::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 0..5)) {
        all_refuse(&s)?;
        all_refuse(&parts.join("."))?;
    }

    /// Three parts of base64url JSON, headers with any alg (none and HS256 included), any
    /// signature bytes: refused.
    #[test]
    fn three_parts_of_arbitrary_json_are_refused(
        mut header in json_object(),
        payload in json_object(),
        alg in prop::sample::select(vec!["none", "None", "HS256", "ES256", "RS256", "PS256", "ES384", "EdDSA"]),
        typ in prop::sample::select(vec![TYP_CLIENT_TOKEN, TYP_PERMISSION_TOKEN, "JWT"]),
        sig in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        header["alg"] = json!(alg);
        header["typ"] = json!(typ);
        header["kid"] = json!(fixture().key.kid);
        all_refuse(&format!("{}.{}.{}", b64(header.to_string()), b64(payload.to_string()), b64(sig)))?;
    }

    /// Our own token with any one character changed is refused.
    #[test]
    fn any_changed_character_is_refused(
        at in any::<prop::sample::Index>(),
        to in "[A-Za-z0-9_.=-]",
        typ in prop::sample::select(vec![TYP_CLIENT_TOKEN, TYP_PERMISSION_TOKEN]),
    ) {
        let f = fixture();
        let token = jwt::sign(&f.key, typ, &claims()).unwrap();
        prop_assert!(f.ring.verify(&token, Purpose::Oidc, typ, NOW).is_ok());
        let i = at.index(token.len());
        prop_assume!(token[i..=i] != to);
        let changed = format!("{}{}{}", &token[..i], to, &token[i + 1..]);
        all_refuse(&changed)?;
    }

    /// Our claims under `alg` none, or HS256 keyed with the public key's JWK, kid or point
    /// (algorithm confusion), are refused; so is a token of another `typ`.
    #[test]
    fn alg_none_hs256_and_other_types_are_refused(extra in json_object(), secret_from in 0usize..3) {
        let f = fixture();
        let mut c = claims();
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone().into_iter().filter(|(k, _)| k == "x"));
        let header = json!({"alg": "none", "typ": TYP_CLIENT_TOKEN, "kid": f.key.kid});
        all_refuse(&format!("{}.{}.", b64(header.to_string()), b64(c.to_string())))?;
        let secret = match secret_from {
            0 => f.key.jwk.to_string().into_bytes(),
            1 => f.key.kid.clone().into_bytes(),
            _ => URL_SAFE_NO_PAD.decode(f.key.jwk["x"].as_str().unwrap()).unwrap(),
        };
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.kid = Some(f.key.kid.clone());
        h.typ = Some(TYP_CLIENT_TOKEN.into());
        all_refuse(&jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(&secret)).unwrap())?;
        let other = jwt::sign(&f.key, TYP_USER_ACCESS_TOKEN, &c).unwrap();
        prop_assert!(f.ring.verify(&other, Purpose::Oidc, TYP_CLIENT_TOKEN, NOW).is_err());
        prop_assert!(f.ring.verify(&other, Purpose::Oidc, TYP_PERMISSION_TOKEN, NOW).is_err());
    }

    /// A correctly signed payload that repeats a claim is refused as such; one that is not a
    /// JSON object, or not JSON, is refused.
    #[test]
    fn signed_payloads_with_repeated_claims_are_refused(
        claim in prop::sample::select(vec!["sub", "decision", "exp", "iss", "x"]),
        a in json_leaf(), b in json_leaf(), junk in "[ -~]{0,20}",
    ) {
        let f = fixture();
        let header = json!({"alg": "ES256", "typ": TYP_CLIENT_TOKEN, "kid": f.key.kid}).to_string();
        let payload = format!(r#"{{"{claim}":{a},"jti":"j","{claim}":{b}}}"#);
        let token = signed_raw(&header, &payload);
        prop_assert_eq!(
            jwt::verify_signature(&token, &f.key.decoding, Algorithm::ES256).map(|_| ()),
            Err(REPEATED_CLAIM)
        );
        all_refuse(&token)?;
        for payload in [junk.clone(), format!("[{}]", json!(junk)), json!(junk).to_string()] {
            prop_assume!(serde_json::from_str::<Value>(&payload).map_or(true, |v| !v.is_object()));
            all_refuse(&signed_raw(&header, &payload))?;
        }
    }

    /// The claim checks answer any claims; what they accept meets every rule they state.
    #[test]
    fn claim_checks_accept_only_what_they_promise(
        c in json_object(),
        max_lifetime in prop::option::of(0i64..4000),
        require_jti in any::<bool>(),
        now in prop::sample::select(vec![NOW, i64::MIN + 100, i64::MAX - 100, 0]),
    ) {
        let expect = Expect { issuer: Some(ISSUER), audiences: &[ISSUER], now, max_lifetime, require_jti };
        if check_claims(&c, &expect).is_ok() {
            prop_assert_eq!(c["iss"].as_str(), Some(ISSUER));
            let exp = c["exp"].as_i64().unwrap();
            prop_assert!(exp.saturating_add(LEEWAY) > now);
            if let Some(iat) = c.get("iat") {
                prop_assert!(iat.as_i64().unwrap() <= now + LEEWAY);
            }
            if let Some(max) = max_lifetime {
                let from = c.get("iat").and_then(Value::as_i64).unwrap_or(now);
                prop_assert!(exp.saturating_sub(from) <= max);
            }
            if require_jti {
                prop_assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty() && j.len() <= ciba_domain::ids::MAX_ID_LEN));
            }
        }
        let _ = jwt::check_own_claims(&c, ISSUER, now);
    }
}
