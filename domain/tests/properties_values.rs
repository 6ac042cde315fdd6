//! Properties of the small decoders of client input in the domain: base64url, `device_info`,
//! payment amounts and currencies, text shown to the user, `requested_expiry`. Each answers
//! arbitrary input with a result (an error a client can be told: 4xx), never a panic, and
//! gives back what was encoded where there is a round trip.
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ciba_domain::auth_request::parse_requested_expiry;
use ciba_domain::device::DeviceInfo;
use ciba_domain::permission::amount::is_valid_amount;
use ciba_domain::permission::currency::is_iso4217;
use ciba_domain::permission::decode_b64url;
use ciba_domain::text::{first_hidden, hidden_character};
use proptest::prelude::*;

const CASES: u32 = 256;

/// Characters that change how text looks without being seen.
const HIDDEN: [char; 12] = [
    '\u{0}', '\u{7}', '\u{1b}', '\u{7f}', '\u{85}', '\u{200b}', '\u{200d}', '\u{202e}', '\u{2066}',
    '\u{2028}', '\u{feff}', '\u{e000}',
];

/// Printable text in several scripts, none of it hidden.
fn printable(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9 ,._:/()æøåÆØÅ東京€🙂-]{{1,{max}}}"))
        .unwrap()
}

fn insert_at(s: &str, at: usize, c: char) -> String {
    let at = s
        .char_indices()
        .nth(at % (s.chars().count() + 1))
        .map_or(s.len(), |(i, _)| i);
    let mut out = s.to_owned();
    out.insert(at, c);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn base64url_round_trips(bytes in prop::collection::vec(any::<u8>(), 1..200)) {
        let text = URL_SAFE_NO_PAD.encode(&bytes);
        prop_assert_eq!(decode_b64url("f", &text).unwrap(), bytes.clone());
        // Padding, or the standard alphabet, is refused.
        let padded = URL_SAFE.encode(&bytes);
        prop_assert_eq!(decode_b64url("f", &padded).is_ok(), padded == text);
        let standard = STANDARD.encode(&bytes);
        if standard.contains(['+', '/', '=']) {
            prop_assert!(decode_b64url("f", &standard).is_err());
        }
    }

    /// Whatever decodes is the one canonical encoding of its bytes; errors are 400s.
    #[test]
    fn base64url_decodes_only_canonical_text(text in "[A-Za-z0-9_=+/. -]{0,40}") {
        match decode_b64url("f", &text) {
            Ok(bytes) => prop_assert_eq!(URL_SAFE_NO_PAD.encode(bytes), text),
            Err(e) => prop_assert_eq!(e.status(), 400),
        }
    }

    #[test]
    fn device_info_round_trips(p in printable(100), ma in printable(25), mo in printable(25)) {
        let json = serde_json::json!({"p": p, "ma": ma, "mo": mo}).to_string();
        let got = DeviceInfo::from_b64url("device_info", &URL_SAFE_NO_PAD.encode(json));
        if p.len() <= 100 {
            prop_assert_eq!(got, Ok(DeviceInfo { platform: p, manufacturer: ma, model: mo }));
        } else {
            prop_assert_eq!(got.unwrap_err().status(), 400);
        }
    }

    /// Control characters, a missing or repeated member, or other JSON: a 400.
    #[test]
    fn device_info_mutations_are_refused(
        p in printable(20), at in any::<usize>(), c in 0u32..0x20, which in 0usize..4,
    ) {
        let json = match which {
            0 => serde_json::json!({"p": insert_at(&p, at, char::from_u32(c).unwrap()), "ma": "m", "mo": "m"}).to_string(),
            1 => serde_json::json!({"p": p, "ma": "m"}).to_string(),
            2 => format!(r#"{{"p":"ios","ma":"m","mo":"m","p":{}}}"#, serde_json::json!(p)),
            _ => serde_json::json!([p, "m", "m"]).to_string(),
        };
        let got = DeviceInfo::from_b64url("device_info", &URL_SAFE_NO_PAD.encode(json));
        prop_assert_eq!(got.unwrap_err().status(), 400);
    }

    #[test]
    fn device_info_never_panics(text in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        for t in [text, URL_SAFE_NO_PAD.encode(bytes)] {
            if let Err(e) = DeviceInfo::from_b64url("device_info", &t) {
                prop_assert_eq!(e.status(), 400);
            }
        }
    }

    /// Every decimal of the documented shape with a digit other than 0 is an amount.
    #[test]
    fn valid_amounts_are_accepted(s in "(0|[1-9][0-9]{0,14})(\\.[0-9]{1,2})?") {
        let positive = s.bytes().any(|b| (b'1'..=b'9').contains(&b));
        prop_assert_eq!(is_valid_amount(&s), positive);
    }

    /// Anything else is refused: a third decimal, a leading zero, a sign, a space, a comma,
    /// an exponent, a sixteenth integer digit, a bare dot.
    #[test]
    fn malformed_amounts_are_refused(
        s in "[1-9][0-9]{0,14}(\\.[0-9]{1,2})?",
        how in 0usize..9,
        extra in "[0-9]",
    ) {
        let int = s.split('.').next().unwrap_or_default();
        let bad = match how {
            0 => format!("{int}.{extra}{extra}{extra}"),
            1 => format!("0{s}"),
            2 => format!("-{s}"),
            3 => format!("+{s}"),
            4 => format!(" {s}"),
            5 => format!("{int},50"),
            6 => format!("{s}e3"),
            7 => format!("{}{extra}", "9".repeat(15)),
            _ => format!("{s}."),
        };
        prop_assert!(!is_valid_amount(&bad), "{:?} accepted", bad);
    }

    #[test]
    fn amounts_never_panic(s in any::<String>()) {
        if is_valid_amount(&s) {
            prop_assert!(s.parse::<f64>().is_ok_and(|v| v > 0.0), "{:?}", s);
        }
    }

    /// A currency is three upper-case letters of the list; its lower case is not.
    #[test]
    fn currencies_are_three_upper_case_letters(s in any::<String>(), code in "[A-Z]{3}") {
        prop_assert!(!is_iso4217(&s) || (s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())));
        if is_iso4217(&code) {
            prop_assert!(!is_iso4217(&code.to_lowercase()));
        }
    }

    /// A hidden character anywhere in printable text is found and named by its code point.
    #[test]
    fn hidden_characters_are_found(text in printable(60), at in any::<usize>(), i in 0usize..HIDDEN.len()) {
        prop_assert_eq!(first_hidden(&text, &[]), None);
        let c = HIDDEN[i];
        let found = first_hidden(&insert_at(&text, at, c), &[]);
        let code = format!("U+{:04X}", u32::from(c));
        prop_assert!(found.as_deref().is_some_and(|f| f.contains(&code)), "{:?}", found);
    }

    #[test]
    fn first_hidden_names_a_hidden_character(text in any::<String>()) {
        match first_hidden(&text, &['\n']) {
            Some(_) => prop_assert!(text.chars().any(|c| c != '\n' && hidden_character(c).is_some())),
            None => prop_assert!(text.chars().all(|c| c == '\n' || hidden_character(c).is_none())),
        }
    }

    /// `requested_expiry`: one to nine digits, not zero; anything else a 400.
    #[test]
    fn requested_expiry_is_a_positive_number(raw in any::<String>(), digits in "[0-9]{1,12}") {
        for raw in [raw, digits] {
            match parse_requested_expiry(Some(&raw)) {
                Ok(Some(v)) => {
                    prop_assert!(raw.len() <= 9 && raw.bytes().all(|b| b.is_ascii_digit()));
                    prop_assert_eq!(Ok(v), raw.parse::<i64>());
                    prop_assert!((1..=999_999_999).contains(&v));
                }
                Ok(None) => prop_assert!(false, "a value gave None"),
                Err(e) => {
                    prop_assert_eq!(e.status(), 400);
                    let digits = !raw.is_empty() && raw.len() <= 9 && raw.bytes().all(|b| b.is_ascii_digit());
                    prop_assert!(!digits || raw.bytes().all(|b| b == b'0'), "{:?} refused", raw);
                }
            }
        }
    }
}
