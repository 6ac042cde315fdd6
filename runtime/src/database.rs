//! Waiting for the database at start: a process keeps retrying, with the cause in every log
//! line, while the database cannot be reached yet (PostgreSQL still starting, a pod not yet
//! scheduled), and stops at once, with the cause, on an error retrying cannot fix.

use ciba_store::connect::{probe, ConnectFailure};
use ciba_store::DatabaseUrl;
use std::time::Duration;

/// How long a process waits for an unreachable database before giving up.
pub const START_ATTEMPTS: u32 = 30;
const PAUSE: Duration = Duration::from_secs(2);

/// The message a process exits with.
pub fn unusable(f: &ConnectFailure) -> String {
    format!("cannot connect to the database: {}", f.message)
}

/// Return once the database answers; an error at once when it never will, or after
/// [`START_ATTEMPTS`] tries.
pub async fn wait_until_reachable(url: &DatabaseUrl) -> Result<(), String> {
    for attempt in 1..=START_ATTEMPTS {
        let u = url.clone();
        let result = tokio::task::spawn_blocking(move || probe(&u))
            .await
            .map_err(|e| e.to_string())?;
        match result {
            Ok(()) => return Ok(()),
            Err(f) if f.permanent => return Err(unusable(&f)),
            Err(f) if attempt == START_ATTEMPTS => return Err(unusable(&f)),
            Err(f) => {
                tracing::warn!(error = %f, attempt, "database unreachable at start; retrying");
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
    Err("database unreachable".into())
}
