//! Per-account routing snapshots, loaded on first use, refreshed after each write, evicted
//! under a memory budget.
//!
//! Lookups read the current snapshot (`Arc`) and never wait for a rebuild: a write builds the
//! next snapshot beside the current one and swaps it in before the write's response is sent
//! (read-your-writes on this node). Loads and refreshes of one account are serialised by a
//! per-account lock so an older state can never replace a newer one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};

use crate::store::{DynStore, KeyKind, StoreError, StoreResult};

use super::table::{CallflowKeys, RouteTable};

#[derive(Clone)]
struct TableWeight;

impl Weighter<String, Arc<RouteTable>> for TableWeight {
    fn weight(&self, _key: &String, table: &Arc<RouteTable>) -> u64 {
        table.weight()
    }
}

/// Default memory budget for cached snapshots.
pub const DEFAULT_BUDGET_BYTES: u64 = 512 * 1024 * 1024;

pub struct RouteCache {
    store: DynStore,
    tables: Cache<String, Arc<RouteTable>, TableWeight, hashbrown::DefaultHashBuilder>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped whenever any snapshot is installed or dropped (see [`RouteCache::version`]).
    version: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCache")
            .field("accounts", &self.tables.len())
            .field("bytes", &self.tables.weight())
            .finish()
    }
}

impl RouteCache {
    pub fn new(store: DynStore, budget_bytes: u64) -> Self {
        // One shard, so a single large account can use the whole budget.
        let options = OptionsBuilder::new()
            .estimated_items_capacity(10_000)
            .weight_capacity(budget_bytes)
            .shards(1)
            .build()
            .expect("static cache options are valid");
        Self {
            store,
            tables: Cache::with_options(
                options,
                TableWeight,
                Default::default(),
                Default::default(),
            ),
            locks: Mutex::new(HashMap::new()),
            version: Default::default(),
        }
    }

    fn lock_for(&self, account_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(account_id.to_string()).or_default().clone()
    }

    /// Gives back an account's lock once its holder is done: the map keeps only locks some
    /// task still holds or waits for, so it never outgrows the accounts in use.
    fn release(&self, account_id: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Clones are only taken under this mutex: two counts are the map's and ours.
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(account_id);
        }
    }

    /// Locks held or awaited right now (tests).
    pub fn pending_locks(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The cached snapshot, if any (no I/O).
    pub fn cached(&self, account_id: &str) -> Option<Arc<RouteTable>> {
        self.tables.get(account_id)
    }

    /// The account's snapshot, loading it from the store on a miss.
    pub async fn table(&self, account_id: &str) -> StoreResult<Arc<RouteTable>> {
        if let Some(t) = self.tables.get(account_id) {
            return Ok(t);
        }
        let lock = self.lock_for(account_id);
        let result = {
            let _guard = lock.lock().await;
            self.load(account_id).await
        };
        self.release(account_id, lock);
        result
    }

    async fn load(&self, account_id: &str) -> StoreResult<Arc<RouteTable>> {
        if let Some(t) = self.tables.get(account_id) {
            return Ok(t);
        }
        let started = Instant::now();
        let keys = self.store.route_keys(account_id).await?;
        let table = tokio::task::spawn_blocking(move || {
            let (mut numbers, mut patterns) = (Vec::new(), Vec::new());
            for k in keys {
                match k.kind {
                    KeyKind::Number => numbers.push((k.value, k.callflow_id)),
                    KeyKind::Pattern => patterns.push((k.value, k.callflow_id)),
                }
            }
            Arc::new(RouteTable::build(numbers, patterns))
        })
        .await
        .map_err(|e| StoreError::Other(e.into()))?;
        self.install(account_id, table.clone(), "load", started);
        Ok(table)
    }

    /// After a committed write of `callflow_id`: rebuild the account's snapshot with that
    /// callflow's committed keys. Does nothing when the account is not cached (the next lookup
    /// loads it fresh).
    pub async fn refresh(&self, account_id: &str, callflow_id: &str) -> StoreResult<()> {
        let lock = self.lock_for(account_id);
        let result = {
            let _guard = lock.lock().await;
            self.update(account_id, callflow_id).await
        };
        self.release(account_id, lock);
        result
    }

    async fn update(&self, account_id: &str, callflow_id: &str) -> StoreResult<()> {
        let Some(current) = self.tables.get(account_id) else {
            return Ok(());
        };
        let started = Instant::now();
        let (numbers, patterns) = self
            .store
            .callflow_route_keys(account_id, callflow_id)
            .await?;
        let keys = CallflowKeys {
            callflow_id: callflow_id.to_string(),
            numbers,
            patterns,
        };
        let next = tokio::task::spawn_blocking(move || Arc::new(current.with_changes(&[keys])))
            .await
            .map_err(|e| StoreError::Other(e.into()))?;
        self.install(account_id, next, "update", started);
        Ok(())
    }

    /// Changes whenever a snapshot is installed or dropped: an answer computed from snapshots
    /// after reading an equal version is still what they would give.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn bump(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many accounts have a snapshot in memory.
    pub fn cached_accounts(&self) -> usize {
        self.tables.len()
    }

    /// Install a snapshot built elsewhere (warm-up from a known state, benchmarks).
    pub fn preload(&self, account_id: &str, table: RouteTable) {
        self.install(account_id, Arc::new(table), "preload", Instant::now());
    }

    /// Forget one account's snapshot (the next lookup reloads it).
    pub fn invalidate(&self, account_id: &str) {
        self.tables.remove(account_id);
        self.bump();
        metrics::gauge!("callflowd_route_cache_accounts").set(self.tables.len() as f64);
    }

    /// Forget every snapshot (after losing track of changes, e.g. a dropped connection).
    pub fn invalidate_all(&self) {
        self.tables.clear();
        self.bump();
        metrics::gauge!("callflowd_route_cache_accounts").set(0.0);
    }

    fn install(
        &self,
        account_id: &str,
        table: Arc<RouteTable>,
        kind: &'static str,
        started: Instant,
    ) {
        self.tables.insert(account_id.to_string(), table);
        self.bump();
        metrics::counter!("callflowd_route_rebuilds_total", "kind" => kind).increment(1);
        metrics::histogram!("callflowd_route_rebuild_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("callflowd_route_cache_accounts").set(self.tables.len() as f64);
        metrics::gauge!("callflowd_route_cache_bytes").set(self.tables.weight() as f64);
    }
}
