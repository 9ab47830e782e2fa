//! A read-through memory cache in front of the embedded SQLite file: accounts, login users and
//! documents read by id (and the knowledge that an id is free) are served from memory after
//! their first read.
//!
//! Exact by construction: every write of this process goes through [`CachedStore`], which
//! forgets the written document once the write has ended (committed or not) and before the
//! write's caller hears back, so a reply to a write is never followed by an older read. A read
//! that raced with a write is never kept: reads note the write generation before going to the
//! store and drop what they cached if a write ended meanwhile (see [`Memo::fill`]).
//!
//! Other processes on the same file (`callflowd create-account`, `callflowd test`, which keeps
//! call-test results) open it through [`CachedStore::announcing`]: after each of their writes
//! ends they append a byte to a marker file beside the database (`<file>-writes`). The serving
//! process looks at the marker's length as each request begins ([`Store::sync_external`]: one
//! `stat`, no I/O on the database) and drops everything it holds when the length moved. A
//! request that begins after such a write was announced therefore reads it; one already under
//! way is concurrent with it and may see the state before, as it could without a cache.
//!
//! PostgreSQL is not wrapped: several nodes write to it, and knowing that a cached row is still
//! current would take a round trip per read, which is what a read costs already (see
//! BENCHMARKS.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};
use serde_json::{Map, Value};

use super::Draft;
use super::{
    detached, Account, AuditQuery, BatchWrite, CallflowWrite, Change, ChangeEvent, DocumentWrite,
    DraftWrite, DynStore, Revision, RevisionInfo, RouteKey, Store, StoreResult, StoredCallflow,
    User, WriteMeta,
};

/// How often a serving process looks at the marker file, at most.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(1);
/// How long an announcing process waits after announcing a write before reporting it done:
/// several times [`LOOK_EVERY`], so every request that begins afterwards sees it.
const ANNOUNCE_SETTLE: std::time::Duration = std::time::Duration::from_millis(5);

/// Write counters per account stripe (see [`Store::read_stamp`]).
const STRIPES: usize = 1024;

/// Default memory budget of the document cache.
pub const DEFAULT_BUDGET_BYTES: u64 = 256 * 1024 * 1024;

/// Approximate heap bytes of a JSON value (for the cache's budget; no serialisation).
pub fn json_weight(v: &Value) -> u64 {
    const NODE: u64 = 32;
    match v {
        Value::String(s) => NODE + s.len() as u64,
        Value::Array(a) => NODE + a.iter().map(json_weight).sum::<u64>(),
        Value::Object(m) => map_weight(m),
        _ => NODE,
    }
}

/// Approximate heap bytes of a JSON object (see [`json_weight`]).
pub fn map_weight(m: &Map<String, Value>) -> u64 {
    48 + m
        .iter()
        .map(|(k, v)| 32 + k.len() as u64 + json_weight(v))
        .sum::<u64>()
}

fn stored_weight(d: &StoredCallflow) -> u64 {
    64 + d.id.len() as u64 + d.rev.len() as u64 + map_weight(&d.doc)
}

#[derive(Clone)]
struct ByWeight<V>(fn(&V) -> u64);

impl<V> Weighter<String, V> for ByWeight<V> {
    fn weight(&self, key: &String, value: &V) -> u64 {
        key.len() as u64 + (self.0)(value)
    }
}

