//! The strategies the generated requests are drawn from: text, JSON, JWT-shaped strings,
//! credentials, content types, forms and registration bodies of every kind.

use super::Auth;
use crate::support::app::{now, payment_statement, CALLBACK};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Text of every kind: printable, any character, numbers, base64url of JSON.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        "[ -~]{0,30}",
        ".{0,20}",
        "[0-9]{1,12}",
        "[ -~]{0,2}[\u{0}\u{7}\u{202e}\u{200b}\u{feff}\u{2028}][ -~]{0,5}",
        any::<i64>().prop_map(|n| n.to_string()),
        json_value().prop_map(|v| URL_SAFE_NO_PAD.encode(v.to_string())),
        jwt_like(),
    ]
    .boxed()
}

pub fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["ios", "Apple", "nnin", "approve", "payment.v1", "sub"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(vec![
                        "p", "ma", "mo", "nonce", "id", "scheme", "value", "alg", "kid", "iss",
                        "exp"
                    ])
                    .prop_map(str::to_owned),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Three base64url parts: headers with any alg, arbitrary claims, arbitrary signatures.
pub fn jwt_like() -> BoxedStrategy<String> {
    (
        prop::sample::select(vec!["none", "HS256", "ES256", "RS256", "PS256", "xx"]),
        json_value(),
        prop::collection::vec(any::<u8>(), 0..70),
    )
        .prop_map(|(alg, claims, sig)| {
            let header = json!({"alg": alg, "kid": "k", "typ": "JWT"}).to_string();
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims.to_string()),
                URL_SAFE_NO_PAD.encode(sig)
            )
        })
        .boxed()
}

pub fn auth() -> BoxedStrategy<Auth> {
    prop_oneof![
        Just(Auth::None),
        Just(Auth::MerchantBasic),
        Just(Auth::MerchantBearer),
        Just(Auth::Device),
        "[ -~]{0,40}".prop_map(Auth::Raw),
        text().prop_map(|t| Auth::Raw(format!("Basic {}", STANDARD.encode(t)))),
        text().prop_map(|t| Auth::Raw(format!("Bearer {t}"))),
    ]
    .boxed()
}

pub fn content_type(usual: &'static str) -> BoxedStrategy<Option<String>> {
    prop_oneof![
        12 => Just(Some(usual.to_owned())),
        1 => Just(None),
        1 => prop::sample::select(vec![
            "application/x-www-form-urlencoded; charset=UTF-8", "application/json", "text/plain", "",
        ]).prop_map(|s| Some(s.to_owned())),
        1 => "[ -~]{0,30}".prop_map(Some),
    ]
    .boxed()
}

/// A form of the endpoint's own parameter names (and others) with valid or arbitrary values,
/// or bytes that are not a form at all.
pub fn form(names: Vec<&'static str>, values: Vec<String>) -> BoxedStrategy<Vec<u8>> {
    let value = prop_oneof![prop::sample::select(values), text()];
    let name = prop_oneof![4 => prop::sample::select(names).prop_map(str::to_owned), 1 => text()];
    prop_oneof![
        6 => prop::collection::vec((name, value), 0..8).prop_map(|pairs| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                s.append_pair(k, v);
            }
            s.finish().into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..100),
        1 => "[a-z=&%+0-9]{0,60}".prop_map(String::into_bytes),
    ]
    .boxed()
}

/// A registration body: a real one with members replaced, removed or added, or other JSON,
/// or bytes.
pub fn registration(nnin: String) -> BoxedStrategy<Vec<u8>> {
    let statement = prop_oneof![
        Just(payment_statement()),
        json_value().prop_map(|v| URL_SAFE_NO_PAD.encode(v.to_string())),
        text(),
    ];
    let member = prop::sample::select(vec![
        "type",
        "loa",
        "iat",
        "exp",
        "permission",
        "intents",
        "loginHint",
        "app_callback_uri",
        "acr_values",
        "x",
    ]);
    let edits = prop::collection::vec((member, prop::option::of(json_value())), 0..4);
    prop_oneof![
        6 => (statement, edits, prop::sample::select(vec!["payment.v1", "text.v1", "authentication.v1"])).prop_map(move |(s, edits, kind)| {
            let t = now();
            let mut body = json!({
                "type": kind, "iat": t, "exp": t + 600, "permission": s, "intents": ["app2app"],
                "loginHint": [{"scheme": "nnin", "value": nnin}], "app_callback_uri": CALLBACK,
            });
            for (k, v) in edits {
                match v {
                    Some(v) => body[k] = v,
                    None => { body.as_object_mut().unwrap().remove(k); }
                }
            }
            body.to_string().into_bytes()
        }),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..100),
    ]
    .boxed()
}

/// `first` (when drawn) in front of `rest`: the parameter a request needs to get further.
pub fn lead(first: BoxedStrategy<String>, rest: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (prop::option::weighted(0.8, first), rest)
        .prop_map(|(first, rest)| match first {
            Some(f) => [f.into_bytes(), b"&".to_vec(), rest].concat(),
            None => rest,
        })
        .boxed()
}

pub fn pair(name: &'static str, value: BoxedStrategy<String>) -> BoxedStrategy<String> {
    value
        .prop_map(move |v| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair(name, &v)
                .finish()
        })
        .boxed()
}

/// The claims of a decision on `link_ref`, each member valid, another value, or left out.
pub fn decision(link_ref: String) -> BoxedStrategy<Value> {
    let member = |valid: Value| prop_oneof![3 => Just(Some(valid)), 1 => json_value().prop_map(Some), 1 => Just(None)];
    (
        member(json!(link_ref)),
        member(json!("approve")),
        member(json!("digest")),
        member(json!(now())),
        member(json!(ciba_domain::ids::random_id())),
        member(json!(["hwk", "face"])),
    )
        .prop_map(|(r, d, digest, iat, jti, amr)| {
            let names = ["ref", "decision", "permission_digest", "iat", "jti", "amr"];
            let values = [r, d, digest, iat, jti, amr];
            Value::Object(
                names
                    .iter()
                    .zip(values)
                    .filter_map(|(n, v)| Some(((*n).to_owned(), v?)))
                    .collect(),
            )
        })
        .boxed()
}
