//! A small pool of threads for password hashing (argon2), apart from the blocking pool that
//! runs database work, with a bounded queue. When every thread is busy and the queue is full,
//! a verification is refused at once ([`Busy`], answered 429) instead of waiting: a flood of
//! wrong secrets can use these threads, but never the ones that serve polls and `/readyz`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Every hashing thread is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is at capacity")]
pub struct Busy;

pub struct HashPool {
    jobs: SyncSender<Job>,
    /// Jobs queued or running, and how many that may be before a new one is refused.
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl HashPool {
    /// Start `threads` threads with room for `queue` waiting jobs. The threads end when the
    /// pool is dropped.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let threads = threads.max(1);
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("ciba-hash-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Self {
            jobs,
            in_flight: Arc::default(),
            capacity: threads + queue,
        })
    }

    /// Every thread busy and the queue full: a new job would be refused. Callers use it to
    /// refuse before doing work whose only use is a job (e.g. looking up an unknown client).
    pub fn saturated(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= self.capacity
    }

    /// At least half the capacity in use: what work nobody is waiting for (a dummy hash for
    /// a made-up client id) may not exceed, so registered clients always find room.
    pub fn half_full(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= self.capacity.div_ceil(2)
    }

    /// Queue `f` for a hashing thread, or refuse at once when full.
    pub fn submit<R, F>(&self, f: F) -> Result<oneshot::Receiver<R>, Busy>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let count = InFlight::enter(&self.in_flight);
        let job: Job = Box::new(move || {
            let _count = count;
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Run `f` on a hashing thread and wait for its result, or refuse at once when full.
    pub async fn run<R, F>(&self, f: F) -> Result<R, Busy>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        self.submit(f)?.await.map_err(|_| Busy)
    }
}

/// Counts a job from its submission until it has run or was dropped unrun.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        match job {
            // A panicking job fails its own caller (its sender is dropped), not the thread.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn runs_jobs_and_refuses_when_full() {
        let pool = HashPool::start(1, 1).unwrap();
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
        // Hold the only thread, fill the one queue slot: the next job is refused at once.
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel::<()>();
        let holder = pool
            .submit(move || {
                let _ = started_tx.send(());
                let _ = wait.recv();
                1
            })
            .unwrap();
        started.await.unwrap();
        let queued = pool.submit(|| 2).unwrap();
        assert!(pool.saturated());
        assert_eq!(pool.run(|| 3).await, Err(Busy));
        release.send(()).unwrap();
        assert_eq!(holder.await, Ok(1));
        assert_eq!(queued.await, Ok(2));
        // Free again.
        assert_eq!(pool.run(|| 5).await, Ok(5));
        assert!(!pool.saturated());
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let pool = HashPool::start(1, 4).unwrap();
        assert_eq!(pool.run(|| -> i32 { panic!("boom") }).await, Err(Busy));
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }
}