/// One cache of values by key, filled only by reads that no write overtook.
struct Memo<V: Clone> {
    cache: Cache<String, V, ByWeight<V>, hashbrown::DefaultHashBuilder>,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl<V: Clone> Memo<V> {
    fn new(name: &'static str, budget: u64, weight: fn(&V) -> u64) -> Self {
        let options = OptionsBuilder::new()
            .estimated_items_capacity(16_384)
            .weight_capacity(budget.max(1))
            .build()
            .expect("static cache options are valid");
        Self {
            cache: Cache::with_options(
                options,
                ByWeight(weight),
                Default::default(),
                Default::default(),
            ),
            hits: metrics::counter!("callflowd_document_cache_reads_total", "cache" => name, "result" => "hit"),
            misses: metrics::counter!("callflowd_document_cache_reads_total", "cache" => name, "result" => "miss"),
        }
    }

    fn get(&self, key: &str) -> Option<V> {
        let hit = self.cache.get(key);
        match hit {
            Some(_) => self.hits.increment(1),
            None => self.misses.increment(1),
        }
        hit
    }

    /// Keeps `value`, read from the store when the write generation was `generation`, unless
    /// a write ended since (its document may be the one read, from before the write).
    fn fill(&self, generation: &AtomicU64, seen: u64, key: String, value: &V) {
        if generation.load(Ordering::SeqCst) != seen {
            return;
        }
        self.cache.insert(key.clone(), value.clone());
        // A write that ended between the check and the insert may have forgotten the key
        // before it was inserted: look again, and drop it if so.
        if generation.load(Ordering::SeqCst) != seen {
            self.cache.remove(&key);
        }
    }

    fn forget(&self, key: &str) {
        self.cache.remove(key);
    }
}

/// The cache's key of a document of an account.
fn key(account_id: &str, id: &str) -> String {
    let mut k = String::with_capacity(account_id.len() + id.len() + 1);
    k.push_str(account_id);
    k.push('/');
    k.push_str(id);
    k
}

/// Each cache holds what the store answered, `None` (no such row) included.
struct Caches {
    /// Bumped when a write ends, before its keys are forgotten.
    generation: AtomicU64,
    /// Per account (striped by a hash of its id): bumped when a write of the account ends.
    /// Answers computed from many documents (listings) are stamped with it.
    stripes: Box<[AtomicU64]>,
    /// Bumped when another process's writes were noticed.
    external: AtomicU64,
    hasher: hashbrown::DefaultHashBuilder,
    accounts: Memo<Option<Arc<Account>>>,
    users: Memo<Option<Arc<User>>>,
    callflows: Memo<Option<StoredCallflow>>,
    documents: Memo<Option<(String, StoredCallflow)>>,
    /// Entries of [`Store::documents_by_ids`] (a flow's metadata).
    by_id: Memo<Option<(String, Map<String, Value>)>>,
}

impl Caches {
    /// A write of `id` in `account_id` ended (committed or not).
    ///
    /// The order matters. The generation moves first, so a read that began before the write
    /// ended cannot put the old document back after it is forgotten ([`Memo::fill`]). The
    /// account's stripe moves last, once nothing old is left to read, so a reply stamped with
    /// the new stripe value was computed from the new document.
    fn written(&self, account_id: &str, id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let k = key(account_id, id);
        self.users.forget(&k);
        self.callflows.forget(&k);
        self.documents.forget(&k);
        self.by_id.forget(&k);
        self.stripe(account_id).fetch_add(1, Ordering::SeqCst);
    }

    fn stripe(&self, account_id: &str) -> &AtomicU64 {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(account_id) as usize;
        &self.stripes[h % self.stripes.len()]
    }

    fn seen(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn clear(&self) {
        self.accounts.cache.clear();
        self.users.cache.clear();
        self.callflows.cache.clear();
        self.documents.cache.clear();
        self.by_id.cache.clear();
    }
}

/// The marker's length (0 when it does not exist yet).
fn marker_len(marker: &std::path::Path) -> u64 {
    std::fs::metadata(marker).map(|m| m.len()).unwrap_or(0)
}

/// Appends one byte to the marker. A failure is logged: the server beside us then serves
/// what it cached until its next restart, so it is worth an error line.
fn announce(marker: &std::path::Path) {
    use std::io::Write;
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(marker)
        .and_then(|mut f| f.write_all(b"."));
    if let Err(error) = appended {
        tracing::error!(%error, marker = %marker.display(), "could not announce a write to a server sharing the database");
    }
}

/// A store with its by-id reads cached in memory. See the module documentation for when this
/// is exact.
#[derive(Clone)]
pub struct CachedStore {
    inner: DynStore,
    caches: Arc<Caches>,
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    /// Serve reads from memory; drop them when the marker file's length moves.
    Cache {
        marker: Arc<std::path::PathBuf>,
        /// The marker's length when the caches were last known good.
        known: Arc<AtomicU64>,
        /// When the newest finished look at the marker began (microseconds since `epoch`).
        looked: Arc<AtomicU64>,
        epoch: std::time::Instant,
    },
    /// Cache nothing; append to the marker after each write (a tool beside a server).
    Announce { marker: Arc<std::path::PathBuf> },
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("documents", &self.caches.callflows.cache.len())
            .finish()
    }
}

impl CachedStore {
    /// Wraps `inner` with caches sharing `budget_bytes`; `None` when the store cannot be cached
    /// exactly (it has no marker file: several nodes write to it).
    pub fn serving(inner: DynStore, budget_bytes: u64) -> Option<Self> {
        let marker = inner.write_marker()?;
        let known = marker_len(&marker);
        Some(Self::build(
            inner,
            budget_bytes,
            Mode::Cache {
                marker: Arc::new(marker),
                known: Arc::new(AtomicU64::new(known)),
                looked: Arc::new(AtomicU64::new(0)),
                epoch: std::time::Instant::now(),
            },
        ))
    }

