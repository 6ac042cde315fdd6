//! Properties of permission statements (`payment.v1`, `text.v1`, `authentication.v1`) and
//! of the registration body that carries them: statements generated from their schema
//! validate, as does a registration around them, whose digest covers the decoded bytes; an
//! unknown member, a wrong type, a missing member or a hidden character is refused with a
//! 4xx naming the field; arbitrary JSON never panics.
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::client::{AuthMethod, Client, DeliveryMode, SigningAlg};
use ciba_domain::permission::statement::validate;
use ciba_domain::permission::{validate_registration, PermissionType};
use ciba_domain::scope::ScopeSet;
use ciba_domain::secret::sha256_b64url;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const CASES: u32 = 256;
const NOW: i64 = 1_800_000_000;
const CALLBACK: &str = "https://merchant.app/app_callback";

const KINDS: [PermissionType; 3] = [
    PermissionType::Payment,
    PermissionType::Text,
    PermissionType::Authentication,
];

fn client() -> Client {
    Client {
        id: "c1".into(),
        name: "Shop".into(),
        scopes: ScopeSet::parse(
            "permissions/client permissions/app2app permissions/ciba permissions/text openid",
        )
        .unwrap(),
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

/// A non-blank reference of printable characters.
fn reference() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9æøå_-][a-zA-Z0-9 æøåÆØÅ_.:/-]{0,30}"
}

fn payment() -> impl Strategy<Value = Value> {
    (
        reference(),
        "(0\\.[1-9][0-9]?|[1-9][0-9]{0,14}(\\.[0-9]{1,2})?)",
        prop::sample::select(vec!["NOK", "EUR", "USD", "SEK", "DKK", "JPY", "CHF"]),
        reference(),
    )
        .prop_map(|(id, amount, currency, creditor)| {
            json!({"paymentId": id, "amount": amount, "currency": currency, "creditorName": creditor})
        })
}

/// A valid statement of `kind`.
fn statement(kind: PermissionType) -> BoxedStrategy<Value> {
    match kind {
        PermissionType::Authentication => reference().prop_map(|n| json!({"nonce": n})).boxed(),
        PermissionType::Text => (
            reference(),
            reference(),
            prop::collection::vec(reference(), 1..5),
        )
            .prop_map(|(n, id, lines)| json!({"nonce": n, "id": id, "text": lines.join("\n")}))
            .boxed(),
        PermissionType::Payment => (
            reference(),
            reference(),
            prop::collection::vec(payment(), 1..4),
        )
            .prop_map(|(n, id, p)| json!({"nonce": n, "id": id, "payments": p}))
            .boxed(),
    }
}

fn kind_and_statement() -> impl Strategy<Value = (PermissionType, Value)> {
    prop::sample::select(KINDS.to_vec()).prop_flat_map(|k| (Just(k), statement(k)))
}

