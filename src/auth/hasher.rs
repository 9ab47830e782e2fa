//! A small fixed pool of threads for argon2 work (checking and hashing secrets).
//!
//! Each argon2 call takes about 19 MiB and tens of milliseconds of CPU. Run on tokio's blocking
//! pool, a flood of bad logins spreads them over hundreds of threads, each of which keeps its
//! own allocator arena: memory grows by gigabytes and stays there. Here at most `workers`
//! checks run at once, on the same few threads, and at most `queue` wait; past that the caller
//! is told to come back later (the API answers 429).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool is saturated: too many secrets are being checked already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many secret checks in progress")]
pub struct Busy;

#[derive(Debug)]
pub struct Hasher {
    jobs: SyncSender<Job>,
    pub workers: usize,
}

impl Hasher {
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("callflowd-hash-{i}"))
                .spawn(move || loop {
                    let job = {
                        let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
                        guard.recv()
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a hashing thread");
            }
        }
        Self { jobs, workers }
    }

    /// Runs `f` on the pool and waits for its result without blocking the async workers.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("callflowd_secret_checks_refused_total").increment(1);
                return Err(Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(Busy),
        }
        rx.await.map_err(|_| Busy)
    }
}

static POOL: OnceLock<Hasher> = OnceLock::new();

/// Sets the pool size; only the first call (before any use) has an effect.
pub fn configure(workers: usize) {
    let _ = POOL.get_or_init(|| Hasher::new(workers, workers * 32));
}

/// The process-wide pool (one thread per core unless [`configure`]d first).
pub fn pool() -> &'static Hasher {
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Hasher::new(cores, cores * 32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_refuses_past_its_queue() {
        let pool: &'static Hasher = Box::leak(Box::new(Hasher::new(1, 1)));
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
        // Block the only worker, fill the one queue slot, then the next is refused.
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let blocker = pool.run(move || {
            let _ = release_rx.recv();
        });
        let blocker = tokio::spawn(blocker);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let queued = tokio::spawn(pool.run(|| ()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let refused = pool.run(|| ()).await;
        assert_eq!(refused, Err(Busy));
        release_tx.send(()).unwrap();
        assert_eq!(queued.await.unwrap(), Ok(()));
        let _ = blocker.await;
    }
}
