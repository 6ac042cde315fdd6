//! Norwegian national identity numbers (fødselsnummer) and their variants.
//!
//! Accepted: ordinary numbers, D-numbers (day + 40), H-numbers (month + 40), and synthetic
//! test numbers (month + 80, as issued by the Norwegian Tax Administration's test registry).
//! Both mod-11 check digits must hold and the birth date must exist in the century the
//! individual number implies.

use std::fmt;

/// A validated NNIN. `Debug` never shows the number.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Nnin(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NninError {
    #[error("must be exactly 11 digits")]
    Format,
    #[error("check digits do not match")]
    CheckDigits,
    #[error("does not encode a valid birth date")]
    Date,
}

const K1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const K2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

impl Nnin {
    pub fn parse(s: &str) -> Result<Self, NninError> {
        if s.len() != 11 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NninError::Format);
        }
        let d: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
        if check_digit(&d[..9], &K1) != Some(d[9]) || check_digit(&d[..10], &K2) != Some(d[10]) {
            return Err(NninError::CheckDigits);
        }
        if !valid_date(&d) {
            return Err(NninError::Date);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Nnin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Nnin(<redacted>)")
    }
}

/// The mod-11 check digit for `digits` with `weights`; `None` when the remainder gives 10.
pub fn check_digit(digits: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k),
    }
}

fn valid_date(d: &[u32]) -> bool {
    let mut day = d[0] * 10 + d[1];
    let mut month = d[2] * 10 + d[3];
    let yy = d[4] * 10 + d[5];
    let individual = d[6] * 100 + d[7] * 10 + d[8];
    if day > 40 {
        day -= 40; // D-number
    }
    if month > 80 {
        month -= 80; // synthetic test number
    } else if month > 40 {
        month -= 40; // H-number
    }
    let Some(year) = century(individual, yy).map(|c| c + yy) else {
        return false;
    };
    (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)
}

fn century(individual: u32, yy: u32) -> Option<u32> {
    match individual {
        0..=499 => Some(1900),
        500..=749 if yy >= 54 => Some(1800),
        500..=999 if yy <= 39 => Some(2000),
        900..=999 if yy >= 40 => Some(1900),
        _ => None,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Complete a 9-digit base (date + individual number) with its check digits, if it has any.
/// Used by tests and the admin tooling to make valid synthetic numbers.
pub fn with_check_digits(base9: &str) -> Option<String> {
    if base9.len() != 9 || !base9.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut d: Vec<u32> = base9.bytes().map(|b| u32::from(b - b'0')).collect();
    d.push(check_digit(&d, &K1)?);
    d.push(check_digit(&d, &K2)?);
    Some(
        d.iter()
            .map(|x| char::from_digit(*x, 10).unwrap_or('0'))
            .collect(),
    )
}

/// The first valid number with the six date digits `date6` and an individual number at or
/// after `from` (for tests and examples).
pub fn first_valid(date6: &str, from: u32) -> Option<String> {
    (from..1000).find_map(|ind| with_check_digits(&format!("{date6}{ind:03}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(base9: &str) -> String {
        let mut b = base9.to_owned();
        // try neighbouring individual numbers until one has check digits
        for _ in 0..20 {
            if let Some(n) = with_check_digits(&b) {
                return n;
            }
            let ind: u32 = b[6..].parse().unwrap();
            b = format!("{}{:03}", &b[..6], ind + 1);
        }
        panic!("no valid number near {base9}");
    }

    #[test]
    fn accepts_ordinary_d_h_and_synthetic_numbers() {
        for base in [
            "010190123",
            "450190123",
            "014190123",
            "018190123",
            "290200500",
        ] {
            let n = valid(base);
            assert!(Nnin::parse(&n).is_ok(), "{base} -> {n}");
        }
    }

    #[test]
    fn rejects_bad_check_digits() {
        let n = valid("010190123");
        let mut bad = n.clone().into_bytes();
        bad[10] = if bad[10] == b'9' { b'0' } else { bad[10] + 1 };
        assert_eq!(
            Nnin::parse(std::str::from_utf8(&bad).unwrap()),
            Err(NninError::CheckDigits)
        );
    }

    #[test]
    fn rejects_malformed_and_impossible_dates() {
        assert_eq!(Nnin::parse("1234567890"), Err(NninError::Format));
        assert_eq!(Nnin::parse("1234567890a"), Err(NninError::Format));
        assert_eq!(Nnin::parse(" 1234567890"), Err(NninError::Format));
        // 30 February, and 29 February in a non-leap year (1901)
        for base in ["300290123", "290201123", "321290123", "011390123"] {
            let n = valid(base);
            assert_eq!(Nnin::parse(&n), Err(NninError::Date), "{base} -> {n}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let n = Nnin::parse(&valid("010190123")).unwrap();
        assert!(!format!("{n:?}").contains("0101"));
    }
}