    /// Wraps the store of a process that writes beside a server (a command-line tool): nothing
    /// is cached, and each write is announced on the marker file. Stores without a marker are
    /// returned as they are.
    pub fn announcing(inner: DynStore) -> DynStore {
        match inner.write_marker() {
            Some(marker) => Arc::new(Self::build(
                inner,
                0,
                Mode::Announce {
                    marker: Arc::new(marker),
                },
            )),
            None => inner,
        }
    }

    fn build(inner: DynStore, budget_bytes: u64, mode: Mode) -> Self {
        // Documents take most of the budget; accounts and users are small and few.
        let small = (budget_bytes / 16).max(1);
        let docs = (budget_bytes - 2 * small.min(budget_bytes / 2)) / 3;
        Self {
            inner,
            mode,
            caches: Arc::new(Caches {
                generation: AtomicU64::new(0),
                stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
                external: AtomicU64::new(0),
                hasher: Default::default(),
                accounts: Memo::new("accounts", small, |a| {
                    a.as_ref()
                        .map_or(0, |a| 256 + map_weight(&a.doc) + 40 * a.tree.len() as u64)
                }),
                users: Memo::new("users", small, |u| {
                    u.as_ref().map_or(0, |u| {
                        256 + u.username.len() as u64 + u.md5_hash.len() as u64
                    })
                }),
                callflows: Memo::new("callflows", docs, |d| d.as_ref().map_or(0, stored_weight)),
                documents: Memo::new("documents", docs, |d| {
                    d.as_ref()
                        .map_or(0, |(t, d)| t.len() as u64 + stored_weight(d))
                }),
                by_id: Memo::new("metadata", docs, |v| {
                    v.as_ref()
                        .map_or(0, |(t, d)| t.len() as u64 + map_weight(d))
                }),
            }),
        }
    }

    /// A user, shared with the cache (no copy of it).
    async fn user_shared(&self, account_id: &str, id: &str) -> StoreResult<Option<Arc<User>>> {
        let load = async { Ok(self.inner.get_user(account_id, id).await?.map(Arc::new)) };
        self.read(&self.caches.users, key(account_id, id), load)
            .await
    }

    /// Whether reads may be served from memory (not in a tool's announcing store).
    fn cache_on(&self) -> bool {
        matches!(self.mode, Mode::Cache { .. })
    }

    /// After a write of this process ended: tell a server beside us, and give it the time to
    /// notice before the write is reported done.
    async fn announce(&self) {
        if let Mode::Announce { marker } = &self.mode {
            announce(marker);
            tokio::time::sleep(ANNOUNCE_SETTLE).await;
        }
    }

    /// A read through `memo`: from memory when cached, else from the store (and kept).
    async fn read<V, K, F>(&self, memo: &Memo<Option<V>>, key: K, load: F) -> StoreResult<Option<V>>
    where
        V: Clone,
        K: std::borrow::Borrow<str> + Into<String>,
        F: std::future::Future<Output = StoreResult<Option<V>>>,
    {
        if !self.cache_on() {
            return load.await;
        }
        if let Some(hit) = memo.get(key.borrow()) {
            return Ok(hit);
        }
        let seen = self.caches.seen();
        let found = load.await?;
        memo.fill(&self.caches.generation, seen, key.into(), &found);
        Ok(found)
    }

