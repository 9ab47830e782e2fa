//! Persistence: the [`Store`] trait and its SQLite and PostgreSQL backends.
//!
//! Owns: every SQL statement and transaction. Speaks domain terms (accounts, users,
//! callflow documents with revisions); never imports axum. Uniqueness of numbers and patterns
//! is the database's job (primary keys checked inside the write transaction), so two
//! concurrent writes can never both claim a number.

pub mod cached;
mod postgres;
mod sql;
mod sqlite;

pub use cached::CachedStore;
pub use postgres::PgStore;
pub use sql::{USER_MD5_HASH, USER_SHA1_HASH};
pub use sqlite::SqliteStore;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

/// An account as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub realm: Option<String>,
    pub parent_id: Option<String>,
    /// Ancestor ids, root first.
    pub tree: Vec<String>,
    pub superduper: bool,
    /// Public fields (name, realm, timezone, dial_plan, ...).
    pub doc: Map<String, Value>,
    /// Gregorian seconds.
    pub created: i64,
}

/// A user able to log in. Hashes are argon2 PHC strings.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub account_id: String,
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: bool,
    pub md5_hash: String,
    pub sha1_hash: String,
    /// The public fields its user document starts from when the store creates it with an
    /// account (the users schema's defaults applied); empty when read back.
    pub profile: Map<String, Value>,
}

/// A stored callflow document (private fields included).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCallflow {
    pub id: String,
    pub rev: String,
    pub deleted: bool,
    pub doc: Map<String, Value>,
}

/// What a write does, recorded in the revision history and the change feed (its `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
    /// Removed for good (`should_soft_delete=false`), its revisions with it.
    Purge,
    /// A new revision equal to an earlier one of a live document.
    Rollback,
    /// A soft-deleted document made live again from one of its revisions.
    Restore,
    /// A callflow draft made live.
    Publish,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
            ChangeOp::Purge => "purge",
            ChangeOp::Rollback => "rollback",
            ChangeOp::Restore => "restore",
            ChangeOp::Publish => "publish",
        }
    }
}

/// The revision number of a CouchDB-style rev (`N-hash`): its generation, counted per
/// document (0 when the rev has another shape).
pub fn rev_number(rev: &str) -> i64 {
    rev.split('-')
        .next()
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(0)
}

/// The document type the change feed and the audit give a callflow's draft.
pub const DRAFT_TYPE: &str = "callflow_draft";

/// How a write is recorded beyond the document itself: who made it and why, and whether it is
/// kept at all. The default records a full revision and a feed position, by nobody in
/// particular.
#[derive(Debug, Clone, Default)]
pub struct WriteMeta {
    /// The account of the credentials that wrote.
    pub auth_account_id: Option<String>,
    /// The user behind the token, if any.
    pub auth_user_id: Option<String>,
    /// The commit message (`commit_message` or `X-Commit-Message`).
    pub message: Option<String>,
    /// Run every statement and check of the write, then roll the transaction back
    /// (`?dry_run=true`): the answer is the real one, the store is left as it was.
    pub dry_run: bool,
    /// Revisions kept per document once the write is done (`None`: every one).
    pub keep_revisions: Option<u64>,
    /// Record the write as callflowd did before history existed: the revision and a change
    /// row, but no feed position and nobody and no message. Only for measuring what history
    /// costs (`benches/http.rs`); such changes are in neither the feed nor the audit.
    pub legacy_history: bool,
    /// A publish: the callflow's draft, which must still be at this rev, is removed in the same
    /// transaction ([`StoreError::Conflict`] when it moved or went).
    pub consume_draft: Option<String>,
}

/// One revision of a document, without its body.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionInfo {
    pub doc_id: String,
    pub doc_type: String,
    /// Per-document revision number (the generation of `rev`).
    pub number: i64,
    pub rev: String,
    /// The write's kind (`create`, `update`, `delete`, `rollback`, ...).
    pub op: String,
    pub request_id: Option<String>,
    pub auth_account_id: Option<String>,
    pub auth_user_id: Option<String>,
    pub message: Option<String>,
    /// Gregorian seconds.
    pub written_at: i64,
}

/// One revision of a document with its full body (private fields included).
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub info: RevisionInfo,
    pub doc: Map<String, Value>,
}

