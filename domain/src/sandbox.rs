//! Sandbox mode (contract §12): what a test user's simulated authenticating app does, and
//! the synthetic NNINs test users are given.

use crate::ids::random_bytes;
use crate::nnin::{with_check_digits, Nnin};

/// What a test user's simulated app does with a request made for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Waits for Approve or Decline on the sandbox page (or `ciba-api sandbox approve`).
    Manual,
    /// Approves after the user's delay.
    Approve,
    /// Declines after the user's delay.
    Decline,
    /// Never answers: the request expires (to test expiry and ping).
    Ignore,
}

impl Behaviour {
    pub const ALL: [Behaviour; 4] = [Self::Manual, Self::Approve, Self::Decline, Self::Ignore];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::Ignore => "ignore",
        }
    }

    /// The decision the app makes on its own, if any.
    pub fn automatic(self) -> Option<crate::auth_request::Decision> {
        use crate::auth_request::Decision;
        match self {
            Self::Approve => Some(Decision::Approve),
            Self::Decline => Some(Decision::Decline),
            Self::Manual | Self::Ignore => None,
        }
    }
}

/// A random synthetic test NNIN (month + 80, as the Norwegian Tax Administration's test
/// registry issues them), born between 1950 and 2005: never a real person's number.
pub fn synthetic_nnin() -> Nnin {
    loop {
        let r = random_bytes::<6>();
        let year = 1950 + u32::from(r[0]) % 56;
        let month = 1 + u32::from(r[1]) % 12;
        let day = 1 + u32::from(r[2]) % 28;
        let spread = u32::from(u16::from_le_bytes([r[3], r[4]]));
        // The individual number tells the century (1900-1999: 000-499; 2000-2039: 500-999).
        let individual = if year < 2000 {
            spread % 500
        } else {
            500 + spread % 500
        };
        let base = format!("{day:02}{:02}{:02}{individual:03}", month + 80, year % 100);
        if let Some(n) = with_check_digits(&base).and_then(|s| Nnin::parse(&s).ok()) {
            return n;
        }
    }
}

/// An NNIN as the sandbox page shows it: the birth date, the rest hidden.
pub fn masked(nnin: &str) -> String {
    let shown: String = nnin.chars().take(6).collect();
    format!("{shown}*****")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_numbers_are_valid_and_marked_synthetic() {
        for _ in 0..500 {
            let n = synthetic_nnin();
            assert!(Nnin::parse(n.as_str()).is_ok());
            let month: u32 = n.as_str()[2..4].parse().unwrap_or(0);
            assert!((81..=92).contains(&month), "{month}");
        }
    }

    #[test]
    fn masking_hides_the_personal_part() {
        assert_eq!(masked("01819012345"), "018190*****");
        assert!(!masked("01819012345").contains("12345"));
    }

    #[test]
    fn behaviours_round_trip() {
        for b in Behaviour::ALL {
            assert_eq!(Behaviour::parse(b.as_str()), Some(b));
        }
        assert_eq!(Behaviour::parse("sometimes"), None);
        assert!(Behaviour::Manual.automatic().is_none());
        assert!(Behaviour::Ignore.automatic().is_none());
    }
}
