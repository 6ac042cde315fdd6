//! Identifiers and tokens from the operating system's CSPRNG.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The longest identifier from a request (client id, `kid`, `jti`, `iss`, `auth_req_id`, link
/// `ref`, device id) that can be legitimate. Those we issue are 43-46 characters; longer ones
/// are refused before any lookup or cache (contract §10).
pub const MAX_ID_LEN: usize = 256;

/// `n` random bytes from the OS CSPRNG.
///
/// # Panics
/// Only if the operating system cannot supply randomness, in which case no secure
/// identifier can be made and continuing would be worse than stopping.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::getrandom(&mut buf).expect("the OS CSPRNG is unavailable");
    buf
}

/// A 256-bit random identifier, base64url without padding (43 chars of `A-Z a-z 0-9 - _`).
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A random identifier with a readable prefix, e.g. `cl_...`; the random part carries 256 bits.
pub fn prefixed_id(prefix: &str) -> String {
    format!("{prefix}{}", random_id())
}

/// Identifiers we issue use only `A-Z a-z 0-9 - _ .`.
pub fn is_well_formed_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_distinct_and_in_the_alphabet() {
        let a = random_id();
        let b = random_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(is_well_formed_id(&a));
        assert!(is_well_formed_id(&prefixed_id("cl_")));
        assert!(!is_well_formed_id("a b"));
        assert!(!is_well_formed_id(""));
    }
}