/// One committed write as the change feed and the audit show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Feed position: commit order, one apart (see docs/history.md).
    pub pos: i64,
    pub account_id: String,
    pub doc_type: String,
    pub doc_id: String,
    pub rev: String,
    /// The document's revision number after the write.
    pub number: Option<i64>,
    pub op: String,
    pub auth_account_id: Option<String>,
    pub auth_user_id: Option<String>,
    pub request_id: Option<String>,
    pub message: Option<String>,
    /// Gregorian seconds.
    pub written_at: i64,
}

/// What an audit read selects: the writes of an account and its descendants, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub account_id: String,
    /// Only this document type (`callflow`, `device`, ..., `callflow_draft`).
    pub doc_type: Option<String>,
    /// Only this document.
    pub doc_id: Option<String>,
    /// Only writes by this user.
    pub user_id: Option<String>,
    /// Written at or after (Gregorian seconds).
    pub from: Option<i64>,
    /// Written at or before (Gregorian seconds).
    pub to: Option<i64>,
    /// Feed positions at or below this one.
    pub at_or_before: Option<i64>,
    pub limit: i64,
}

/// A callflow's working draft.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub callflow_id: String,
    pub rev: String,
    /// The live revision the draft started from (`None`: the callflow does not exist yet).
    pub base_rev: Option<String>,
    pub doc: Map<String, Value>,
    /// Gregorian seconds.
    pub modified: i64,
}

/// A write of a callflow's draft.
#[derive(Debug, Clone)]
pub struct DraftWrite {
    pub account_id: String,
    pub callflow_id: String,
    /// `None`: a new draft (none may exist), else the draft's current rev.
    pub expected_rev: Option<String>,
    pub new_rev: String,
    pub base_rev: Option<String>,
    pub doc: Map<String, Value>,
    /// The draft is of a callflow that does not exist yet: its id must be free in the account.
    pub new_callflow: bool,
    pub request_id: String,
}

/// One callflow write: the new full document and its routing keys.
#[derive(Debug, Clone)]
pub struct CallflowWrite {
    pub account_id: String,
    pub id: String,
    /// `None` for a create (the id must be unused), else the revision the change is based on.
    pub expected_rev: Option<String>,
    pub new_rev: String,
    pub doc: Map<String, Value>,
    pub numbers: Vec<String>,
    pub patterns: Vec<String>,
    /// Ids of the documents the flow and metaflows name (kept while the callflow is live).
    pub references: Vec<String>,
    /// Soft delete: the doc is kept, its numbers and patterns are released.
    pub deleted: bool,
    pub op: ChangeOp,
    pub request_id: String,
    /// Most patterns the account may hold once this write is done (checked in the write
    /// transaction); `None`: no cap.
    pub max_account_patterns: Option<usize>,
}

/// One write of an account document other than a callflow (device, vmbox, menu, ...).
#[derive(Debug, Clone)]
pub struct DocumentWrite {
    pub account_id: String,
    pub id: String,
    /// The document type (`pvt_type`: `device`, `vmbox`, ...).
    pub doc_type: String,
    /// `None` for a create (the id must be unused in the account), else the revision the change
    /// is based on.
    pub expected_rev: Option<String>,
    pub new_rev: String,
    pub doc: Map<String, Value>,
    /// `(kind, value)` pairs the type keeps unique per account; released on delete.
    pub keys: Vec<(String, String)>,
    /// Soft delete: the doc is kept, its unique keys are released.
    pub deleted: bool,
    pub op: ChangeOp,
    pub request_id: String,
}

/// One write of [`Store::write_batch`].
#[derive(Debug, Clone)]
pub enum BatchWrite {
    Callflow(CallflowWrite),
    Document(DocumentWrite),
}

impl BatchWrite {
    pub fn account_id(&self) -> &str {
        match self {
            BatchWrite::Callflow(w) => &w.account_id,
            BatchWrite::Document(w) => &w.account_id,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            BatchWrite::Callflow(w) => &w.id,
            BatchWrite::Document(w) => &w.id,
        }
    }
}

/// A unique value another document of the account already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConflict {
    pub kind: String,
    pub value: String,
    pub doc_id: String,
}

