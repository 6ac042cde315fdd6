//! Properties of NNIN parsing (`ciba_domain::nnin`), fed by `login_hint` and `loginHint`:
//! every number made from a real birth date, an individual number of the date's century and
//! its check digits parses; any single changed digit is refused; arbitrary text never panics.
#![allow(clippy::unwrap_used)]

use ciba_domain::nnin::{with_check_digits, Nnin, NninError};
use proptest::prelude::*;

const CASES: u32 = 256;

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An individual number that places a two-digit year in `year`'s century.
fn individual_for(year: u32) -> BoxedStrategy<u32> {
    match year {
        1854..=1899 => (500u32..=749).boxed(),
        1900..=1939 => (0u32..=499).boxed(),
        1940..=1999 => prop_oneof![0u32..=499, 900u32..=999].boxed(),
        _ => (500u32..=999).boxed(),
    }
}

/// The nine digits before the check digits of a real date: ordinary, D-, H- or synthetic.
fn valid_base() -> impl Strategy<Value = String> {
    (1854u32..=2039, 1u32..=12, 0u32..4)
        .prop_flat_map(|(year, month, variant)| {
            let days = days_in_month(year, month);
            (Just((year, month, variant)), 1..=days, individual_for(year))
        })
        .prop_map(|((year, month, variant), day, individual)| {
            let (day, month) = match variant {
                1 => (day + 40, month), // D-number
                2 => (day, month + 40), // H-number
                3 => (day, month + 80), // synthetic test number
                _ => (day, month),
            };
            format!("{day:02}{month:02}{:02}{individual:03}", year % 100)
        })
}

fn valid_nnin() -> impl Strategy<Value = String> {
    // About one base in eleven has no check digit (remainder 10); those are skipped.
    valid_base().prop_filter_map("no check digits", |b| with_check_digits(&b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn numbers_of_real_dates_parse(n in valid_nnin()) {
        let parsed = Nnin::parse(&n);
        prop_assert!(parsed.is_ok(), "{} -> {:?}", n, parsed);
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.as_str(), n.as_str());
    }

    /// Each weight of both mod-11 sums is below 11 and not 0, so changing any one digit,
    /// a check digit included, breaks a check digit.
    #[test]
    fn any_single_changed_digit_is_refused(n in valid_nnin(), at in 0usize..11, by in 1u8..10) {
        let mut digits = n.into_bytes();
        digits[at] = b'0' + (digits[at] - b'0' + by) % 10;
        let changed = String::from_utf8(digits).unwrap();
        prop_assert_eq!(Nnin::parse(&changed), Err(NninError::CheckDigits));
    }

    /// Eleven digits parse only with both check digits right.
    #[test]
    fn eleven_digits_parse_only_with_their_check_digits(s in "[0-9]{11}") {
        let completed = with_check_digits(&s[..9]);
        match Nnin::parse(&s) {
            Ok(n) => prop_assert_eq!(completed.as_deref(), Some(n.as_str())),
            Err(NninError::CheckDigits) => prop_assert_ne!(completed.as_deref(), Some(s.as_str())),
            Err(NninError::Date) => prop_assert_eq!(completed.as_deref(), Some(s.as_str())),
            Err(NninError::Format) => prop_assert!(false, "{} is eleven digits", s),
        }
    }

    /// Anything but exactly eleven ASCII digits is a format error, never a panic (multi-byte
    /// characters of eleven bytes included).
    #[test]
    fn anything_else_is_a_format_error(s in any::<String>(), pad in "[0-9]{0,11}") {
        for candidate in [s.clone(), format!("{pad}{s}"), format!("{s}{pad}")] {
            let well_formed = candidate.len() == 11 && candidate.bytes().all(|b| b.is_ascii_digit());
            let got = Nnin::parse(&candidate);
            if !well_formed {
                prop_assert_eq!(got, Err(NninError::Format));
            }
        }
    }
}
