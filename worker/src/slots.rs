//! The per-client cap on ping deliveries (`CIBA_PING_PER_CLIENT_CONCURRENCY`), per worker
//! process. A job whose client is at its cap does not wait here: the queue gives it back to
//! the database with a later `run_at` (see `queue::defer`), so it holds no worker slot and
//! the other clients' jobs behind it are claimed at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Deliveries in flight, per client: when each started.
pub struct ClientSlots {
    cap: usize,
    in_flight: Mutex<HashMap<String, Vec<Instant>>>,
}

/// One delivery's place under its client's cap; given back when dropped.
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    client: String,
    started: Instant,
}

impl ClientSlots {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            in_flight: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Instant>>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for `client`, or, when it is at its cap, how long its oldest delivery in
    /// flight has been running (how slow its receiver is: the caller waits longer for a
    /// slower one).
    pub fn try_take(self: &Arc<Self>, client: &str) -> Result<ClientSlot, Duration> {
        let mut map = self.lock();
        let now = Instant::now();
        let started = map.entry(client.to_owned()).or_default();
        if started.len() >= self.cap {
            let oldest = started.iter().min().copied().unwrap_or(now);
            return Err(now.saturating_duration_since(oldest));
        }
        started.push(now);
        Ok(ClientSlot {
            slots: self.clone(),
            client: client.to_owned(),
            started: now,
        })
    }

    /// Deliveries in flight for `client`.
    pub fn in_flight(&self, client: &str) -> usize {
        self.lock().get(client).map_or(0, Vec::len)
    }

    /// Clients with deliveries in flight (entries of idle clients are dropped).
    pub fn clients(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.slots.lock();
        if let Some(started) = map.get_mut(&self.client) {
            if let Some(i) = started.iter().position(|t| *t == self.started) {
                started.swap_remove(i);
            }
            if started.is_empty() {
                map.remove(&self.client);
            }
        }
    }
}

/// How far to push back a job whose client is at its cap: about as long as the client's
/// oldest delivery has been running (a hung receiver gets fewer, later re-checks; a busy
/// but quick one is re-checked within a second or two), at least 1 s and at most
/// `max_secs`. `run_at` has whole seconds: 1 s is the shortest push that makes the job due
/// no sooner than the next second, so a deferred job is claimed again at most once a second.
pub fn defer_secs(oldest_running: Duration, max_secs: i64) -> i64 {
    let running = i64::try_from(oldest_running.as_secs()).unwrap_or(i64::MAX);
    running.clamp(1, max_secs.max(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_per_client_and_slots_come_back() {
        let slots = ClientSlots::new(2);
        let a1 = slots.try_take("a").unwrap();
        let a2 = slots.try_take("a").unwrap();
        assert!(slots.try_take("a").is_err());
        // Another client is not held back by the first one's deliveries.
        let b1 = slots.try_take("b").unwrap();
        assert_eq!((slots.in_flight("a"), slots.in_flight("b")), (2, 1));
        drop(a1);
        let a3 = slots.try_take("a").unwrap();
        drop((a2, a3, b1));
        assert_eq!(slots.in_flight("a"), 0);
        assert_eq!(slots.clients(), 0);
    }

    #[test]
    fn a_saturated_client_reports_how_long_it_has_been_busy() {
        let slots = ClientSlots::new(1);
        let _held = slots.try_take("slow").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let busy = slots.try_take("slow").err().unwrap();
        assert!(busy >= Duration::from_millis(20));
    }

    #[test]
    fn deferral_grows_with_the_receivers_slowness_within_bounds() {
        assert_eq!(defer_secs(Duration::from_millis(30), 10), 1);
        assert_eq!(defer_secs(Duration::from_secs(4), 10), 4);
        assert_eq!(defer_secs(Duration::from_secs(60), 10), 10);
        assert_eq!(defer_secs(Duration::from_secs(60), 0), 1);
    }
}
