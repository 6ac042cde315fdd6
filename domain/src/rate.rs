//! Abuse limits (contract §10): at most `limit` events per fixed window of `window` seconds.
//! Windows are aligned to multiples of their length, so every replica counts into the same
//! window without talking to the others; the count itself lives in the database.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per window; 0 turns the limit off.
    pub limit: u32,
    /// Window length in seconds (at least 1).
    pub window: i64,
}

impl Rate {
    pub const fn new(limit: u32, window: i64) -> Self {
        Self { limit, window }
    }

    pub fn is_off(&self) -> bool {
        self.limit == 0
    }

    /// The start of the window that holds `now`.
    pub fn window_start(&self, now: i64) -> i64 {
        now - now.rem_euclid(self.window)
    }

    /// When the window that holds `now` ends.
    pub fn window_end(&self, now: i64) -> i64 {
        self.window_start(now) + self.window
    }

    /// Seconds until the window that holds `now` ends (at least 1): `Retry-After`.
    pub fn retry_after(&self, now: i64) -> i64 {
        (self.window_end(now) - now).max(1)
    }

    /// Is the `count`-th event of a window (counting from 1) over the limit?
    pub fn exceeded_by(&self, count: i64) -> bool {
        !self.is_off() && count > i64::from(self.limit)
    }

    /// Parse `N/SECONDS` (e.g. `600/60`), or `0` to turn the limit off.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Self::new(0, 1));
        }
        let (n, secs) = text
            .split_once('/')
            .ok_or_else(|| format!("expected COUNT/SECONDS such as 600/60, or 0, got {text:?}"))?;
        let limit: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("the count in {text:?} is not a whole number"))?;
        let window: i64 = secs
            .trim()
            .parse()
            .map_err(|_| format!("the seconds in {text:?} are not a whole number"))?;
        if !(1..=86_400).contains(&window) {
            return Err(format!(
                "the window must be 1 to 86400 seconds, got {window}"
            ));
        }
        Ok(Self::new(limit, window))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            f.write_str("0")
        } else {
            write!(f, "{}/{}", self.limit, self.window)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_and_retry_after_counts_down() {
        let r = Rate::new(3, 60);
        assert_eq!(r.window_start(1_000_000_019), 999_999_960);
        assert_eq!(r.window_end(1_000_000_019), 1_000_000_020);
        assert_eq!(r.retry_after(1_000_000_019), 1);
        assert_eq!(r.retry_after(999_999_960), 60);
        assert!(!r.exceeded_by(3));
        assert!(r.exceeded_by(4));
        assert!(!Rate::parse("0").unwrap().exceeded_by(1_000_000));
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Rate::parse("600/60").unwrap(), Rate::new(600, 60));
        assert_eq!(Rate::parse(" 5 / 300 ").unwrap(), Rate::new(5, 300));
        assert!(Rate::parse("0").unwrap().is_off());
        for bad in ["", "10", "x/60", "10/0", "10/x", "-1/60", "10/100000"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Rate::new(5, 300).to_string(), "5/300");
    }
}
