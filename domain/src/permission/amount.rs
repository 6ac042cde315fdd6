//! Payment amounts: a positive decimal string, dot as separator, at most two decimals.

/// `"123"`, `"123.4"`, `"123.45"`; not `"0"`, `"0.00"`, `"-1"`, `"1,5"`, `"1."`, `".5"`,
/// `"01"`, `"1e3"`, `" 1"`, or more than 15 integer digits.
pub fn is_valid_amount(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || int.len() > 15 || (int.len() > 1 && int.starts_with('0')) {
        return false;
    }
    if let Some(f) = frac {
        if !digits(f) || f.len() > 2 {
            return false;
        }
    }
    // positive: some digit other than zero
    s.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_positive_amounts_with_at_most_two_decimals() {
        for ok in ["123.45", "123", "0.5", "0.01", "1.0", "999999999999999.99"] {
            assert!(is_valid_amount(ok), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "0",
            "0.00",
            "-1",
            "1,50",
            "1.",
            ".5",
            "01",
            "1.234",
            "1e3",
            " 1",
            "1 ",
            "",
            "+1",
            "1000000000000000",
            "NaN",
        ] {
            assert!(!is_valid_amount(bad), "{bad}");
        }
    }
}
