//! The wall clock. Only the edges read it; everything below takes `now` as a parameter.
//!
//! Built for tests (feature `test-clock`), the clock runs ahead by the milliseconds written in
//! the file named by `CIBA_TEST_CLOCK_FILE`, so end-to-end tests move a server's time instead
//! of sleeping. Normal builds have no such hook: the offset is the constant 0.

/// The wall clock, read only at the edges and passed down as `now`.
pub fn now() -> i64 {
    now_ms().div_euclid(1000)
}

/// The wall clock in milliseconds (for poll pacing).
pub fn now_ms() -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    wall.saturating_add(offset_ms())
}

#[cfg(not(feature = "test-clock"))]
const fn offset_ms() -> i64 {
    0
}

/// The test offset: read at every call (tests change it while the server runs).
#[cfg(feature = "test-clock")]
fn offset_ms() -> i64 {
    static FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| std::env::var_os("CIBA_TEST_CLOCK_FILE").map(Into::into))
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}