    /// Runs a write to its end on a task of its own, then forgets what it wrote: the
    /// forgetting happens even when the caller stops waiting.
    async fn write<T, F>(&self, account_id: &str, ids: Vec<String>, write: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = StoreResult<T>> + Send + 'static,
    {
        let this = self.clone();
        let account_id = account_id.to_string();
        detached(async move {
            let result = write.await;
            for id in &ids {
                this.caches.written(&account_id, id);
            }
            this.announce().await;
            result
        })
        .await
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn health(&self) -> StoreResult<()> {
        self.inner.health().await
    }

    async fn close(&self) {
        self.inner.close().await
    }

    fn write_marker(&self) -> Option<std::path::PathBuf> {
        self.inner.write_marker()
    }

    fn read_stamp(&self, account_id: &str) -> Option<super::ReadStamp> {
        self.cache_on().then(|| {
            super::ReadStamp(
                self.caches.external.load(Ordering::SeqCst),
                self.caches.stripe(account_id).load(Ordering::SeqCst),
            )
        })
    }

    /// Drops everything cached when another process announced a write since the last look.
    /// The marker is looked at most once per [`LOOK_EVERY`]; an announcing process waits
    /// [`ANNOUNCE_SETTLE`] (longer) after announcing before its write counts as done, so a
    /// request that begins after that still finds the announcement.
    fn sync_external(&self) -> bool {
        let mut found = false;
        if let Mode::Cache {
            marker,
            known,
            looked,
            epoch,
        } = &self.mode
        {
            // A look that began less than LOOK_EVERY ago and has finished (its clearing done)
            // saw every announcement older than ANNOUNCE_SETTLE: nothing to do.
            let at = epoch.elapsed().as_micros() as u64 + 1;
            if at.saturating_sub(looked.load(Ordering::SeqCst)) < LOOK_EVERY.as_micros() as u64 {
                return false;
            }
            let now = marker_len(marker);
            if now != known.load(Ordering::SeqCst) {
                // Same order as `Caches::written`: generation, forget, then the stamp.
                self.caches.generation.fetch_add(1, Ordering::SeqCst);
                self.caches.clear();
                self.caches.external.fetch_add(1, Ordering::SeqCst);
                known.store(now, Ordering::SeqCst);
                metrics::counter!("callflowd_document_cache_external_writes_total").increment(1);
                found = true;
            }
            looked.fetch_max(at, Ordering::SeqCst);
        }
        found
    }

    async fn create_account(
        &self,
        account: &Account,
        api_key: Option<(&str, &str)>,
        admin: Option<&User>,
    ) -> StoreResult<Account> {
        let created = self.inner.create_account(account, api_key, admin).await;
        self.caches.generation.fetch_add(1, Ordering::SeqCst);
        self.caches.accounts.forget(&account.id);
        if let Some(user) = admin {
            self.caches.written(&account.id, &user.id);
        }
        self.announce().await;
        created
    }

    async fn account_count(&self) -> StoreResult<i64> {
        self.inner.account_count().await
    }

    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        Ok(self.account_shared(id).await?.map(Arc::unwrap_or_clone))
    }

    async fn account_shared(&self, id: &str) -> StoreResult<Option<Arc<Account>>> {
        self.read(&self.caches.accounts, id, self.inner.account_shared(id))
            .await
    }

    async fn all_accounts(&self) -> StoreResult<Vec<Account>> {
        self.inner.all_accounts().await
    }

    async fn accounts_below(&self, id: &str, direct: bool) -> StoreResult<Vec<Account>> {
        self.inner.accounts_below(id, direct).await
    }

    async fn accounts_by_realm(&self, realm: &str) -> StoreResult<Vec<Account>> {
        self.inner.accounts_by_realm(realm).await
    }

    async fn accounts_by_name_key(&self, name_key: &str) -> StoreResult<Vec<Account>> {
        self.inner.accounts_by_name_key(name_key).await
    }

    async fn api_key_candidates(&self, prefix: &str) -> StoreResult<Vec<(Account, String)>> {
        self.inner.api_key_candidates(prefix).await
    }

    async fn login_users(&self, account_id: &str) -> StoreResult<Vec<User>> {
        self.inner.login_users(account_id).await
    }

    async fn get_user(&self, account_id: &str, id: &str) -> StoreResult<Option<User>> {
        Ok(self
            .user_shared(account_id, id)
            .await?
            .map(Arc::unwrap_or_clone))
    }

    async fn user_exists(&self, account_id: &str, id: &str) -> StoreResult<bool> {
        Ok(self.user_shared(account_id, id).await?.is_some())
    }

    async fn setting_or_init(&self, key: &str, value: &str) -> StoreResult<String> {
        self.inner.setting_or_init(key, value).await
    }

    async fn get_callflow(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCallflow>> {
        self.read(
            &self.caches.callflows,
            key(account_id, id),
            self.inner.get_callflow(account_id, id),
        )
        .await
    }

    async fn list_callflows(
        &self,
        account_id: &str,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>> {
        self.inner
            .list_callflows(account_id, start, limit, descending)
            .await
    }

    async fn write_callflow_as(&self, write: &CallflowWrite, meta: &WriteMeta) -> StoreResult<i64> {
        let (inner, w, m) = (self.inner.clone(), write.clone(), meta.clone());
        self.write(&write.account_id, vec![write.id.clone()], async move {
            inner.write_callflow_as(&w, &m).await
        })
        .await
    }

    async fn purge_as(
        &self,
        kind: &str,
        account_id: &str,
        id: &str,
        expected_rev: &str,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let inner = self.inner.clone();
        let (kind, a, i, rev, m) = (
            kind.to_string(),
            account_id.to_string(),
            id.to_string(),
            expected_rev.to_string(),
            meta.clone(),
        );
        self.write(account_id, vec![id.to_string()], async move {
            inner.purge_as(&kind, &a, &i, &rev, &m).await
        })
        .await
    }

    async fn callflows_with_number(
        &self,
        account_id: &str,
        number: &str,
    ) -> StoreResult<Vec<StoredCallflow>> {
        self.inner.callflows_with_number(account_id, number).await
    }

    async fn search_candidates(
        &self,
        account_id: &str,
        doc_type: &str,
        views: (&str, &str),
        prefix: &str,
    ) -> StoreResult<Vec<StoredCallflow>> {
        self.inner
            .search_candidates(account_id, doc_type, views, prefix)
            .await
    }

    async fn documents_owned_by(
        &self,
        account_id: &str,
        doc_type: &str,
        owner_id: &str,
    ) -> StoreResult<Vec<(StoredCallflow, bool)>> {
        self.inner
            .documents_owned_by(account_id, doc_type, owner_id)
            .await
    }

    async fn index_stored_documents(&self) -> StoreResult<()> {
        self.inner.index_stored_documents().await
    }

    fn subscribe_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ChangeEvent>> {
        self.inner.subscribe_changes()
    }

    async fn route_keys(&self, account_id: &str) -> StoreResult<Vec<RouteKey>> {
        self.inner.route_keys(account_id).await
    }

    async fn callflows_referencing(
        &self,
        account_id: &str,
        ref_id: &str,
    ) -> StoreResult<Vec<StoredCallflow>> {
        self.inner.callflows_referencing(account_id, ref_id).await
    }

    async fn documents_by_ids(
        &self,
        account_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<(String, String, Map<String, Value>)>> {
        if !self.cache_on() {
            return self.inner.documents_by_ids(account_id, ids).await;
        }
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.caches.by_id.get(&key(account_id, id)) {
                Some(Some((doc_type, doc))) => found.push((id.clone(), doc_type, doc)),
                Some(None) => {}
                None => missing.push(id.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let seen = self.caches.seen();
        let mut read: std::collections::HashMap<String, (String, Map<String, Value>)> = self
            .inner
            .documents_by_ids(account_id, &missing)
            .await?
            .into_iter()
            .map(|(id, doc_type, doc)| (id, (doc_type, doc)))
            .collect();
        // Every id asked for is kept, found or not (an id no document has is cached as such).
        for id in missing {
            let entry = read.remove(&id);
            self.caches
                .by_id
                .fill(&self.caches.generation, seen, key(account_id, &id), &entry);
            if let Some((doc_type, doc)) = entry {
                found.push((id, doc_type, doc));
            }
        }
        Ok(found)
    }

    async fn document_id_by_key(
        &self,
        account_id: &str,
        key_kind: &str,
        value: &str,
    ) -> StoreResult<Option<String>> {
        self.inner
            .document_id_by_key(account_id, key_kind, value)
            .await
    }

    async fn get_document(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<(String, StoredCallflow)>> {
        self.read(
            &self.caches.documents,
            key(account_id, id),
            self.inner.get_document(account_id, id),
        )
        .await
    }

    async fn list_documents(
        &self,
        account_id: &str,
        doc_type: &str,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>> {
        self.inner
            .list_documents(account_id, doc_type, start, limit, descending)
            .await
    }

    async fn write_document_as(&self, write: &DocumentWrite, meta: &WriteMeta) -> StoreResult<i64> {
        let (inner, w, m) = (self.inner.clone(), write.clone(), meta.clone());
        self.write(&write.account_id, vec![write.id.clone()], async move {
            inner.write_document_as(&w, &m).await
        })
        .await
    }

    async fn write_batch(
        &self,
        writes: Vec<BatchWrite>,
        meta: &WriteMeta,
    ) -> StoreResult<Vec<StoreResult<i64>>> {
        let this = self.clone();
        let meta = meta.clone();
        detached(async move {
            let written: Vec<(String, String)> = writes
                .iter()
                .map(|w| (w.account_id().to_string(), w.id().to_string()))
                .collect();
            let result = this.inner.write_batch(writes, &meta).await;
            for (account_id, id) in &written {
                this.caches.written(account_id, id);
            }
            this.announce().await;
            result
        })
        .await
    }

    async fn list_deleted(
        &self,
        account_id: &str,
        doc_type: Option<&str>,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>> {
        self.inner
            .list_deleted(account_id, doc_type, start, limit, descending)
            .await
    }

    async fn revisions(
        &self,
        account_id: &str,
        doc_id: &str,
        at_or_below: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RevisionInfo>> {
        self.inner
            .revisions(account_id, doc_id, at_or_below, limit)
            .await
    }

    async fn revision(
        &self,
        account_id: &str,
        doc_id: &str,
        number: i64,
    ) -> StoreResult<Option<Revision>> {
        self.inner.revision(account_id, doc_id, number).await
    }

    async fn prune_revisions(&self, before: i64) -> StoreResult<u64> {
        self.inner.prune_revisions(before).await
    }

    async fn changes_since(
        &self,
        account_id: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<Change>> {
        self.inner.changes_since(account_id, after, limit).await
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<Change>> {
        self.inner.audit(query).await
    }

    async fn get_draft(&self, account_id: &str, callflow_id: &str) -> StoreResult<Option<Draft>> {
        self.inner.get_draft(account_id, callflow_id).await
    }

    async fn list_drafts(&self, account_id: &str) -> StoreResult<Vec<Draft>> {
        self.inner.list_drafts(account_id).await
    }

    /// Drafts are not cached, and a draft changes no cached row.
    async fn write_draft(&self, write: &DraftWrite, meta: &WriteMeta) -> StoreResult<i64> {
        self.inner.write_draft(write, meta).await
    }

    async fn delete_draft(
        &self,
        account_id: &str,
        callflow_id: &str,
        expected_rev: &str,
        request_id: &str,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        self.inner
            .delete_draft(account_id, callflow_id, expected_rev, request_id, meta)
            .await
    }

    async fn callflow_route_keys(
        &self,
        account_id: &str,
        callflow_id: &str,
    ) -> StoreResult<(Vec<String>, Vec<String>)> {
        self.inner
            .callflow_route_keys(account_id, callflow_id)
            .await
    }
}
