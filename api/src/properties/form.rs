//! Form bodies (`application/x-www-form-urlencoded`), JSON bodies and `Basic` credentials:
//! what was encoded comes back, repeated parameters are refused, and arbitrary bytes get a
//! 400 (never a panic, never a 5xx).

use super::CASES;
use crate::auth::secret::decode_basic;
use crate::http::form::{is_content_type, json_body, Form};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use proptest::prelude::*;
use std::collections::BTreeMap;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Names and values of any characters (`&`, `=`, `+`, `%` and multi-byte ones included).
fn params() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop_oneof!["[a-z_]{1,12}", ".{1,8}"],
        prop_oneof![".{1,20}", "[&=+% ]{1,5}"],
        0..8,
    )
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded, then joined with `:` and
/// base64-encoded.
fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn form_round_trips(params in params(), charset in any::<bool>()) {
        let pairs: Vec<(String, String)> = params.into_iter().collect();
        let ct = if charset { Some("Application/X-WWW-Form-Urlencoded ; charset=UTF-8") } else { FORM };
        let form = Form::parse(ct, encode(&pairs).as_bytes()).unwrap();
        for (k, v) in &pairs {
            prop_assert_eq!(form.get(k).unwrap(), Some(v.as_str()));
            prop_assert_eq!(form.require(k).unwrap(), v.as_str());
        }
        let names: Vec<&str> = form.names().collect();
        prop_assert_eq!(names, pairs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>());
    }

    /// A parameter given twice with a value is refused wherever the repeat stands; given
    /// once more without a value it counts as omitted.
    #[test]
    fn repeated_parameters_are_refused(params in params(), at in any::<prop::sample::Index>(), again in ".{1,10}") {
        prop_assume!(!params.is_empty());
        let mut pairs: Vec<(String, String)> = params.into_iter().collect();
        let name = pairs[at.index(pairs.len())].0.clone();
        let form = Form::parse(FORM, encode(&[pairs.clone(), vec![(name.clone(), String::new())]].concat()).as_bytes()).unwrap();
        prop_assert!(form.get(&name).unwrap().is_some());
        pairs.insert(at.index(pairs.len() + 1), (name.clone(), again));
        let form = Form::parse(FORM, encode(&pairs).as_bytes()).unwrap();
        let e = form.get(&name).unwrap_err();
        prop_assert_eq!(e.status(), 400);
        prop_assert!(e.description.contains("repeated"));
    }

    /// Arbitrary bytes under any content type: a form, or a 400; reading it never panics.
    #[test]
    fn arbitrary_bodies_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..200),
        text in "[a-z=&%+0-9A-F]{0,60}",
        ct in prop::option::of(prop_oneof![Just("application/x-www-form-urlencoded".to_owned()), ".{0,40}"]),
        name in "[a-z=&%]{1,4}",
    ) {
        for body in [body, text.into_bytes()] {
            match Form::parse(ct.as_deref(), &body) {
                Ok(form) => {
                    prop_assert!(is_content_type(ct.as_deref(), "application/x-www-form-urlencoded"));
                    prop_assert!(std::str::from_utf8(&body).is_ok());
                    for n in form.names().map(str::to_owned).collect::<Vec<_>>().iter().chain([&name]) {
                        if let Err(e) = form.get(n) {
                            prop_assert_eq!(e.status(), 400);
                        }
                    }
                }
                Err(e) => prop_assert_eq!(e.status(), 400),
            }
        }
    }

    /// JSON bodies: the strict parser's answer under the right content type, else a 400.
    #[test]
    fn json_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200), json in any::<bool>()) {
        let ct = if json { Some("application/json; charset=utf-8") } else { FORM };
        match json_body(ct, &body) {
            Ok(v) => prop_assert_eq!(Ok(v), ciba_domain::json::parse(&body)),
            Err(e) => prop_assert_eq!(e.status(), 400),
        }
    }

    /// Basic credentials encoded as RFC 6749 §2.3.1 says decode to the id and secret.
    #[test]
    fn basic_credentials_round_trip(id in ".{1,30}", secret in ".{1,40}", pad in "[ ]{0,2}") {
        let value = format!("{pad}{}{pad}", basic(&id, &secret));
        prop_assert_eq!(decode_basic(&value), Some((id, secret)));
    }

    /// Characters form encoding leaves alone (and unencoded `&`, `=`, `:` in the secret) are
    /// taken as they are, as clients that do not encode send them.
    #[test]
    fn plain_basic_credentials_are_taken_as_they_are(id in "[A-Za-z0-9._*-]{1,30}", secret in "[A-Za-z0-9._*&=:-]{1,40}") {
        let value = STANDARD.encode(format!("{id}:{secret}"));
        prop_assert_eq!(decode_basic(&value), Some((id, secret)));
    }

    /// Any header value: credentials with a non-empty id and secret, or none; never a panic.
    #[test]
    fn arbitrary_basic_values_never_panic(value in ".{0,60}", bytes in prop::collection::vec(any::<u8>(), 0..60)) {
        for v in [value, STANDARD.encode(bytes)] {
            if let Some((id, secret)) = decode_basic(&v) {
                prop_assert!(!id.is_empty() && !secret.is_empty());
            }
        }
    }
}
