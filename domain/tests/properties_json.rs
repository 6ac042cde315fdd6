//! Properties of the strict JSON parser (`ciba_domain::json`), which reads every JSON
//! document a client sends: it agrees with serde_json on valid documents without repeated
//! keys, refuses repeated keys and deep nesting with its own errors, and never panics or
//! overflows the stack on arbitrary input.
#![allow(clippy::unwrap_used)]

use ciba_domain::json::{parse, JsonError, MAX_DEPTH};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Cases per property: bounded for CI (the whole file runs in about a second).
const CASES: u32 = 256;

/// Any JSON value, nested a few levels (well within [`MAX_DEPTH`]).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The key `k` written with every character as a `\u` escape (surrogate pairs included).
fn escaped_key(k: &str) -> String {
    let mut out = String::from("\"");
    for unit in k.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out.push('"');
    out
}

/// Text that looks like JSON often enough to reach deep into the parser.
fn jsonish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "{", "}", "[", "]", ":", ",", "\"", "\\", "\"a\"", "1", "-0.5e3", "true", "null",
                " ", "\\u0061", "\\ud800", "\u{0}",
            ])
            .prop_map(str::to_owned),
            any::<char>().prop_map(String::from),
        ],
        0..64,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Valid JSON without repeated keys reads exactly as serde_json reads it.
    #[test]
    fn agrees_with_serde_json_on_valid_documents(v in json_value(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            serde_json::to_string(&v).unwrap()
        };
        let expected: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(parse(text.as_bytes()), Ok(expected));
    }

    /// Whatever the strict parser accepts, serde_json accepts and reads the same way.
    #[test]
    fn accepts_nothing_serde_json_refuses(text in jsonish()) {
        if let Ok(v) = parse(text.as_bytes()) {
            let theirs: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(v, theirs);
        }
    }

    /// Arbitrary bytes: an answer, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    /// A key repeated in any object, spelled plainly or with escapes, is refused by name.
    #[test]
    fn repeated_keys_are_refused(
        key in "[a-zA-Z0-9_øæ€]{1,12}",
        first in json_value(),
        second in json_value(),
        others in prop::collection::btree_map("[A-Z]{1,4}", json_value(), 0..4),
        escape in any::<bool>(),
        wrap in 0usize..4,
    ) {
        let mut text = format!("{{\"{key}\":{first}");
        for (k, v) in &others {
            text.push_str(&format!(",\"{k}\":{v}"));
        }
        let again = if escape { escaped_key(&key) } else { format!("\"{key}\"") };
        text.push_str(&format!(",{again}:{second}}}"));
        // The object may sit inside arrays and objects of its own.
        for _ in 0..wrap {
            text = format!("[{{\"w\":{text}}}]");
        }
        prop_assert_eq!(parse(text.as_bytes()), Err(JsonError::DuplicateKey(key)));
    }

    /// Nesting up to MAX_DEPTH is read; one level deeper is refused as too deep, however the
    /// arrays and objects are mixed, and far deeper input costs no stack.
    #[test]
    fn nesting_is_bounded(kinds in prop::collection::vec(any::<bool>(), 0..(MAX_DEPTH * 3))) {
        let mut open = String::new();
        let mut close = String::new();
        for &object in &kinds {
            if object {
                open.push_str("{\"k\":");
                close.insert(0, '}');
            } else {
                open.push('[');
                close.insert(0, ']');
            }
        }
        let text = format!("{open}0{close}");
        let got = parse(text.as_bytes());
        if kinds.len() <= MAX_DEPTH {
            prop_assert!(got.is_ok(), "{} levels: {:?}", kinds.len(), got);
        } else {
            prop_assert_eq!(got, Err(JsonError::TooDeep));
        }
    }

    /// Unclosed nesting a hundred thousand levels deep: refused, not a stack overflow.
    #[test]
    fn very_deep_unclosed_input_is_refused(n in 33usize..100_000, object in any::<bool>()) {
        let unit = if object { "{\"a\":" } else { "[" };
        prop_assert_eq!(parse(unit.repeat(n).as_bytes()), Err(JsonError::TooDeep));
    }
}
