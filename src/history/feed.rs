//! Following an account's change feed: the wake-up signal writers ring after each commit (this
//! node's writes, and other nodes' as their notifications arrive), and the reader that turns
//! feed positions into an ordered, gap-free stream of changes.
//!
//! Owns: the signal and the read loop's rules (read after the last position delivered, in
//! position order; wait for a wake-up or a poll tick when nothing is new). Must not know about
//! HTTP or SQL: the SSE endpoint renders what [`Follower::next`] returns, the store answers the
//! reads. Correctness never depends on a wake-up arriving: they only make the wait short; the
//! poll tick bounds it when one is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Change, DynStore, StoreResult};

/// Rings once per committed write that may have added to the feed.
#[derive(Clone, Debug)]
pub struct FeedSignal {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for FeedSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedSignal {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(0);
        Self { tx: Arc::new(tx) }
    }

    /// Something was committed: wake every follower.
    pub fn ring(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every ring from now on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

/// How long a follower waits for a wake-up before reading again anyway.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Changes read per round trip.
pub const BATCH: i64 = 500;

/// Reads an account's feed in position order from a position on. Positions are handed out in
/// commit order and without gaps (see docs/history.md), so "everything after the last one
/// delivered" never skips a change committed later with a smaller position, and never repeats
/// one.
pub struct Follower {
    store: DynStore,
    account_id: String,
    /// The last position delivered.
    pub last: i64,
    wake: watch::Receiver<u64>,
}

impl Follower {
    pub fn new(store: DynStore, signal: &FeedSignal, account_id: String, after: i64) -> Self {
        let mut wake = signal.subscribe();
        wake.mark_unchanged();
        Self {
            store,
            account_id,
            last: after,
            wake,
        }
    }

    /// The next changes after the last delivered one, waiting (until a wake-up or a poll tick,
    /// as often as needed) while there are none.
    pub async fn next(&mut self) -> StoreResult<Vec<Change>> {
        loop {
            // Subscribed before reading: a commit after the read rings a wake-up we will see.
            self.wake.mark_unchanged();
            let changes = self
                .store
                .changes_since(&self.account_id, self.last, BATCH)
                .await?;
            if let Some(last) = changes.last() {
                self.last = last.pos;
                return Ok(changes);
            }
            if let Ok(Err(_)) = tokio::time::timeout(POLL_EVERY, self.wake.changed()).await {
                // Nobody rings any more (the service is stopping): poll at the tick.
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    }
}
