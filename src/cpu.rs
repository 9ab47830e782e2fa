//! CPU-heavy request work (schema validation, pattern compilation, simulations: proportional
//! to a body of up to the size limit) kept off the async workers. Owns the gate; knows nothing
//! of HTTP or the store.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

/// Runs `f` on the blocking pool, with at most one such job per core but one at a time, so a
/// flood of large bodies queues here instead of taking every core from the async workers that
/// serve everyone else. The job finishes even if the caller is dropped, and keeps its slot
/// until it does. The caller's span follows the work.
pub async fn offload<T, F>(f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    static GATE: OnceLock<Arc<Semaphore>> = OnceLock::new();
    let gate = GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Arc::new(Semaphore::new(cores.saturating_sub(1).max(1)))
    });
    let permit = gate.clone().acquire_owned().await?;
    let span = tracing::Span::current();
    Ok(tokio::task::spawn_blocking(move || {
        let _permit = permit;
        span.in_scope(f)
    })
    .await?)
}