/// Which routing key collided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Number,
    Pattern,
}

/// A number or pattern already held by another callflow of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueConflict {
    pub kind: KeyKind,
    pub value: String,
    pub callflow_id: String,
    /// The holder's name, or its id when it has none (Kazoo's message uses that).
    pub name: String,
}

/// A row of an account's routing index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    pub kind: KeyKind,
    pub value: String,
    pub callflow_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The document changed since `expected_rev`, or a create reused an id.
    #[error("conflicting documents")]
    Conflict,
    #[error("numbers or patterns already in use")]
    Unique(Vec<UniqueConflict>),
    /// An account's realm (case-insensitively) or normalised name is already used by another
    /// account: `(field, value)` pairs, realm first.
    #[error("account realm or name already in use")]
    Taken(Vec<(&'static str, String)>),
    /// Unique values of a document already held by other documents of the account.
    #[error("values already in use")]
    KeyTaken(Vec<KeyConflict>),
    /// The write would take the account past its pattern cap.
    #[error("the account would hold more than {limit} patterns")]
    TooManyPatterns { limit: usize },
    /// A statement broke a unique key (a concurrent writer got there first). The store turns
    /// it into [`StoreError::Conflict`] or [`StoreError::Unique`] where it expects one; anywhere
    /// else it is an internal error, like [`StoreError::Other`].
    #[error(transparent)]
    UniqueViolation(anyhow::Error),
    /// The database cannot be reached (pool timeout, I/O error).
    #[error("store unreachable: {0}")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            e @ (sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed) => StoreError::Unavailable(e.into()),
            sqlx::Error::Database(db) if is_unavailable(db.as_ref()) => {
                StoreError::Unavailable(sqlx::Error::Database(db).into())
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::UniqueViolation(sqlx::Error::Database(db).into())
            }
            other => StoreError::Other(other.into()),
        }
    }
}

/// Database errors that mean "the store cannot serve this now" rather than "this request is
/// wrong": they answer 503 and heal by themselves when the condition clears.
fn is_unavailable(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        // SQLSTATE classes: 08 connection exception, 53 insufficient resources (disk full, out
        // of memory, too many connections), 57P01-57P03 shutdown or not accepting connections,
        // 3D000 database gone, 42P01 table gone (database re-created empty), 25006 read-only
        // transaction (a standby), 40001/40P01 serialisation failure or deadlock.
        return code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || matches!(
                code.as_ref(),
                "3D000" | "42P01" | "25006" | "40001" | "40P01"
            );
    }
    // SQLite reports its extended result code; the primary code is the low byte:
    // 5 BUSY, 6 LOCKED, 8 READONLY, 10 IOERR, 13 FULL, 14 CANTOPEN, 1 with "no such table".
    match code.parse::<i64>().map(|c| c & 0xff) {
        Ok(5 | 6 | 8 | 10 | 13 | 14) => true,
        Ok(1) => db.message().starts_with("no such table"),
        _ => false,
    }
}

/// Test hook shared by both backends: while on, every write fails between its document write
/// and its revision write (the transaction then rolls back). Used by the history tests to show
/// a document and its revision are never visible one without the other.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch(Arc<std::sync::atomic::AtomicBool>);

