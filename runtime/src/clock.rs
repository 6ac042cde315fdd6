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
    wall_ms().saturating_add(offset_ms())
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
        .as_deref()
        .map_or(0, offset_in)
}

/// The milliseconds written in a test's offset file (0 when it is missing or unreadable).
#[cfg(feature = "test-clock")]
fn offset_in(path: &std::path::Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// A clock handed down to code that runs on behalf of another process's time (the worker's
/// `Ctx` holds one). The default reads the wall clock as [`now`] does; test builds can move
/// one by an offset file of their own, so an in-process worker runs on a test server's time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    #[cfg(feature = "test-clock")]
    offset_file: Option<std::sync::Arc<std::path::Path>>,
}

impl Clock {
    /// Seconds since the epoch.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        #[cfg(feature = "test-clock")]
        if let Some(path) = &self.offset_file {
            return wall_ms().saturating_add(offset_in(path));
        }
        now_ms()
    }

    /// The wall clock moved by the milliseconds written in `path` (read at every call).
    #[cfg(feature = "test-clock")]
    pub fn offset_by_file(path: &std::path::Path) -> Self {
        Self {
            offset_file: Some(path.into()),
        }
    }
}

#[cfg(all(test, feature = "test-clock"))]
mod tests {
    use super::Clock;

    #[test]
    fn an_offset_file_moves_only_its_own_clock() {
        let path = std::env::temp_dir().join(format!("ciba-clock-{}", std::process::id()));
        std::fs::write(&path, "3600000").unwrap();
        let moved = Clock::offset_by_file(&path);
        let wall = Clock::default();
        let ahead = moved.now() - wall.now();
        assert!((3599..=3601).contains(&ahead), "{ahead}");
        std::fs::write(&path, "not a number").unwrap();
        assert!((moved.now() - wall.now()).abs() <= 1);
        std::fs::remove_file(&path).unwrap();
    }
}