/// The string members of `v` (payments' members included), as JSON pointers.
fn string_members(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (k, member) in v.as_object().into_iter().flatten() {
        match member {
            Value::String(_) => out.push(format!("/{k}")),
            Value::Array(list) => {
                for (i, p) in list.iter().enumerate() {
                    for pk in p.as_object().into_iter().flatten().map(|(pk, _)| pk) {
                        out.push(format!("/{k}/{i}/{pk}"));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The object that holds the member at `pointer`, and the member's name.
fn parent_of<'a>(v: &'a mut Value, pointer: &str) -> (&'a mut Map<String, Value>, String) {
    let (parent, name) = pointer.rsplit_once('/').unwrap();
    let obj = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    (obj, name.to_owned())
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,8}".prop_map(Value::String),
        prop::sample::select(vec!["nonce", "id", "text", "payments", "1.00", "NOK"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "nonce",
                    "id",
                    "text",
                    "payments",
                    "paymentId",
                    "amount",
                    "currency",
                    "creditorName",
                    "x",
                ]),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn registration(kind: PermissionType, statement: &str, nnin: &str, iat: i64, life: i64) -> Value {
    json!({
        "type": kind.as_str(), "iat": iat, "exp": iat + life, "permission": statement,
        "intents": ["app2app", "ciba"], "loginHint": [{"scheme": "nnin", "value": nnin}],
        "app_callback_uri": CALLBACK,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn valid_statements_validate((kind, s) in kind_and_statement()) {
        prop_assert_eq!(validate(kind, &s), Ok(s["nonce"].as_str().unwrap().to_owned()));
    }

    /// A registration around a valid statement passes, its digest over the decoded bytes.
    #[test]
    fn valid_registrations_pass(
        (kind, s) in kind_and_statement(),
        iat in (NOW - 60)..=(NOW + 30),
        life in 1i64..=3600,
        individual in 100u32..500,
    ) {
        prop_assume!(iat + life > NOW);
        let nnin = ciba_domain::nnin::first_valid("010190", individual);
        prop_assume!(nnin.is_some());
        let bytes = s.to_string();
        let encoded = URL_SAFE_NO_PAD.encode(&bytes);
        let body = registration(kind, &encoded, &nnin.unwrap(), iat, life);
        let p = validate_registration(&body, &client(), NOW);
        prop_assert!(p.is_ok(), "{:?}", p);
        let p = p.unwrap();
        prop_assert_eq!(p.digest, sha256_b64url(bytes.as_bytes()));
        prop_assert_eq!(p.statement, encoded);
        prop_assert_eq!(p.kind, kind);
    }

    /// A member the schema does not name, at the top or in a payment: refused, named.
    #[test]
    fn unknown_members_are_refused(
        (kind, mut s) in kind_and_statement(),
        name in "[a-zA-Z]{1,10}",
        inside in any::<bool>(),
    ) {
        let known = ["nonce", "id", "text", "payments", "paymentId", "amount", "currency", "creditorName"];
        prop_assume!(!known.contains(&name.as_str()));
        let target = match s.get_mut("payments") {
            Some(p) if inside => &mut p[0],
            _ => &mut s,
        };
        target[name.as_str()] = json!("x");
        let e = validate(kind, &s).unwrap_err();
        prop_assert_eq!(e.status(), 400);
        prop_assert!(e.description.contains(&name), "{}", e.description);
    }

    /// Any string member given another type, removed, blank, or with a hidden character.
    #[test]
    fn mutated_members_are_refused(
        (kind, mut s) in kind_and_statement(),
        pick in any::<prop::sample::Index>(),
        how in 0usize..4,
        other in prop_oneof![
            Just(Value::Null), any::<bool>().prop_map(Value::Bool), any::<i64>().prop_map(Value::from),
            Just(json!([])), Just(json!({})), Just(json!(["x"])),
        ],
        hidden in prop::sample::select(vec!['\u{0}', '\u{9}', '\u{202e}', '\u{200b}', '\u{2028}', '\u{feff}', '\u{e000}', '\u{378}']),
    ) {
        let members = string_members(&s);
        let pointer = pick.get(&members).clone();
        let (obj, name) = parent_of(&mut s, &pointer);
        match how {
            0 => { obj.insert(name.clone(), other); }
            1 => { obj.remove(&name); }
            2 => { obj.insert(name.clone(), json!(" \n ")); }
            _ => {
                let text = obj[&name].as_str().unwrap().to_owned();
                obj.insert(name.clone(), json!(format!("{text}{hidden}")));
            }
        }
        let e = validate(kind, &s).unwrap_err();
        prop_assert_eq!(e.status(), 400);
        prop_assert!(e.description.contains(&name), "{}: {}", name, e.description);
    }

    /// Arbitrary JSON as a statement of any type, or as a registration body: an answer.
    #[test]
    fn arbitrary_json_never_panics(v in any_json(), k in 0usize..3) {
        if let Err(e) = validate(KINDS[k], &v) {
            prop_assert_eq!(e.status(), 400);
        }
        let encoded = URL_SAFE_NO_PAD.encode(v.to_string());
        let nnin = ciba_domain::nnin::first_valid("010190", 100).unwrap();
        let mut bodies = vec![v.clone(), registration(KINDS[k], &encoded, &nnin, NOW, 60)];
        if let Value::Object(m) = &v {
            let mut b = registration(KINDS[k], &encoded, &nnin, NOW, 60);
            b.as_object_mut().unwrap().extend(m.clone());
            bodies.push(b);
        }
        for body in bodies {
            if let Err(e) = validate_registration(&body, &client(), NOW) {
                prop_assert!((400..500).contains(&e.status()), "{}", e.status());
            }
        }
    }
}