impl FaultSwitch {
    pub fn set(&self, on: bool) {
        self.0.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Runs a store write to its end even if the request that asked for it is dropped (a client
/// that times out or resets): a transaction, once started, commits or rolls back on its own
/// task instead of being abandoned half-way.
pub(crate) async fn detached<T, F>(write: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = StoreResult<T>> + Send + 'static,
{
    tokio::spawn(write)
        .await
        .map_err(|e| StoreError::Other(anyhow::anyhow!("store write task failed: {e}")))?
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the service persists. Both backends pass the same conformance story
/// (`tests/api`), run against a temporary SQLite file and, when configured, PostgreSQL.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip on the read side.
    async fn ping(&self) -> StoreResult<()>;

    /// What `/healthz` reports: the store answers, its schema is there, and a write
    /// transaction can be opened now. Bounded in time; never holds the writer for long.
    async fn health(&self) -> StoreResult<()>;

    /// Closes every connection (shutdown); later calls fail with [`StoreError::Unavailable`].
    async fn close(&self);

    /// The file other processes sharing this database append to after each write, so a
    /// serving process may keep reads in memory ([`CachedStore`]): the embedded SQLite file's
    /// `<file>-writes`. `None` when nodes share the database (PostgreSQL) or nothing else can
    /// open it (in memory).
    fn write_marker(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// A stamp of the account's documents as this process knows them, for answers computed
    /// from many of them (listings) and kept in memory: an answer computed after taking a
    /// stamp is current while the account's stamp stays equal to it. `None` when the store
    /// cannot tell (every read then goes to the database).
    fn read_stamp(&self, _account_id: &str) -> Option<ReadStamp> {
        None
    }

    /// Called as each request begins: a caching store catches up with writes other processes
    /// announced (see [`CachedStore`]); true when it found some (what else this process keeps
    /// of the store, the route snapshots, must then be dropped too). Nothing to do for others.
    fn sync_external(&self) -> bool {
        false
    }

    /// Creates an account (and optionally its first user) in one transaction. When the store
    /// holds no account yet, the new one becomes the superduper (top-level admin) account;
    /// the returned account says whether it did.
    async fn create_account(
        &self,
        account: &Account,
        api_key: Option<(&str, &str)>,
        admin: Option<&User>,
    ) -> StoreResult<Account>;
    async fn account_count(&self) -> StoreResult<i64>;
    /// Every account, ordered by id (exports).
    async fn all_accounts(&self) -> StoreResult<Vec<Account>>;
    /// The accounts right below `id` (`direct`), or every account below it, ordered by name
    /// (case-insensitive), then id.
    async fn accounts_below(&self, id: &str, direct: bool) -> StoreResult<Vec<Account>>;
    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>>;
    /// An account, shared: a store that keeps accounts in memory hands out its own copy
    /// instead of a clone (the request path reads one or two per request).
    async fn account_shared(&self, id: &str) -> StoreResult<Option<std::sync::Arc<Account>>> {
        Ok(self.get_account(id).await?.map(std::sync::Arc::new))
    }
    async fn accounts_by_realm(&self, realm: &str) -> StoreResult<Vec<Account>>;
    async fn accounts_by_name_key(&self, name_key: &str) -> StoreResult<Vec<Account>>;
    /// Accounts whose API key starts with `prefix`, with the key's argon2 hash.
    async fn api_key_candidates(&self, prefix: &str) -> StoreResult<Vec<(Account, String)>>;

    /// Enabled users of an account, as login candidates.
    async fn login_users(&self, account_id: &str) -> StoreResult<Vec<User>>;
    async fn get_user(&self, account_id: &str, id: &str) -> StoreResult<Option<User>>;
    /// Whether the user exists (a token's owner check), without copying it.
    async fn user_exists(&self, account_id: &str, id: &str) -> StoreResult<bool> {
        Ok(self.get_user(account_id, id).await?.is_some())
    }

    /// The stored value of `key`, setting it to `value` first if it has none (atomic, so
    /// every node ends up with the same value).
    async fn setting_or_init(&self, key: &str, value: &str) -> StoreResult<String>;

    /// A callflow by id, soft-deleted ones included.
    async fn get_callflow(&self, account_id: &str, id: &str)
        -> StoreResult<Option<StoredCallflow>>;
    /// Live callflows ordered by id, starting at `start` (inclusive), at most `limit`.
    async fn list_callflows(
        &self,
        account_id: &str,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>>;
    /// Writes a document, its routing keys, a revision and a change record atomically. A
    /// create fails with [`StoreError::Conflict`] when any document of the account has the id.
    /// Returns the change's position in the change feed.
    async fn write_callflow(&self, write: &CallflowWrite) -> StoreResult<i64> {
        self.write_callflow_as(write, &WriteMeta::default()).await
    }
    /// [`Store::write_callflow`], recorded as `meta` says (a dry run commits nothing).
    async fn write_callflow_as(&self, write: &CallflowWrite, meta: &WriteMeta) -> StoreResult<i64>;
    /// Hard delete (Kazoo's `should_soft_delete=false`); returns the change's feed position.
    async fn purge_callflow(
        &self,
        account_id: &str,
        id: &str,
        expected_rev: &str,
    ) -> StoreResult<i64> {
        self.purge_as(
            "callflow",
            account_id,
            id,
            expected_rev,
            &WriteMeta::default(),
        )
        .await
    }
    /// Removes a document for good (`kind`: `callflow`, or any other document), with its
    /// revisions (and a callflow's draft); the change feed records the purge. Returns the
    /// change's feed position.
    async fn purge_as(
        &self,
        kind: &str,
        account_id: &str,
        id: &str,
        expected_rev: &str,
        meta: &WriteMeta,
    ) -> StoreResult<i64>;
    /// Live callflows holding exactly `number`.
    async fn callflows_with_number(
        &self,
        account_id: &str,
        number: &str,
    ) -> StoreResult<Vec<StoredCallflow>>;
    /// Live documents of `doc_type` (a `pvt_type`; `callflow` reads the callflows) with a
    /// search key in either of `views` (`name`, `number`) that starts with `prefix`
    /// (non-empty ASCII), ordered by id. See [`crate::domain::search::index_keys`].
    async fn search_candidates(
        &self,
        account_id: &str,
        doc_type: &str,
        views: (&str, &str),
        prefix: &str,
    ) -> StoreResult<Vec<StoredCallflow>>;
    /// Live documents of `doc_type` (a `pvt_type`) that `owner_id` owns or is hot-desked into
    /// (the flag), ordered by id: Kazoo's `devices/listing_by_owner`.
    async fn documents_owned_by(
        &self,
        account_id: &str,
        doc_type: &str,
        owner_id: &str,
    ) -> StoreResult<Vec<(StoredCallflow, bool)>>;
    /// Builds the indexes added after documents were stored (search keys, owners), once per
    /// database.
    async fn index_stored_documents(&self) -> StoreResult<()>;
    /// Changes committed by other processes, pushed as they commit (`None` when the backend
    /// has no push channel; SQLite is single-node). After any gap in the feed (a lost
    /// connection) a [`ChangeEvent::Resync`] is sent: every cache must then be dropped.
    fn subscribe_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ChangeEvent>>;
    /// The whole routing index of an account.
    async fn route_keys(&self, account_id: &str) -> StoreResult<Vec<RouteKey>>;
    /// Live callflows whose flow or metaflows name `ref_id`, ordered by id.
    async fn callflows_referencing(
        &self,
        account_id: &str,
        ref_id: &str,
    ) -> StoreResult<Vec<StoredCallflow>>;
    /// The documents with these ids, whatever their kind (callflows, users, other documents;
    /// soft-deleted ones included), in one query: `(id, pvt_type, document)`. A user's
    /// document carries its `first_name` and `last_name`.
    async fn documents_by_ids(
        &self,
        account_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<(String, String, Map<String, Value>)>>;
    /// The live document holding a unique value (`key_kind` is the rule's field, e.g.
    /// `sip.username`; `value` as the rule normalises it), if any.
    async fn document_id_by_key(
        &self,
        account_id: &str,
        key_kind: &str,
        value: &str,
    ) -> StoreResult<Option<String>>;
    /// An account document (any type but callflows and login users), soft-deleted ones
    /// included, with its type.
    async fn get_document(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<(String, StoredCallflow)>>;
    /// Live documents of one type ordered by id, starting at `start` (inclusive), at most
    /// `limit`.
    async fn list_documents(
        &self,
        account_id: &str,
        doc_type: &str,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>>;
    /// Writes a document, its unique keys and a revision atomically. A create fails with
    /// [`StoreError::Conflict`] when the id is used by any document of the account (callflows
    /// and users included).
    async fn write_document(&self, write: &DocumentWrite) -> StoreResult<()> {
        self.write_document_as(write, &WriteMeta::default())
            .await
            .map(|_| ())
    }
    /// [`Store::write_document`], recorded as `meta` says; returns the feed position.
    async fn write_document_as(&self, write: &DocumentWrite, meta: &WriteMeta) -> StoreResult<i64>;
    /// Writes in order in one transaction (bulk imports): each write in a savepoint of its
    /// own, seeing the writes before it, so the batch does exactly what the same writes one by
    /// one would. A write refused by its own checks ([`StoreError::Conflict`], a clash, the
    /// pattern cap) gets its error in the answer and the others go on; any other failure rolls
    /// the whole batch back and is the outer error. One commit (one fsync) for the batch; a dry
    /// run rolls it back at the end. The answer has one result per write, in order.
    async fn write_batch(
        &self,
        writes: Vec<BatchWrite>,
        meta: &WriteMeta,
    ) -> StoreResult<Vec<StoreResult<i64>>>;
    /// Hard delete of a document.
    async fn purge_document(
        &self,
        account_id: &str,
        id: &str,
        expected_rev: &str,
    ) -> StoreResult<()> {
        self.purge_as(
            "document",
            account_id,
            id,
            expected_rev,
            &WriteMeta::default(),
        )
        .await
        .map(|_| ())
    }
    /// Soft-deleted documents of one type (`None`: callflows) ordered by id, starting at
    /// `start` (inclusive), at most `limit`.
    async fn list_deleted(
        &self,
        account_id: &str,
        doc_type: Option<&str>,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>>;
    /// A document's revisions, newest first: those numbered at most `at_or_below` (all when
    /// `None`), at most `limit`.
    async fn revisions(
        &self,
        account_id: &str,
        doc_id: &str,
        at_or_below: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RevisionInfo>>;
    /// One revision of a document, with its body.
    async fn revision(
        &self,
        account_id: &str,
        doc_id: &str,
        number: i64,
    ) -> StoreResult<Option<Revision>>;
    /// Removes revisions written before `before` (Gregorian seconds), except each document's
    /// latest; returns how many went.
    async fn prune_revisions(&self, before: i64) -> StoreResult<u64>;
    /// The changes of an account after feed position `after`, in feed (commit) order, at most
    /// `limit`.
    async fn changes_since(
        &self,
        account_id: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<Change>>;
    /// The writes an audit asks for, newest first.
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<Change>>;
    /// A callflow's draft.
    async fn get_draft(&self, account_id: &str, callflow_id: &str) -> StoreResult<Option<Draft>>;
    /// Every draft of an account, ordered by callflow id.
    async fn list_drafts(&self, account_id: &str) -> StoreResult<Vec<Draft>>;
    /// Saves a draft ([`StoreError::Conflict`] when it moved, exists already on a create, or a
    /// new callflow's id is taken); records the change. Returns the feed position.
    async fn write_draft(&self, write: &DraftWrite, meta: &WriteMeta) -> StoreResult<i64>;
    /// Discards a draft at `expected_rev`; records the change.
    async fn delete_draft(
        &self,
        account_id: &str,
        callflow_id: &str,
        expected_rev: &str,
        request_id: &str,
        meta: &WriteMeta,
    ) -> StoreResult<i64>;
    /// The committed numbers and patterns of one callflow (empty when deleted).
    async fn callflow_route_keys(
        &self,
        account_id: &str,
        callflow_id: &str,
    ) -> StoreResult<(Vec<String>, Vec<String>)>;
}

pub type DynStore = Arc<dyn Store>;

/// See [`Store::read_stamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStamp(pub u64, pub u64);

/// What another node changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A callflow of an account was written (created, changed, deleted).
    Changed {
        account_id: String,
        callflow_id: String,
    },
    /// Another document of an account was written (`doc_type`: `device`, `user`, ...).
    Document {
        account_id: String,
        doc_type: String,
        id: String,
    },
    /// Changes may have been missed: drop every cache.
    Resync,
}

/// Opens the store a URL names (`sqlite://path` or `postgres://...`), creating and migrating
/// it as needed.
pub async fn open(url: &str) -> anyhow::Result<DynStore> {
    let store: DynStore = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(PgStore::connect(url).await?)
    } else if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::connect(url).await?)
    } else {
        anyhow::bail!(
            "unsupported database URL {:?}: use sqlite://PATH or postgres://...",
            crate::config::redacted_url(url)
        )
    };
    store.index_stored_documents().await?;
    Ok(store)
}

/// [`open`] for a command-line tool that may write beside a running server: its writes are
/// announced to the server's cache ([`CachedStore::announcing`]).
pub async fn open_tool(url: &str) -> anyhow::Result<DynStore> {
    Ok(CachedStore::announcing(open(url).await?))
}
