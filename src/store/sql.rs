//! The SQL both backends share. The statements use `$n` placeholders, which SQLite and
//! PostgreSQL both accept, so they are written once here as `const` strings, and the
//! [`super::Store`] implementation is written once, generic over a [`Backend`]: the backend
//! supplies its pools, how it opens a write transaction, its locks, its change notification
//! and the statements only it speaks (JSON aggregation).

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type,
};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{
    detached, rev_number, Account, AuditQuery, BatchWrite, CallflowWrite, Change, ChangeEvent,
    DocumentWrite, Draft, DraftWrite, KeyConflict, KeyKind, Revision, RevisionInfo, RouteKey,
    Store, StoreError, StoreResult, StoredCallflow, UniqueConflict, User, WriteMeta, DRAFT_TYPE,
};
use crate::domain::{now_gregorian, numbers::search_key, owners, search};

/// What a backend adds to the shared SQL.
#[async_trait]
pub(super) trait Backend: Clone + Send + Sync + 'static {
    type Db: Database;

    /// `callflow_id` and `route_keys` (a JSON array text of the callflow's numbers) per
    /// callflow of the account `$1`.
    const NUMBER_KEYS: &'static str;
    /// The same for patterns.
    const PATTERN_KEYS: &'static str;
    /// The driver runs several statements sent as one query, binding `$N` across them
    /// (SQLite): a write's inserts then cost one round trip ([`Deferred`]).
    const JOINS_STATEMENTS: bool = false;

    /// The pool reads use.
    fn read(&self) -> &Pool<Self::Db>;
    /// The pool write transactions use.
    fn write(&self) -> &Pool<Self::Db>;
    /// Opens a write transaction on [`Backend::write`].
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
    /// Tells other processes, when the transaction commits, that a document (of `doc_type`:
    /// `callflow`, `device`, ...) changed.
    async fn announce(
        &self,
        tx: &mut <Self::Db as Database>::Connection,
        account_id: &str,
        doc_type: &str,
        id: &str,
        seq: i64,
    ) -> Result<(), sqlx::Error>;
    /// Serialises account creation for the rest of the transaction.
    async fn lock_accounts(
        &self,
        tx: &mut <Self::Db as Database>::Connection,
    ) -> Result<(), sqlx::Error>;
    /// Serialises pattern-adding writes of one account for the rest of the transaction.
    async fn lock_account_patterns(
        &self,
        tx: &mut <Self::Db as Database>::Connection,
        account_id: &str,
    ) -> Result<(), sqlx::Error>;
    /// Fails with [`StoreError::Unavailable`] when the transaction cannot write.
    async fn check_writable(
        &self,
        tx: &mut <Self::Db as Database>::Connection,
    ) -> Result<(), StoreError>;
    /// See [`Store::subscribe_changes`].
    fn change_events(&self) -> Option<UnboundedReceiver<ChangeEvent>>;
    /// See [`Store::write_marker`].
    fn write_marker(&self) -> Option<std::path::PathBuf>;
    /// Where document writes queue for a group commit ([`GroupCommit`]); `None` when each
    /// write commits on its own (PostgreSQL commits concurrent transactions in parallel and
    /// groups their WAL flushes itself).
    fn group_commit(&self) -> Option<&GroupCommit>;
    /// Test hook: when set, every write fails after its document is written and before its
    /// revision is, proving the two commit or vanish together (see `FaultSwitch`).
    fn fail_revision_writes(&self) -> bool;
    /// The last step of a write transaction: records the change with the next feed position
    /// and announces it to other processes. The position comes from the `feed` row
    /// ([`NEXT_POSITION`]), whose lock is held until the transaction ends, so every other
    /// writer waits for it: the backend takes it as late as it can (SQLite here, PostgreSQL
    /// inside the commit). Returns the position, or the change's row id when the position is
    /// only taken at commit.
    async fn feed_step(
        &self,
        tx: &mut <Self::Db as Database>::Connection,
        entry: &FeedEntry<'_>,
    ) -> Result<i64, sqlx::Error>;
}

/// A committed write as the change feed records it (see [`Backend::feed_step`]).
pub(super) struct FeedEntry<'a> {
    pub account_id: &'a str,
    pub doc_id: &'a str,
    pub doc_type: &'a str,
    pub rev: &'a str,
    pub op: &'a str,
    pub now: i64,
    pub number: i64,
    pub auth_account_id: Option<&'a str>,
    pub auth_user_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// Pool hook (before a connection is handed out and after it is given back): a connection
/// that still counts an open transaction is discarded and replaced. That happens when a future
/// was dropped half-way through a transaction, or when the database rolled a transaction back
/// by itself (SQLite does on a full disk) so the driver's count and the database disagree;
/// reusing such a connection would fail every later `BEGIN`. (A connection whose dropped
/// transaction's rollback is still queued is discarded too: rare now that writes run to their
/// end in tasks of their own, and cheaper than a round trip on every release.)
pub(super) fn discard_if_in_transaction<C: sqlx::Connection>(
    conn: &mut C,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if conn.is_in_transaction() {
            tracing::warn!("discarding a database connection left inside a transaction");
            return Ok(false);
        }
        Ok(true)
    })
}

/// How long `/healthz` waits for the store before calling it unreachable.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

const DELETE_REFERENCES: &str =
    "DELETE FROM callflow_references WHERE account_id = $1 AND callflow_id = $2";
const INSERT_REFERENCES: &str =
    "INSERT INTO callflow_references (account_id, callflow_id, ref_id) VALUES ";
const CALLFLOWS_REFERENCING: &str = "SELECT c.id, c.rev, c.deleted, c.doc FROM callflows c \
     WHERE c.account_id = $1 AND c.deleted = 0 AND c.id IN \
     (SELECT callflow_id FROM callflow_references WHERE account_id = $1 AND ref_id = $2) ORDER BY c.id";
/// Head of the by-ids lookup; the id list (`$2`...) is appended three times by
/// [`documents_by_ids_statement`].
fn documents_by_ids_statement(count: usize) -> String {
    let list = placeholders(2, count);
    format!(
        "SELECT id, 'callflow' AS doc_type, doc FROM callflows WHERE account_id = $1 AND id IN ({list}) \
         UNION ALL SELECT id, doc_type, doc FROM documents WHERE account_id = $1 AND id IN ({list}) \
         UNION ALL SELECT id, 'user' AS doc_type, doc FROM users WHERE account_id = $1 AND id IN ({list})"
    )
}
const USER_NAMES: &str =
    "SELECT id, first_name, last_name FROM users WHERE account_id = $1 AND id = $2";
const DOCUMENT_BY_ID: &str =
    "SELECT id, doc_type, rev, deleted, doc FROM documents WHERE account_id = $1 AND id = $2";
const DOCUMENT_REV: &str = "SELECT rev FROM documents WHERE account_id = $1 AND id = $2";
const DOCUMENT_REV_AND_TYPE: &str =
    "SELECT rev, doc_type FROM documents WHERE account_id = $1 AND id = $2";
const LIST_DOCUMENTS_ASC: &str = "SELECT id, rev, deleted, doc FROM documents \
     WHERE account_id = $1 AND doc_type = $3 AND deleted = 0 ORDER BY id ASC LIMIT $2";
const LIST_DOCUMENTS_DESC: &str = "SELECT id, rev, deleted, doc FROM documents \
     WHERE account_id = $1 AND doc_type = $3 AND deleted = 0 ORDER BY id DESC LIMIT $2";
const LIST_DOCUMENTS_FROM_ASC: &str = "SELECT id, rev, deleted, doc FROM documents \
     WHERE account_id = $1 AND doc_type = $3 AND deleted = 0 AND id >= $4 ORDER BY id ASC LIMIT $2";
const LIST_DOCUMENTS_FROM_DESC: &str = "SELECT id, rev, deleted, doc FROM documents \
     WHERE account_id = $1 AND doc_type = $3 AND deleted = 0 AND id <= $4 ORDER BY id DESC LIMIT $2";
const UPSERT_DOCUMENT: &str = "INSERT INTO documents \
     (account_id, id, doc_type, rev, deleted, doc, modified) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (account_id, id) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted, \
     doc = excluded.doc, modified = excluded.modified";
const DELETE_DOCUMENT: &str = "DELETE FROM documents WHERE account_id = $1 AND id = $2";
const DELETE_DOCUMENT_KEYS: &str =
    "DELETE FROM document_keys WHERE account_id = $1 AND doc_id = $2";
const INSERT_DOCUMENT_KEY: &str =
    "INSERT INTO document_keys (account_id, key_kind, value, doc_id) VALUES ($1, $2, $3, $4)";
const DOCUMENT_BY_KEY: &str = "SELECT doc_id FROM document_keys \
     WHERE account_id = $1 AND key_kind = $2 AND value = $3";
const DOCUMENT_KEY_HOLDER: &str = "SELECT doc_id FROM document_keys \
     WHERE account_id = $1 AND key_kind = $2 AND value = $3 AND doc_id <> $4";
const ID_IN_USE: &str =
    "SELECT (SELECT COUNT(*) FROM documents WHERE account_id = $1 AND id = $2) \
     + (SELECT COUNT(*) FROM callflows WHERE account_id = $1 AND id = $2) \
     + (SELECT COUNT(*) FROM users WHERE account_id = $1 AND id = $2) \
     + (SELECT COUNT(*) FROM accounts WHERE id = $1 AND id = $2)";

/// Rows per multi-row statement (4 parameters each stays far below both backends' limits).
const CHUNK: usize = 500;

/// Most parameters one joined query binds (SQLite numbers them up to 32,766).
const JOINED_PARAMETERS: usize = 30_000;

/// A value a deferred statement binds.
#[derive(Clone)]
enum Arg<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    /// A value computed for the statement (a search key).
    Owned(String),
}

/// The statements of a write that answer nothing (its inserts, index rows, revision), kept
/// until something needs their effect, then sent together: on a backend that takes several
/// statements in one query ([`Backend::JOINS_STATEMENTS`]) as one query, with each
/// statement's `$N` shifted past the parameters before it; elsewhere one by one, as written.
/// Each statement on SQLite is a round trip to the driver's worker thread, and the writer's
/// throughput is bounded by those round trips (BENCHMARKS.md).
#[derive(Default)]
struct Deferred<'a> {
    statements: Vec<(String, Vec<Arg<'a>>)>,
}

impl<'a> Deferred<'a> {
    fn push(&mut self, statement: impl Into<String>, args: Vec<Arg<'a>>) {
        self.statements.push((statement.into(), args));
    }

    /// `INSERT ... VALUES` (`head`) of one row per item, `CHUNK` rows a statement.
    fn push_rows<'b, T, const W: usize>(
        &mut self,
        head: &str,
        items: &'b [T],
        row: impl Fn(&'b T) -> [Arg<'a>; W],
    ) {
        for chunk in items.chunks(CHUNK) {
            let args = chunk.iter().flat_map(&row).collect();
            self.push(format!("{head}{}", value_rows(chunk.len(), W)), args);
        }
    }
}

/// `statement` with every `$N` placeholder shifted by `by`, appended to `out`.
fn shift_placeholders(statement: &str, by: usize, out: &mut String) {
    let bytes = statement.as_bytes();
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if let Ok(n) = statement[start..end].parse::<usize>() {
                out.push_str(&statement[copied..start]);
                out.push_str(&(n + by).to_string());
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&statement[copied..]);
}

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

const PING: &str = "SELECT 1";
const HEALTH_READ: &str = "SELECT 1 FROM accounts LIMIT 1";
const HEALTH_WRITE: &str = "SELECT 1 FROM changes LIMIT 1";

const ACCOUNT_COUNT: &str = "SELECT COUNT(*) FROM accounts";
const ACCOUNT_BY_ID: &str = "SELECT id, name, realm, parent_id, tree, superduper, doc, created \
     FROM accounts WHERE id = $1";
const ACCOUNTS_BY_REALM: &str =
    "SELECT id, name, realm, parent_id, tree, superduper, doc, created \
     FROM accounts WHERE lower(realm) = lower($1)";
const ACCOUNTS_BY_NAME_KEY: &str =
    "SELECT id, name, realm, parent_id, tree, superduper, doc, created \
     FROM accounts WHERE name_key = $1 ORDER BY id";
// `tree` is the JSON array of ancestor ids: an account is below `id` when `id` is in it.
const ACCOUNT_CHILDREN: &str = "SELECT id, name, realm, parent_id, tree, superduper, doc, created \
     FROM accounts WHERE parent_id = $1 ORDER BY lower(name), id";
const ACCOUNT_DESCENDANTS: &str =
    "SELECT id, name, realm, parent_id, tree, superduper, doc, created \
     FROM accounts WHERE tree LIKE '%\"' || $1 || '\"%' ORDER BY lower(name), id";
const ALL_ACCOUNTS: &str = "SELECT id, name, realm, parent_id, tree, superduper, doc, created \
     FROM accounts ORDER BY id";
const API_KEY_CANDIDATES: &str =
    "SELECT id, name, realm, parent_id, tree, superduper, doc, created, \
     api_key_hash FROM accounts WHERE api_key_prefix = $1 AND api_key_hash IS NOT NULL";
const REALM_TAKEN: &str = "SELECT id FROM accounts WHERE lower(realm) = lower($1) LIMIT 1";
const NAME_TAKEN: &str = "SELECT id FROM accounts WHERE name_key = $1 LIMIT 1";
const INSERT_ACCOUNT: &str = "INSERT INTO accounts \
     (id, name, name_key, realm, parent_id, tree, superduper, api_key_prefix, api_key_hash, doc, created) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const LOGIN_USERS: &str = "SELECT id, account_id, username, first_name, last_name, enabled, \
     md5_hash, sha1_hash FROM users WHERE account_id = $1 AND enabled = 1 ORDER BY id";
const USER_BY_ID: &str = "SELECT id, account_id, username, first_name, last_name, enabled, \
     md5_hash, sha1_hash FROM users WHERE account_id = $1 AND id = $2";

const USER_DOCUMENTS: &str = "SELECT id, doc FROM documents \
     WHERE account_id = $1 AND doc_type = 'user' AND deleted = 0 ORDER BY id";
/// Private fields of a user document holding argon2 hashes of Kazoo's md5 and sha1 credential
/// strings (`pvt_md5_auth` / `pvt_sha1_auth` hold the bare digests in Kazoo).
pub const USER_MD5_HASH: &str = "pvt_md5_auth_hash";
pub const USER_SHA1_HASH: &str = "pvt_sha1_auth_hash";

/// A user document as a login candidate: enabled (Kazoo's view skips users whose `enabled`
/// is missing or false) and with credentials.
fn login_user(account_id: &str, id: String, doc: &Map<String, Value>) -> Option<User> {
    let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    if doc.get("enabled") != Some(&Value::Bool(true)) {
        return None;
    }
    Some(User {
        id,
        account_id: account_id.to_string(),
        username: text("username")?,
        first_name: text("first_name"),
        last_name: text("last_name"),
        enabled: true,
        md5_hash: text(USER_MD5_HASH)?,
        sha1_hash: text(USER_SHA1_HASH)?,
        profile: Map::new(),
    })
}

const INIT_SETTING: &str =
    "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
const SETTING: &str = "SELECT value FROM settings WHERE key = $1";

const CALLFLOW_REV: &str = "SELECT rev FROM callflows WHERE account_id = $1 AND id = $2";
const CALLFLOW_BY_ID: &str =
    "SELECT id, rev, deleted, doc FROM callflows WHERE account_id = $1 AND id = $2";
const LIST_CALLFLOWS_ASC: &str = "SELECT id, rev, deleted, doc FROM callflows \
     WHERE account_id = $1 AND deleted = 0 ORDER BY id ASC LIMIT $2";
const LIST_CALLFLOWS_DESC: &str = "SELECT id, rev, deleted, doc FROM callflows \
     WHERE account_id = $1 AND deleted = 0 ORDER BY id DESC LIMIT $2";
const LIST_CALLFLOWS_FROM_ASC: &str = "SELECT id, rev, deleted, doc FROM callflows \
     WHERE account_id = $1 AND deleted = 0 AND id >= $3 ORDER BY id ASC LIMIT $2";
const LIST_CALLFLOWS_FROM_DESC: &str = "SELECT id, rev, deleted, doc FROM callflows \
     WHERE account_id = $1 AND deleted = 0 AND id <= $3 ORDER BY id DESC LIMIT $2";
const CALLFLOWS_WITH_NUMBER: &str = "SELECT c.id, c.rev, c.deleted, c.doc FROM callflows c \
     WHERE c.account_id = $1 AND c.deleted = 0 AND c.id IN \
     (SELECT callflow_id FROM callflow_numbers WHERE account_id = $1 AND number = $2) \
     ORDER BY c.id";
const DELETE_SEARCH_KEYS: &str = "DELETE FROM search_keys WHERE account_id = $1 AND doc_id = $2";
const INSERT_SEARCH_KEYS: &str =
    "INSERT INTO search_keys (account_id, doc_id, doc_type, view, key) VALUES ";
/// Live callflows with a key of type `$2` in views `$3`/`$4` within `[$5, $6)`.
const SEARCH_CALLFLOWS: &str = "SELECT c.id, c.rev, c.deleted, c.doc FROM callflows c \
     WHERE c.account_id = $1 AND c.deleted = 0 AND c.id IN \
     (SELECT doc_id FROM search_keys WHERE account_id = $1 AND doc_type = $2 \
      AND view IN ($3, $4) AND key >= $5 AND key < $6) ORDER BY c.id";
/// The same over the other documents.
const SEARCH_DOCUMENTS: &str = "SELECT d.id, d.rev, d.deleted, d.doc FROM documents d \
     WHERE d.account_id = $1 AND d.deleted = 0 AND d.id IN \
     (SELECT doc_id FROM search_keys WHERE account_id = $1 AND doc_type = $2 \
      AND view IN ($3, $4) AND key >= $5 AND key < $6) ORDER BY d.id";
const DELETE_OWNERS: &str = "DELETE FROM document_owners WHERE account_id = $1 AND doc_id = $2";
const INSERT_OWNERS: &str =
    "INSERT INTO document_owners (account_id, doc_id, doc_type, owner_id, hotdesked) VALUES ";
/// Live documents of type `$3` that `$2` owns or is hot-desked into, with that flag.
const DOCUMENTS_OWNED_BY: &str = "SELECT d.id, d.rev, d.deleted, d.doc, o.hotdesked \
     FROM documents d JOIN document_owners o ON o.account_id = d.account_id AND o.doc_id = d.id \
     WHERE d.account_id = $1 AND o.owner_id = $2 AND o.doc_type = $3 AND d.deleted = 0 \
     ORDER BY d.id";
/// An index built from what was stored, once, by the first node to start after the migration
/// that added it: the node that inserts the setting `$1` builds it in that transaction.
const CLAIM_INDEX: &str =
    "INSERT INTO settings (key, value) VALUES ($1, '1') ON CONFLICT (key) DO NOTHING RETURNING key";
const ALL_LIVE_CALLFLOWS: &str =
    "SELECT account_id, id, 'callflow' AS doc_type, doc FROM callflows WHERE deleted = 0";
const ALL_LIVE_DOCUMENTS: &str =
    "SELECT account_id, id, doc_type, doc FROM documents WHERE deleted = 0";
const UPSERT_CALLFLOW: &str = "INSERT INTO callflows \
     (account_id, id, rev, name, deleted, doc, modified) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (account_id, id) DO UPDATE SET rev = excluded.rev, name = excluded.name, \
     deleted = excluded.deleted, doc = excluded.doc, modified = excluded.modified";
const DELETE_CALLFLOW: &str = "DELETE FROM callflows WHERE account_id = $1 AND id = $2";

// History: revisions, the feed, drafts (docs/history.md).

const INSERT_REVISION: &str = "INSERT INTO revisions \
     (account_id, doc_id, number, doc_type, rev, op, doc, request_id, auth_account_id, \
      auth_user_id, message, written_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
/// Retention by count: a document's revisions numbered `$3` or below.
const PRUNE_DOCUMENT_REVISIONS: &str =
    "DELETE FROM revisions WHERE account_id = $1 AND doc_id = $2 AND number <= $3";
const DELETE_DOCUMENT_REVISIONS: &str =
    "DELETE FROM revisions WHERE account_id = $1 AND doc_id = $2";
/// Retention by age: revisions written before `$1`, except each document's latest.
const PRUNE_OLD_REVISIONS: &str = "DELETE FROM revisions WHERE written_at < $1 AND number < \
     (SELECT MAX(r.number) FROM revisions r \
      WHERE r.account_id = revisions.account_id AND r.doc_id = revisions.doc_id)";
/// The next feed position. Taken as the last step of a write transaction: the row stays
/// locked until the transaction ends, so positions are handed out in commit order, and a
/// rolled-back write gives its position back.
pub(super) const NEXT_POSITION: &str = "UPDATE feed SET seq = seq + 1 WHERE id = 1 RETURNING seq";
pub(super) const INSERT_CHANGE: &str = "INSERT INTO changes \
     (account_id, callflow_id, rev, op, written_at, doc_type, pos, number, auth_account_id, \
      auth_user_id, request_id, message) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING seq";
const REVISION_COLUMNS: &str = "doc_id, doc_type, number, rev, op, request_id, auth_account_id, \
     auth_user_id, message, written_at";
const CHANGE_COLUMNS: &str = "pos, account_id, doc_type, callflow_id AS doc_id, rev, number, op, \
     auth_account_id, auth_user_id, request_id, message, written_at";
const DRAFT_COLUMNS: &str = "callflow_id, rev, base_rev, doc, modified";
const DRAFT_REV: &str = "SELECT rev FROM drafts WHERE account_id = $1 AND callflow_id = $2";
const INSERT_DRAFT: &str = "INSERT INTO drafts \
     (account_id, callflow_id, rev, base_rev, doc, modified) VALUES ($1, $2, $3, $4, $5, $6)";
const UPDATE_DRAFT: &str = "UPDATE drafts SET rev = $3, base_rev = $4, doc = $5, modified = $6 \
     WHERE account_id = $1 AND callflow_id = $2";
const DELETE_DRAFT: &str = "DELETE FROM drafts WHERE account_id = $1 AND callflow_id = $2";
/// A publish takes the draft it made live, at the rev it read.
const CONSUME_DRAFT: &str = "DELETE FROM drafts \
     WHERE account_id = $1 AND callflow_id = $2 AND rev = $3 RETURNING callflow_id";

const PATTERN_COUNTS: &str = "SELECT COUNT(*) FILTER (WHERE callflow_id <> $2) AS others, \
     COUNT(*) FILTER (WHERE callflow_id = $2) AS own FROM callflow_patterns WHERE account_id = $1";
const DELETE_NUMBERS: &str =
    "DELETE FROM callflow_numbers WHERE account_id = $1 AND callflow_id = $2";
const DELETE_PATTERNS: &str =
    "DELETE FROM callflow_patterns WHERE account_id = $1 AND callflow_id = $2";
const CALLFLOW_NUMBERS: &str =
    "SELECT number FROM callflow_numbers WHERE account_id = $1 AND callflow_id = $2";
const CALLFLOW_PATTERNS: &str =
    "SELECT pattern FROM callflow_patterns WHERE account_id = $1 AND callflow_id = $2";
/// Multi-row inserts: [`value_rows`] follow.
const INSERT_NUMBERS: &str =
    "INSERT INTO callflow_numbers (account_id, number, callflow_id, search_key) VALUES ";
const INSERT_PATTERNS: &str =
    "INSERT INTO callflow_patterns (account_id, pattern, callflow_id) VALUES ";

/// The numbers (patterns) among a list that other callflows of the account `$1` hold, for a
/// write of callflow `$2`: the list's placeholders (`$3`...) go between the two halves.
const NUMBER_CONFLICTS: [&str; 2] = [
    "SELECT n.number AS value, n.callflow_id, c.name FROM callflow_numbers n \
     JOIN callflows c ON c.account_id = n.account_id AND c.id = n.callflow_id \
     WHERE n.account_id = $1 AND n.callflow_id <> $2 AND n.number IN (",
    ") ORDER BY n.number, n.callflow_id",
];
const PATTERN_CONFLICTS: [&str; 2] = [
    "SELECT n.pattern AS value, n.callflow_id, c.name FROM callflow_patterns n \
     JOIN callflows c ON c.account_id = n.account_id AND c.id = n.callflow_id \
     WHERE n.account_id = $1 AND n.callflow_id <> $2 AND n.pattern IN (",
    ") ORDER BY n.pattern, n.callflow_id",
];

/// `$first, $first+1, ...`: `count` placeholders.
fn placeholders(first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    list.join(", ")
}

/// `($1, ..., $width), ($width+1, ...), ...`: `rows` rows of placeholders for a `VALUES`.
fn value_rows(rows: usize, width: usize) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|row| format!("({})", placeholders(row * width + 1, width)))
        .collect();
    rows.join(", ")
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    name: String,
    realm: Option<String>,
    parent_id: Option<String>,
    /// JSON array of ancestor ids.
    tree: String,
    superduper: i64,
    doc: String,
    created: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> Result<Self, StoreError> {
        Ok(Account {
            id: row.id,
            name: row.name,
            realm: row.realm,
            parent_id: row.parent_id,
            tree: serde_json::from_str(&row.tree)
                .map_err(|e| StoreError::Other(anyhow::anyhow!("corrupt account tree: {e}")))?,
            superduper: row.superduper != 0,
            doc: parse_doc(&row.doc)?,
            created: row.created,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    #[sqlx(flatten)]
    account: AccountRow,
    api_key_hash: String,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    account_id: String,
    username: String,
    first_name: Option<String>,
    last_name: Option<String>,
    enabled: i64,
    md5_hash: String,
    sha1_hash: String,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            account_id: row.account_id,
            username: row.username,
            first_name: row.first_name,
            last_name: row.last_name,
            enabled: row.enabled != 0,
            md5_hash: row.md5_hash,
            sha1_hash: row.sha1_hash,
            profile: Map::new(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct CallflowRow {
    id: String,
    rev: String,
    deleted: i64,
    doc: String,
}

/// A document with whether its owner row is a hot-desk.
#[derive(sqlx::FromRow)]
struct OwnedRow {
    #[sqlx(flatten)]
    document: CallflowRow,
    hotdesked: i64,
}

impl TryFrom<CallflowRow> for StoredCallflow {
    type Error = StoreError;

    fn try_from(row: CallflowRow) -> Result<Self, StoreError> {
        Ok(StoredCallflow {
            id: row.id,
            rev: row.rev,
            deleted: row.deleted != 0,
            doc: parse_doc(&row.doc)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: String,
    doc_type: String,
    rev: String,
    deleted: i64,
    doc: String,
}

/// A number or pattern another callflow holds (see [`NUMBER_CONFLICTS`]).
#[derive(sqlx::FromRow)]
struct ConflictRow {
    value: String,
    callflow_id: String,
    name: Option<String>,
}

impl ConflictRow {
    fn into_conflict(self, kind: KeyKind) -> UniqueConflict {
        UniqueConflict {
            kind,
            value: self.value,
            // Kazoo's message names the holder, or gives its id when it has none.
            name: self
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| self.callflow_id.clone()),
            callflow_id: self.callflow_id,
        }
    }
}

/// One callflow's routing keys (see [`Backend::NUMBER_KEYS`]).
#[derive(sqlx::FromRow)]
struct RouteKeysRow {
    callflow_id: String,
    /// JSON array of numbers or patterns.
    route_keys: String,
}

#[derive(sqlx::FromRow)]
struct RevisionRow {
    doc_id: String,
    doc_type: String,
    number: i64,
    rev: String,
    op: String,
    request_id: Option<String>,
    auth_account_id: Option<String>,
    auth_user_id: Option<String>,
    message: Option<String>,
    written_at: i64,
}

impl From<RevisionRow> for RevisionInfo {
    fn from(r: RevisionRow) -> Self {
        RevisionInfo {
            doc_id: r.doc_id,
            doc_type: r.doc_type,
            number: r.number,
            rev: r.rev,
            op: r.op,
            request_id: r.request_id,
            auth_account_id: r.auth_account_id,
            auth_user_id: r.auth_user_id,
            message: r.message,
            written_at: r.written_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct FullRevisionRow {
    #[sqlx(flatten)]
    info: RevisionRow,
    doc: String,
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    pos: i64,
    account_id: String,
    doc_type: String,
    doc_id: String,
    rev: String,
    number: Option<i64>,
    op: String,
    auth_account_id: Option<String>,
    auth_user_id: Option<String>,
    request_id: Option<String>,
    message: Option<String>,
    written_at: i64,
}

impl From<ChangeRow> for Change {
    fn from(r: ChangeRow) -> Self {
        Change {
            pos: r.pos,
            account_id: r.account_id,
            doc_type: r.doc_type,
            doc_id: r.doc_id,
            rev: r.rev,
            number: r.number,
            op: r.op,
            auth_account_id: r.auth_account_id,
            auth_user_id: r.auth_user_id,
            request_id: r.request_id,
            message: r.message,
            written_at: r.written_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DraftRow {
    callflow_id: String,
    rev: String,
    base_rev: Option<String>,
    doc: String,
    modified: i64,
}

impl TryFrom<DraftRow> for Draft {
    type Error = StoreError;

    fn try_from(r: DraftRow) -> Result<Self, StoreError> {
        Ok(Draft {
            callflow_id: r.callflow_id,
            rev: r.rev,
            base_rev: r.base_rev,
            doc: parse_doc(&r.doc)?,
            modified: r.modified,
        })
    }
}

/// What a write leaves in the history besides the document: its revision (when it has a body
/// to keep) and its change record.
struct Record<'a> {
    account_id: &'a str,
    doc_id: &'a str,
    doc_type: &'a str,
    rev: &'a str,
    op: &'a str,
    /// The stored body of the new revision; `None` for writes that keep no revision (purges,
    /// drafts).
    doc_text: Option<&'a str>,
    request_id: Option<&'a str>,
    now: i64,
}

/// A value bound into a statement built at run time.
enum Param {
    Text(String),
    Int(i64),
}

/// `SELECT ... FROM {table} WHERE account_id = $1 AND deleted = 1 ...`: soft-deleted
/// documents ordered by id; `$2` the limit, `$3` the start id (when `from`), and for the
/// documents table the type as the last parameter.
fn deleted_statement(documents: bool, from: bool, descending: bool) -> String {
    let table = if documents { "documents" } else { "callflows" };
    let mut sql =
        format!("SELECT id, rev, deleted, doc FROM {table} WHERE account_id = $1 AND deleted = 1");
    let mut next = 3;
    if from {
        sql.push_str(if descending {
            " AND id <= $3"
        } else {
            " AND id >= $3"
        });
        next = 4;
    }
    if documents {
        sql.push_str(&format!(" AND doc_type = ${next}"));
    }
    sql.push_str(if descending {
        " ORDER BY id DESC LIMIT $2"
    } else {
        " ORDER BY id ASC LIMIT $2"
    });
    sql
}

#[derive(sqlx::FromRow)]
struct PatternCounts {
    /// Patterns the account's other callflows hold.
    others: i64,
    /// Patterns the written callflow holds now.
    own: i64,
}

fn parse_doc(text: &str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("corrupt stored document: {e}")))
}

fn doc_text(doc: &Map<String, Value>) -> String {
    // Serialising a JSON map cannot fail.
    serde_json::to_string(doc).unwrap_or_else(|_| "{}".to_string())
}

/// The document's `pvt_type`, else `fallback`.
fn pvt_type_or<'a>(doc: &'a Map<String, Value>, fallback: &'a str) -> &'a str {
    doc.get("pvt_type")
        .and_then(Value::as_str)
        .unwrap_or(fallback)
}

/// The first string after every string starting with `prefix` (bytewise), for an ASCII
/// prefix: its last character moved up by one.
fn prefix_end(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if !prefix.is_ascii() || last >= 0x7f {
        return None;
    }
    let mut end = prefix[..prefix.len() - 1].to_string();
    end.push(char::from(last + 1));
    Some(end)
}

fn callflows(rows: Vec<CallflowRow>) -> StoreResult<Vec<StoredCallflow>> {
    rows.into_iter().map(StoredCallflow::try_from).collect()
}

fn accounts(rows: Vec<AccountRow>) -> StoreResult<Vec<Account>> {
    rows.into_iter().map(Account::try_from).collect()
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// Group commit: document writes queue here and one task runs them, each in a savepoint of
/// one transaction per batch, committed with one fsync for the whole batch. A write is answered
/// only once the batch's commit returned, so a 2xx means on disk exactly as before; a write
/// refused by its own checks rolls back its savepoint and is answered at once.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    queue: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<GroupJob>>,
    /// Batches committed so far (tests, the metrics).
    commits: std::sync::atomic::AtomicU64,
}

impl GroupCommit {
    /// Batches committed so far.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Most writes one commit takes.
const GROUP_MAX: usize = 64;

pub(super) use super::BatchWrite as GroupWrite;

pub(super) struct GroupJob {
    write: GroupWrite,
    meta: WriteMeta,
    reply: tokio::sync::oneshot::Sender<StoreResult<i64>>,
}

/// Errors that are the write's own answer (its savepoint is rolled back and the batch goes
/// on); any other error may have ended the whole transaction.
fn refusal(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NotFound
            | StoreError::Conflict
            | StoreError::Unique(_)
            | StoreError::Taken(_)
            | StoreError::KeyTaken(_)
            | StoreError::TooManyPatterns { .. }
    )
}

/// The database connection a write transaction runs on.
type Conn<B> = <<B as Backend>::Db as Database>::Connection;

/// The shared write logic (transactions, uniqueness checks, the pattern cap, purge), for any
/// backend. Only a namespace, so that its bounds are written once for all its functions.
struct Sql<B>(std::marker::PhantomData<B>);

// What the statements need of the driver: to run on a connection (and so on a pool), to bind
// text, optional text and integers, and to read them back by column name or position.
// `sqlx::Sqlite` and `sqlx::Postgres` both qualify. Rust does not carry such bounds along with
// `B: Backend`, so the `Store` impl below repeats them.
impl<B> Sql<B>
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<&'q str>: Encode<'q, B::Db>,
    for<'q> String: Encode<'q, B::Db> + Decode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<String>: Encode<'q, B::Db>,
    for<'q> Option<i64>: Encode<'q, B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Decode<'q, B::Db> + Type<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    for<'s> &'s str: ColumnIndex<<B::Db as Database>::Row>,
    B::Db: sqlx::database::HasStatementCache,
{
    /// Sends the statements `deferred` holds ([`Deferred`]) and empties it.
    async fn flush(conn: &mut Conn<B>, deferred: &mut Deferred<'_>) -> StoreResult<()> {
        let statements = std::mem::take(&mut deferred.statements);
        // A backend that runs one statement per query gets groups of one.
        let limit = if B::JOINS_STATEMENTS {
            JOINED_PARAMETERS
        } else {
            0
        };
        let mut rest = statements.as_slice();
        while !rest.is_empty() {
            // As many statements as the parameter limit allows (always at least one).
            let (mut take, mut params) = (0, 0);
            while take < rest.len() && (take == 0 || params + rest[take].1.len() <= limit) {
                params += rest[take].1.len();
                take += 1;
            }
            let (group, tail) = rest.split_at(take);
            rest = tail;
            if let [(statement, args)] = group {
                Self::bind_all(sqlx::query(statement), args)
                    .execute(&mut *conn)
                    .await?;
                continue;
            }
            let mut joined = String::new();
            let mut args: Vec<Arg<'_>> = Vec::with_capacity(params);
            for (statement, own) in group {
                if !joined.is_empty() {
                    joined.push_str(";\n");
                }
                shift_placeholders(statement, args.len(), &mut joined);
                args.extend(own.iter().cloned());
            }
            // Not kept among the prepared statements: its text changes with the write's shape.
            Self::bind_all(sqlx::query(&joined), &args)
                .persistent(false)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    fn bind_all<'q>(
        mut query: sqlx::query::Query<'q, B::Db, <B::Db as Database>::Arguments<'q>>,
        args: &'q [Arg<'_>],
    ) -> sqlx::query::Query<'q, B::Db, <B::Db as Database>::Arguments<'q>> {
        for arg in args {
            query = match arg {
                Arg::Text(t) => query.bind(*t),
                Arg::MaybeText(t) => query.bind(*t),
                Arg::Int(n) => query.bind(*n),
                Arg::Owned(t) => query.bind(t.as_str()),
            };
        }
        query
    }

    /// The numbers and patterns of `write` that other callflows of the account hold.
    async fn conflicts(
        conn: &mut Conn<B>,
        write: &CallflowWrite,
    ) -> StoreResult<Vec<UniqueConflict>> {
        let mut found = Vec::new();
        if write.deleted {
            return Ok(found);
        }
        let lists = [
            (KeyKind::Number, &write.numbers, NUMBER_CONFLICTS),
            (KeyKind::Pattern, &write.patterns, PATTERN_CONFLICTS),
        ];
        for (kind, values, [head, tail]) in lists {
            for chunk in values.chunks(CHUNK) {
                let statement = format!("{head}{}{tail}", placeholders(3, chunk.len()));
                let mut query = sqlx::query_as(&statement)
                    .bind(&write.account_id)
                    .bind(&write.id);
                for value in chunk {
                    query = query.bind(value);
                }
                let rows: Vec<ConflictRow> = query.fetch_all(&mut *conn).await?;
                found.extend(rows.into_iter().map(|row| row.into_conflict(kind)));
            }
        }
        Ok(found)
    }

    async fn try_write(store: &B, write: &CallflowWrite, meta: &WriteMeta) -> StoreResult<i64> {
        let mut tx = store.begin_write().await?;
        let pos = Self::callflow_in(store, &mut tx, write, meta).await?;
        Self::end(tx, meta).await?;
        Ok(pos)
    }

    /// A callflow write's statements, on a connection inside a transaction (or a savepoint of
    /// a group commit).
    async fn callflow_in(
        store: &B,
        tx: &mut Conn<B>,
        write: &CallflowWrite,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let existed = Self::check_revision(
            &mut *tx,
            CALLFLOW_REV,
            &write.account_id,
            &write.id,
            write.expected_rev.as_deref(),
        )
        .await?;
        let conflicts = Self::conflicts(&mut *tx, write).await?;
        if !conflicts.is_empty() {
            return Err(StoreError::Unique(conflicts));
        }
        let cap = write.max_account_patterns;
        if let Some(limit) = cap.filter(|_| !write.deleted && !write.patterns.is_empty()) {
            store
                .lock_account_patterns(&mut *tx, &write.account_id)
                .await?;
            let counts: PatternCounts = sqlx::query_as(PATTERN_COUNTS)
                .bind(&write.account_id)
                .bind(&write.id)
                .fetch_one(&mut *tx)
                .await?;
            // Only a write that adds patterns can be refused: an account already over the cap
            // (imported data) can still save, and shrink.
            let (others, own) = (counts.others as usize, counts.own as usize);
            if write.patterns.len() > own && others + write.patterns.len() > limit {
                return Err(StoreError::TooManyPatterns { limit });
            }
        }
        let now = now_gregorian();
        let text = doc_text(&write.doc);
        let name = write.doc.get("name").and_then(|v| v.as_str());
        let (account_id, id) = (write.account_id.as_str(), write.id.as_str());
        // Everything from here to the revision answers nothing: sent together (`Deferred`).
        let mut deferred = Deferred::default();
        deferred.push(
            UPSERT_CALLFLOW,
            vec![
                Arg::Text(account_id),
                Arg::Text(id),
                Arg::Text(&write.new_rev),
                Arg::MaybeText(name),
                Arg::Int(i64::from(write.deleted)),
                Arg::Text(&text),
                Arg::Int(now),
            ],
        );
        if existed {
            for delete in [
                DELETE_NUMBERS,
                DELETE_PATTERNS,
                DELETE_REFERENCES,
                DELETE_SEARCH_KEYS,
            ] {
                deferred.push(delete, vec![Arg::Text(account_id), Arg::Text(id)]);
            }
        }
        if !write.deleted {
            Self::insert_indexes(&mut deferred, account_id, id, "callflow", &write.doc);
            deferred.push_rows(INSERT_NUMBERS, &write.numbers, |number| {
                [
                    Arg::Text(account_id),
                    Arg::Text(number),
                    Arg::Text(id),
                    Arg::Owned(search_key(number)),
                ]
            });
            deferred.push_rows(INSERT_PATTERNS, &write.patterns, |pattern| {
                [Arg::Text(account_id), Arg::Text(pattern), Arg::Text(id)]
            });
            deferred.push_rows(INSERT_REFERENCES, &write.references, |reference| {
                [Arg::Text(account_id), Arg::Text(id), Arg::Text(reference)]
            });
        }
        if let Some(draft_rev) = &meta.consume_draft {
            Self::flush(&mut *tx, &mut deferred).await?;
            let taken: Option<String> = sqlx::query_scalar(CONSUME_DRAFT)
                .bind(&write.account_id)
                .bind(&write.id)
                .bind(draft_rev)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_none() {
                return Err(StoreError::Conflict);
            }
        }
        let record = Record {
            account_id: &write.account_id,
            doc_id: &write.id,
            doc_type: "callflow",
            rev: &write.new_rev,
            op: write.op.as_str(),
            doc_text: Some(&text),
            request_id: Some(&write.request_id),
            now,
        };
        Self::record(store, tx, &record, meta, deferred).await
    }

    /// Writes the revision (unless the write keeps none), applies count retention, then, as
    /// the transaction's last step, takes the next feed position, records the change and
    /// announces it ([`Backend::feed_step`]). Returns the feed position (the change's row id
    /// when history is recorded as before it existed; 0 for a dry run, which takes none).
    async fn record<'a>(
        store: &B,
        conn: &mut Conn<B>,
        record: &Record<'a>,
        meta: &'a WriteMeta,
        mut deferred: Deferred<'a>,
    ) -> StoreResult<i64> {
        if store.fail_revision_writes() {
            Self::flush(&mut *conn, &mut deferred).await?;
            return Err(StoreError::Other(anyhow::anyhow!(
                "injected failure before the revision write"
            )));
        }
        let number = rev_number(record.rev);
        // As before history: nobody and no message recorded, no revision number in the change.
        let legacy = meta.legacy_history;
        let who = |v: &'a Option<String>| v.as_deref().filter(|_| !legacy);
        let (auth_account_id, auth_user_id, message) = (
            who(&meta.auth_account_id),
            who(&meta.auth_user_id),
            who(&meta.message),
        );
        if let Some(text) = record.doc_text {
            deferred.push(
                INSERT_REVISION,
                vec![
                    Arg::Text(record.account_id),
                    Arg::Text(record.doc_id),
                    Arg::Int(number),
                    Arg::Text(record.doc_type),
                    Arg::Text(record.rev),
                    Arg::Text(record.op),
                    Arg::Text(text),
                    Arg::MaybeText(record.request_id),
                    Arg::MaybeText(auth_account_id),
                    Arg::MaybeText(auth_user_id),
                    Arg::MaybeText(message),
                    Arg::Int(record.now),
                ],
            );
            if let Some(keep) = meta.keep_revisions.filter(|k| *k > 0) {
                let keep = i64::try_from(keep).unwrap_or(i64::MAX);
                deferred.push(
                    PRUNE_DOCUMENT_REVISIONS,
                    vec![
                        Arg::Text(record.account_id),
                        Arg::Text(record.doc_id),
                        Arg::Int(number.saturating_sub(keep)),
                    ],
                );
            }
        }
        Self::flush(&mut *conn, &mut deferred).await?;
        // A dry run takes no feed position: the counter is left alone (no writer waits on a
        // dry run) and no sequence value is drawn, as the change would be rolled back anyway.
        if meta.dry_run {
            return Ok(0);
        }
        if legacy {
            let seq: i64 = sqlx::query_scalar(INSERT_CHANGE)
                .bind(record.account_id)
                .bind(record.doc_id)
                .bind(record.rev)
                .bind(record.op)
                .bind(record.now)
                .bind(record.doc_type)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .fetch_one(&mut *conn)
                .await?;
            store
                .announce(conn, record.account_id, record.doc_type, record.doc_id, seq)
                .await?;
            return Ok(seq);
        }
        let entry = FeedEntry {
            account_id: record.account_id,
            doc_id: record.doc_id,
            doc_type: record.doc_type,
            rev: record.rev,
            op: record.op,
            now: record.now,
            number,
            auth_account_id,
            auth_user_id,
            request_id: record.request_id,
            message,
        };
        Ok(store.feed_step(conn, &entry).await?)
    }

    /// Commits, or for a dry run rolls back (every check has run; nothing stays).
    async fn end(tx: Transaction<'static, B::Db>, meta: &WriteMeta) -> StoreResult<()> {
        if meta.dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(())
    }

    /// A document or callflow write, through the backend's group commit when it has one.
    async fn grouped(store: &B, write: GroupWrite, meta: WriteMeta) -> StoreResult<i64> {
        let group = match store.group_commit() {
            // A dry run rolls back: nothing to share a commit with.
            Some(group) if !meta.dry_run => group,
            _ => return Self::alone(store, &write, &meta).await,
        };
        let queue = group.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            // The writer runs on a thread of its own: each of a batch's statements is a round
            // trip to the driver's worker thread, and on the server's workers every one of them
            // would wait behind the HTTP tasks before the next could start. It ends when the
            // store (the queue's sender) is dropped.
            let loop_store = store.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let spawned = runtime.map_err(anyhow::Error::from).and_then(|runtime| {
                std::thread::Builder::new()
                    .name("group-commit".into())
                    .spawn(move || runtime.block_on(Self::commit_loop(loop_store, rx)))
                    .map_err(anyhow::Error::from)
            });
            if let Err(error) = spawned {
                // Without its thread the queue has no reader: writes then go alone (below).
                tracing::warn!(%error, "group commit thread not started");
            }
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        if let Err(refused) = queue.send(GroupJob { write, meta, reply }) {
            let job = refused.0;
            return Self::alone(store, &job.write, &job.meta).await;
        }
        answer
            .await
            .map_err(|_| StoreError::Other(anyhow::anyhow!("the group commit task ended")))?
    }

    /// One write in a transaction of its own.
    async fn alone(store: &B, write: &GroupWrite, meta: &WriteMeta) -> StoreResult<i64> {
        match write {
            GroupWrite::Callflow(w) => Self::write_callflow(store, w, meta).await,
            GroupWrite::Document(w) => Self::write_document(store, w, meta).await,
        }
    }

    async fn commit_loop(store: B, mut queue: tokio::sync::mpsc::UnboundedReceiver<GroupJob>) {
        while let Some(first) = queue.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < GROUP_MAX {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            metrics::histogram!("callflowd_group_commit_writes").record(jobs.len() as f64);
            Self::commit_batch(&store, jobs).await;
        }
    }

    /// Runs a batch in one transaction (a savepoint only around a publish). If the transaction itself
    /// fails (opening, a statement error that is not a write's own refusal, the commit),
    /// nothing of it stays, and every write not yet answered runs again on its own, so one
    /// failing write cannot fail the others.
    async fn commit_batch(store: &B, jobs: Vec<GroupJob>) {
        let mut tx = match store.begin_write().await {
            Ok(tx) => tx,
            Err(_) => return Self::one_by_one(store, jobs).await,
        };
        let mut done: Vec<(GroupJob, i64)> = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            // As in `batch`: a write refuses before it changes anything, so only a publish
            // (which checks its draft after writing) needs a savepoint to undo its part.
            let result = if job.meta.consume_draft.is_none() {
                Self::write_in(store, &mut tx, &job.write, &job.meta).await
            } else {
                Self::in_savepoint(store, &mut tx, &job.write, &job.meta).await
            };
            match result {
                Ok(pos) => done.push((job, pos)),
                Err(e) if refusal(&e) => {
                    let _ = job.reply.send(Err(e));
                }
                Err(_) => {
                    // The transaction may be gone: drop it, redo everything unanswered alone.
                    let _ = tx.rollback().await;
                    let rest = done.into_iter().map(|(j, _)| j).chain([job]).chain(jobs);
                    return Self::one_by_one(store, rest.collect()).await;
                }
            }
        }
        match tx.commit().await {
            Ok(()) => {
                if let Some(group) = store.group_commit() {
                    group
                        .commits
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                for (job, pos) in done {
                    let _ = job.reply.send(Ok(pos));
                }
            }
            Err(_) => Self::one_by_one(store, done.into_iter().map(|(j, _)| j).collect()).await,
        }
    }

    /// A callflow or document write's statements inside the transaction `conn` is in.
    async fn write_in(
        store: &B,
        conn: &mut Conn<B>,
        write: &GroupWrite,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        match write {
            GroupWrite::Callflow(w) => Self::callflow_in(store, conn, w, meta).await,
            GroupWrite::Document(w) => Self::document_in(store, conn, w, meta).await,
        }
    }

    /// [`Sql::write_in`] in a savepoint of its own, rolled back when the write fails.
    async fn in_savepoint(
        store: &B,
        conn: &mut Conn<B>,
        write: &GroupWrite,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let mut savepoint = sqlx::Connection::begin(&mut *conn).await?;
        match Self::write_in(store, &mut savepoint, write, meta).await {
            Ok(pos) => {
                savepoint.commit().await?;
                Ok(pos)
            }
            Err(e) => {
                savepoint.rollback().await?;
                Err(e)
            }
        }
    }

    /// [`Store::write_batch`]: the writes in order, one commit.
    async fn batch(
        store: &B,
        writes: &[GroupWrite],
        meta: &WriteMeta,
    ) -> StoreResult<Vec<StoreResult<i64>>> {
        let mut tx = store.begin_write().await?;
        let mut answers = Vec::with_capacity(writes.len());
        for write in writes {
            // A write refuses (its own checks: revision, id, unique values, pattern cap) before
            // its first statement that changes anything, so a refusal leaves nothing to undo and
            // needs no savepoint; only a publish (`consume_draft`) checks after writing.
            let result = if meta.consume_draft.is_none() {
                Self::write_in(store, &mut tx, write, meta).await
            } else {
                Self::in_savepoint(store, &mut tx, write, meta).await
            };
            match result {
                Ok(pos) => answers.push(Ok(pos)),
                Err(e) if refusal(&e) => answers.push(Err(e)),
                // The transaction is dropped, so rolled back: nothing of the batch stays.
                Err(e) => return Err(e),
            }
        }
        Self::end(tx, meta).await?;
        Ok(answers)
    }

    async fn one_by_one(store: &B, jobs: Vec<GroupJob>) {
        for job in jobs {
            let result = Self::alone(store, &job.write, &job.meta).await;
            let _ = job.reply.send(result);
        }
    }

    async fn write_callflow(
        store: &B,
        write: &CallflowWrite,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        match Self::try_write(store, write, meta).await {
            // A concurrent writer committed the same key between our check and our insert:
            // report who holds it now, as the pre-check would have.
            Err(StoreError::UniqueViolation(_)) => {
                let mut conn = store.read().acquire().await?;
                let conflicts = Self::conflicts(&mut conn, write).await?;
                if conflicts.is_empty() {
                    Err(StoreError::Conflict)
                } else {
                    Err(StoreError::Unique(conflicts))
                }
            }
            other => other,
        }
    }

    /// Removes a callflow (`kind` `callflow`) or another document for good, with its
    /// revisions (and a callflow's draft).
    async fn purge(
        store: &B,
        kind: &str,
        account_id: &str,
        id: &str,
        expected_rev: &str,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let mut tx = store.begin_write().await?;
        let doc_type = if kind == "callflow" {
            let current: Option<String> = sqlx::query_scalar(CALLFLOW_REV)
                .bind(account_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match current {
                None => return Err(StoreError::NotFound),
                Some(rev) if rev != expected_rev => return Err(StoreError::Conflict),
                _ => "callflow".to_string(),
            }
        } else {
            let current: Option<(String, String)> = sqlx::query_as(DOCUMENT_REV_AND_TYPE)
                .bind(account_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match current {
                None => return Err(StoreError::NotFound),
                Some((rev, _)) if rev != expected_rev => return Err(StoreError::Conflict),
                Some((_, doc_type)) => doc_type,
            }
        };
        let deletes: &[&str] = if kind == "callflow" {
            &[
                DELETE_NUMBERS,
                DELETE_PATTERNS,
                DELETE_REFERENCES,
                DELETE_SEARCH_KEYS,
                DELETE_OWNERS,
                DELETE_CALLFLOW,
                DELETE_DRAFT,
                DELETE_DOCUMENT_REVISIONS,
            ]
        } else {
            &[
                DELETE_DOCUMENT_KEYS,
                DELETE_SEARCH_KEYS,
                DELETE_OWNERS,
                DELETE_DOCUMENT,
                DELETE_DOCUMENT_REVISIONS,
            ]
        };
        for delete in deletes {
            sqlx::query(delete)
                .bind(account_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let record = Record {
            account_id,
            doc_id: id,
            doc_type: &doc_type,
            rev: expected_rev,
            op: "purge",
            doc_text: None,
            request_id: None,
            now: now_gregorian(),
        };
        let pos = Self::record(store, &mut tx, &record, meta, Deferred::default()).await?;
        Self::end(tx, meta).await?;
        Ok(pos)
    }

    /// Saves a callflow's draft and records the change (no revision: a draft is a working
    /// copy, its history starts when it is published).
    async fn write_draft(store: &B, write: &DraftWrite, meta: &WriteMeta) -> StoreResult<i64> {
        let mut tx = store.begin_write().await?;
        let current: Option<String> = sqlx::query_scalar(DRAFT_REV)
            .bind(&write.account_id)
            .bind(&write.callflow_id)
            .fetch_optional(&mut *tx)
            .await?;
        match (&write.expected_rev, current) {
            (None, Some(_)) => return Err(StoreError::Conflict),
            (None, None) if write.new_callflow => {
                Self::check_id_free(&mut tx, &write.account_id, &write.callflow_id).await?
            }
            (Some(_), None) => return Err(StoreError::NotFound),
            (Some(expected), Some(rev)) if *expected != rev => return Err(StoreError::Conflict),
            _ => {}
        }
        let now = now_gregorian();
        let statement = if write.expected_rev.is_some() {
            UPDATE_DRAFT
        } else {
            INSERT_DRAFT
        };
        sqlx::query(statement)
            .bind(&write.account_id)
            .bind(&write.callflow_id)
            .bind(&write.new_rev)
            .bind(write.base_rev.as_deref())
            .bind(doc_text(&write.doc))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| match StoreError::from(e) {
                // Another writer created the draft meanwhile.
                StoreError::UniqueViolation(_) => StoreError::Conflict,
                other => other,
            })?;
        let op = if write.expected_rev.is_some() {
            "update"
        } else {
            "create"
        };
        let record = Record {
            account_id: &write.account_id,
            doc_id: &write.callflow_id,
            doc_type: DRAFT_TYPE,
            rev: &write.new_rev,
            op,
            doc_text: None,
            request_id: Some(&write.request_id),
            now,
        };
        let pos = Self::record(store, &mut tx, &record, meta, Deferred::default()).await?;
        Self::end(tx, meta).await?;
        Ok(pos)
    }

    /// Discards a draft at `expected_rev` and records the change.
    async fn delete_draft(
        store: &B,
        account_id: &str,
        callflow_id: &str,
        expected_rev: &str,
        request_id: Option<&str>,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let mut tx = store.begin_write().await?;
        let taken: Option<String> = sqlx::query_scalar(CONSUME_DRAFT)
            .bind(account_id)
            .bind(callflow_id)
            .bind(expected_rev)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_none() {
            let current: Option<String> = sqlx::query_scalar(DRAFT_REV)
                .bind(account_id)
                .bind(callflow_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match current {
                None => StoreError::NotFound,
                Some(_) => StoreError::Conflict,
            });
        }
        let record = Record {
            account_id,
            doc_id: callflow_id,
            doc_type: DRAFT_TYPE,
            rev: expected_rev,
            op: "delete",
            doc_text: None,
            request_id,
            now: now_gregorian(),
        };
        let pos = Self::record(store, &mut tx, &record, meta, Deferred::default()).await?;
        Self::end(tx, meta).await?;
        Ok(pos)
    }

    /// The writes an audit selects (see [`AuditQuery`]), newest first.
    async fn audit(store: &B, query: &AuditQuery) -> StoreResult<Vec<Change>> {
        // The account and every account below it (their `tree` lists it).
        let mut sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE pos IS NOT NULL AND account_id IN \
             (SELECT id FROM accounts WHERE id = $1 OR tree LIKE $2)"
        );
        let mut params = vec![
            Param::Text(query.account_id.clone()),
            Param::Text(format!("%\"{}\"%", query.account_id)),
        ];
        let mut filter = |sql: &mut String, column: &str, op: &str, value: Param| {
            params.push(value);
            sql.push_str(&format!(" AND {column} {op} ${}", params.len()));
        };
        if let Some(t) = &query.doc_type {
            filter(&mut sql, "doc_type", "=", Param::Text(t.clone()));
        }
        if let Some(id) = &query.doc_id {
            filter(&mut sql, "callflow_id", "=", Param::Text(id.clone()));
        }
        if let Some(user) = &query.user_id {
            filter(&mut sql, "auth_user_id", "=", Param::Text(user.clone()));
        }
        if let Some(from) = query.from {
            filter(&mut sql, "written_at", ">=", Param::Int(from));
        }
        if let Some(to) = query.to {
            filter(&mut sql, "written_at", "<=", Param::Int(to));
        }
        if let Some(pos) = query.at_or_before {
            filter(&mut sql, "pos", "<=", Param::Int(pos));
        }
        params.push(Param::Int(query.limit));
        sql.push_str(&format!(" ORDER BY pos DESC LIMIT ${}", params.len()));
        let mut q = sqlx::query_as::<_, ChangeRow>(&sql);
        for p in params {
            q = match p {
                Param::Text(t) => q.bind(t),
                Param::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(store.read()).await?;
        Ok(rows.into_iter().map(Change::from).collect())
    }

    /// A live document's index rows: the keys `/search` finds it under
    /// ([`search::index_keys`]) and its owners ([`owners::owners`]), typed by its `pvt_type`
    /// (else `doc_type`), as searches and listings filter on it.
    /// The search keys and owner rows of a document, as deferred statements.
    fn insert_indexes<'a>(
        deferred: &mut Deferred<'a>,
        account_id: &'a str,
        id: &'a str,
        doc_type: &'a str,
        doc: &'a Map<String, Value>,
    ) {
        Self::insert_search_keys(deferred, account_id, id, doc_type, doc);
        Self::insert_owners(deferred, account_id, id, doc_type, doc);
    }

    fn insert_search_keys<'a>(
        deferred: &mut Deferred<'a>,
        account_id: &'a str,
        id: &'a str,
        doc_type: &'a str,
        doc: &'a Map<String, Value>,
    ) {
        let doc_type = pvt_type_or(doc, doc_type);
        deferred.push_rows(
            INSERT_SEARCH_KEYS,
            &search::index_keys(id, doc),
            |(view, key)| {
                [
                    Arg::Text(account_id),
                    Arg::Text(id),
                    Arg::Text(doc_type),
                    Arg::Text(view),
                    Arg::Owned(key.clone()),
                ]
            },
        );
    }

    fn insert_owners<'a>(
        deferred: &mut Deferred<'a>,
        account_id: &'a str,
        id: &'a str,
        doc_type: &'a str,
        doc: &'a Map<String, Value>,
    ) {
        let doc_type = pvt_type_or(doc, doc_type);
        deferred.push_rows(INSERT_OWNERS, &owners::owners(doc), |(owner, hotdesked)| {
            [
                Arg::Text(account_id),
                Arg::Text(id),
                Arg::Text(doc_type),
                Arg::Owned(owner.clone()),
                Arg::Int(i64::from(*hotdesked)),
            ]
        });
    }

    /// Builds the indexes added after documents were stored (search keys, owners), each once
    /// per database: the first node to claim its setting does it, in that transaction.
    async fn index_stored_documents(store: &B) -> StoreResult<()> {
        let mut tx = store.begin_write().await?;
        let mut claimed = Vec::new();
        for key in ["search_index", "owner_index"] {
            let won: Option<String> = sqlx::query_scalar(CLAIM_INDEX)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if won.is_some() {
                claimed.push(key);
            }
        }
        if claimed.is_empty() {
            // Ended explicitly: a dropped transaction would hand back a connection still in it.
            tx.rollback().await?;
            return Ok(());
        }
        let mut count = 0usize;
        for statement in [ALL_LIVE_CALLFLOWS, ALL_LIVE_DOCUMENTS] {
            let rows: Vec<(String, String, String, String)> =
                sqlx::query_as(statement).fetch_all(&mut *tx).await?;
            for (account_id, id, doc_type, text) in rows {
                let doc: Map<String, Value> =
                    serde_json::from_str(&text).map_err(|e| StoreError::Other(e.into()))?;
                let mut deferred = Deferred::default();
                if claimed.contains(&"search_index") {
                    Self::insert_search_keys(&mut deferred, &account_id, &id, &doc_type, &doc);
                }
                if claimed.contains(&"owner_index") {
                    Self::insert_owners(&mut deferred, &account_id, &id, &doc_type, &doc);
                }
                Self::flush(&mut tx, &mut deferred).await?;
                count += 1;
            }
        }
        tx.commit().await?;
        if count > 0 {
            tracing::info!(documents = count, indexes = ?claimed, "indexes built for stored documents");
        }
        Ok(())
    }

    /// The precondition of a write: a create (`expected` none) needs its id free in the whole
    /// account, one statement; a change needs the stored revision (read with `statement`) to
    /// be `expected`. Answers whether the document existed (a new id has no index rows to
    /// clear).
    async fn check_revision(
        conn: &mut Conn<B>,
        statement: &'static str,
        account_id: &str,
        id: &str,
        expected: Option<&str>,
    ) -> StoreResult<bool> {
        let Some(expected) = expected else {
            Self::check_id_free(&mut *conn, account_id, id).await?;
            return Ok(false);
        };
        let current: Option<String> = sqlx::query_scalar(statement)
            .bind(account_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        match current {
            None => Err(StoreError::NotFound),
            Some(rev) if rev != expected => Err(StoreError::Conflict),
            Some(_) => Ok(true),
        }
    }

    /// One id space per account, as one CouchDB database per account: [`StoreError::Conflict`]
    /// when a callflow, a user, another document or the account itself has the id.
    async fn check_id_free(conn: &mut Conn<B>, account_id: &str, id: &str) -> StoreResult<()> {
        let used: i64 = sqlx::query_scalar(ID_IN_USE)
            .bind(account_id)
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        if used > 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    /// Unique values of `write` that other documents of the account hold.
    async fn key_conflicts(
        conn: &mut Conn<B>,
        write: &DocumentWrite,
    ) -> StoreResult<Vec<KeyConflict>> {
        let mut found = Vec::new();
        if write.deleted {
            return Ok(found);
        }
        for (kind, value) in &write.keys {
            let holder: Option<String> = sqlx::query_scalar(DOCUMENT_KEY_HOLDER)
                .bind(&write.account_id)
                .bind(kind)
                .bind(value)
                .bind(&write.id)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(doc_id) = holder {
                found.push(KeyConflict {
                    kind: kind.clone(),
                    value: value.clone(),
                    doc_id,
                });
            }
        }
        Ok(found)
    }

    async fn try_write_document(
        store: &B,
        write: &DocumentWrite,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let mut tx = store.begin_write().await?;
        let pos = Self::document_in(store, &mut tx, write, meta).await?;
        Self::end(tx, meta).await?;
        Ok(pos)
    }

    /// A document write's statements (see [`Sql::callflow_in`]).
    async fn document_in(
        store: &B,
        tx: &mut Conn<B>,
        write: &DocumentWrite,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let existed = Self::check_revision(
            &mut *tx,
            DOCUMENT_REV,
            &write.account_id,
            &write.id,
            write.expected_rev.as_deref(),
        )
        .await?;
        let conflicts = Self::key_conflicts(&mut *tx, write).await?;
        if !conflicts.is_empty() {
            return Err(StoreError::KeyTaken(conflicts));
        }
        let now = now_gregorian();
        let text = doc_text(&write.doc);
        let (account_id, id) = (write.account_id.as_str(), write.id.as_str());
        // Everything from here to the revision answers nothing: sent together (`Deferred`).
        let mut deferred = Deferred::default();
        deferred.push(
            UPSERT_DOCUMENT,
            vec![
                Arg::Text(account_id),
                Arg::Text(id),
                Arg::Text(&write.doc_type),
                Arg::Text(&write.new_rev),
                Arg::Int(i64::from(write.deleted)),
                Arg::Text(&text),
                Arg::Int(now),
            ],
        );
        if existed {
            for delete in [DELETE_DOCUMENT_KEYS, DELETE_SEARCH_KEYS, DELETE_OWNERS] {
                deferred.push(delete, vec![Arg::Text(account_id), Arg::Text(id)]);
            }
        }
        if !write.deleted {
            Self::insert_indexes(&mut deferred, account_id, id, &write.doc_type, &write.doc);
            for (kind, value) in &write.keys {
                deferred.push(
                    INSERT_DOCUMENT_KEY,
                    vec![
                        Arg::Text(account_id),
                        Arg::Text(kind),
                        Arg::Text(value),
                        Arg::Text(id),
                    ],
                );
            }
        }
        let record = Record {
            account_id: &write.account_id,
            doc_id: &write.id,
            doc_type: &write.doc_type,
            rev: &write.new_rev,
            op: write.op.as_str(),
            doc_text: Some(&text),
            request_id: Some(&write.request_id),
            now,
        };
        Self::record(store, tx, &record, meta, deferred).await
    }

    async fn write_document(
        store: &B,
        write: &DocumentWrite,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        match Self::try_write_document(store, write, meta).await {
            // A concurrent writer took a unique value (or the id) between our check and our
            // insert: report who holds it now.
            Err(StoreError::UniqueViolation(_)) => {
                let mut conn = store.read().acquire().await?;
                let conflicts = Self::key_conflicts(&mut conn, write).await?;
                if conflicts.is_empty() {
                    Err(StoreError::Conflict)
                } else {
                    Err(StoreError::KeyTaken(conflicts))
                }
            }
            other => other,
        }
    }

    async fn health(store: &B) -> StoreResult<()> {
        // The schema is there and the read side answers...
        sqlx::query(HEALTH_READ).execute(store.read()).await?;
        // ...and a write transaction can be opened (SQLite takes the write lock).
        let mut tx = store.begin_write().await?;
        sqlx::query(HEALTH_WRITE).execute(&mut *tx).await?;
        store.check_writable(&mut tx).await?;
        tx.rollback().await?;
        Ok(())
    }

    async fn create_account(
        store: &B,
        account: &Account,
        api_key: Option<(&str, &str)>,
        admin: Option<&User>,
    ) -> StoreResult<Account> {
        let mut tx = store.begin_write().await?;
        store.lock_accounts(&mut tx).await?;
        // Kazoo's `validate_realm_is_unique` and `validate_account_name_is_unique`: realms
        // compared lower-cased, names by their normalised key.
        let mut taken = Vec::new();
        if let Some(realm) = &account.realm {
            let hit: Option<String> = sqlx::query_scalar(REALM_TAKEN)
                .bind(realm)
                .fetch_optional(&mut *tx)
                .await?;
            if hit.is_some() {
                taken.push(("realm", realm.clone()));
            }
        }
        let hit: Option<String> = sqlx::query_scalar(NAME_TAKEN)
            .bind(search_key(&account.name))
            .fetch_optional(&mut *tx)
            .await?;
        if hit.is_some() {
            taken.push(("name", account.name.clone()));
        }
        if !taken.is_empty() {
            return Err(StoreError::Taken(taken));
        }
        let count: i64 = sqlx::query_scalar(ACCOUNT_COUNT)
            .fetch_one(&mut *tx)
            .await?;
        let mut created = account.clone();
        created.superduper = account.superduper || count == 0;
        let tree = serde_json::to_string(&created.tree).unwrap_or_else(|_| "[]".into());
        let inserted = sqlx::query(INSERT_ACCOUNT)
            .bind(&created.id)
            .bind(&created.name)
            .bind(search_key(&created.name))
            .bind(&created.realm)
            .bind(&created.parent_id)
            .bind(tree)
            .bind(i64::from(created.superduper))
            .bind(api_key.map(|k| k.0))
            .bind(api_key.map(|k| k.1))
            .bind(doc_text(&created.doc))
            .bind(created.created)
            .execute(&mut *tx)
            .await;
        // Another account took the id meanwhile.
        match inserted.map_err(StoreError::from) {
            Err(StoreError::UniqueViolation(_)) => return Err(StoreError::Conflict),
            other => {
                other?;
            }
        }
        if let Some(user) = admin {
            // The first user is an ordinary user document (served by `/users`), with its
            // credentials as argon2 hashes in private fields.
            let now = now_gregorian();
            let mut doc = user.profile.clone();
            doc.insert("_id".into(), Value::String(user.id.clone()));
            doc.insert("username".into(), Value::String(user.username.clone()));
            for (key, value) in [
                ("first_name", &user.first_name),
                ("last_name", &user.last_name),
            ] {
                if let Some(v) = value {
                    doc.insert(key.into(), Value::String(v.clone()));
                }
            }
            doc.insert("enabled".into(), Value::Bool(user.enabled));
            doc.insert("priv_level".into(), Value::String("admin".into()));
            doc.insert("pvt_type".into(), Value::String("user".into()));
            doc.insert("pvt_vsn".into(), Value::String("1".into()));
            doc.insert("pvt_account_id".into(), Value::String(created.id.clone()));
            doc.insert(
                "pvt_account_db".into(),
                Value::String(crate::domain::account_db(&created.id)),
            );
            doc.insert("pvt_created".into(), Value::from(now));
            doc.insert("pvt_modified".into(), Value::from(now));
            doc.insert(USER_MD5_HASH.into(), Value::String(user.md5_hash.clone()));
            doc.insert(USER_SHA1_HASH.into(), Value::String(user.sha1_hash.clone()));
            let rev = crate::domain::callflow::next_revision(None, &doc);
            sqlx::query(UPSERT_DOCUMENT)
                .bind(&created.id)
                .bind(&user.id)
                .bind("user")
                .bind(&rev)
                .bind(0i64)
                .bind(doc_text(&doc))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_DOCUMENT_KEY)
                .bind(&created.id)
                .bind("username")
                .bind(user.username.to_lowercase())
                .bind(&user.id)
                .execute(&mut *tx)
                .await?;
            let text = doc_text(&doc);
            let record = Record {
                account_id: &created.id,
                doc_id: &user.id,
                doc_type: "user",
                rev: &rev,
                op: "create",
                doc_text: Some(&text),
                request_id: None,
                now,
            };
            Self::record(
                store,
                &mut tx,
                &record,
                &WriteMeta::default(),
                Deferred::default(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn setting_or_init(store: &B, key: &str, value: &str) -> StoreResult<String> {
        let mut tx = store.begin_write().await?;
        sqlx::query(INIT_SETTING)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let stored: String = sqlx::query_scalar(SETTING)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }
}

/// Every write runs [`detached`], on a task of its own, so it ends even if the caller is
/// dropped. (The bounds are those of [`Sql`].)
#[async_trait]
impl<B> Store for B
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<&'q str>: Encode<'q, B::Db>,
    for<'q> String: Encode<'q, B::Db> + Decode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<String>: Encode<'q, B::Db>,
    for<'q> Option<i64>: Encode<'q, B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Decode<'q, B::Db> + Type<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    for<'s> &'s str: ColumnIndex<<B::Db as Database>::Row>,
    B::Db: sqlx::database::HasStatementCache,
{
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(PING).execute(self.read()).await?;
        Ok(())
    }

    async fn health(&self) -> StoreResult<()> {
        let this = self.clone();
        let probe = detached(async move { Sql::health(&this).await });
        match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "no write transaction could be opened within {HEALTH_TIMEOUT:?}"
            ))),
        }
    }

    async fn close(&self) {
        self.read().close().await;
        self.write().close().await;
    }

    fn write_marker(&self) -> Option<std::path::PathBuf> {
        Backend::write_marker(self)
    }

    async fn create_account(
        &self,
        account: &Account,
        api_key: Option<(&str, &str)>,
        admin: Option<&User>,
    ) -> StoreResult<Account> {
        let (this, account, admin) = (self.clone(), account.clone(), admin.cloned());
        let api_key = api_key.map(|(a, b)| (a.to_string(), b.to_string()));
        detached(async move {
            let key = api_key.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
            Sql::create_account(&this, &account, key, admin.as_ref()).await
        })
        .await
    }

    async fn all_accounts(&self) -> StoreResult<Vec<Account>> {
        accounts(sqlx::query_as(ALL_ACCOUNTS).fetch_all(self.read()).await?)
    }

    async fn accounts_below(&self, id: &str, direct: bool) -> StoreResult<Vec<Account>> {
        let sql = if direct {
            ACCOUNT_CHILDREN
        } else {
            ACCOUNT_DESCENDANTS
        };
        accounts(sqlx::query_as(sql).bind(id).fetch_all(self.read()).await?)
    }

    async fn account_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(ACCOUNT_COUNT)
            .fetch_one(self.read())
            .await?)
    }

    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(ACCOUNT_BY_ID)
            .bind(id)
            .fetch_optional(self.read())
            .await?;
        row.map(Account::try_from).transpose()
    }

    async fn accounts_by_realm(&self, realm: &str) -> StoreResult<Vec<Account>> {
        accounts(
            sqlx::query_as(ACCOUNTS_BY_REALM)
                .bind(realm)
                .fetch_all(self.read())
                .await?,
        )
    }

    async fn accounts_by_name_key(&self, name_key: &str) -> StoreResult<Vec<Account>> {
        accounts(
            sqlx::query_as(ACCOUNTS_BY_NAME_KEY)
                .bind(name_key)
                .fetch_all(self.read())
                .await?,
        )
    }

    async fn api_key_candidates(&self, prefix: &str) -> StoreResult<Vec<(Account, String)>> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(API_KEY_CANDIDATES)
            .bind(prefix)
            .fetch_all(self.read())
            .await?;
        rows.into_iter()
            .map(|row| Ok((Account::try_from(row.account)?, row.api_key_hash)))
            .collect()
    }

    async fn login_users(&self, account_id: &str) -> StoreResult<Vec<User>> {
        // Users created before user documents existed, then user documents.
        let rows: Vec<UserRow> = sqlx::query_as(LOGIN_USERS)
            .bind(account_id)
            .fetch_all(self.read())
            .await?;
        let mut users: Vec<User> = rows.into_iter().map(User::from).collect();
        let docs: Vec<(String, String)> = sqlx::query_as(USER_DOCUMENTS)
            .bind(account_id)
            .fetch_all(self.read())
            .await?;
        for (id, text) in docs {
            if let Some(user) = login_user(account_id, id, &parse_doc(&text)?) {
                users.push(user);
            }
        }
        Ok(users)
    }

    async fn get_user(&self, account_id: &str, id: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(USER_BY_ID)
            .bind(account_id)
            .bind(id)
            .fetch_optional(self.read())
            .await?;
        if let Some(row) = row {
            return Ok(Some(User::from(row)));
        }
        let doc: Option<DocumentRow> = sqlx::query_as(DOCUMENT_BY_ID)
            .bind(account_id)
            .bind(id)
            .fetch_optional(self.read())
            .await?;
        match doc {
            Some(d) if d.doc_type == "user" && d.deleted == 0 => {
                Ok(login_user(account_id, d.id, &parse_doc(&d.doc)?))
            }
            _ => Ok(None),
        }
    }

    async fn setting_or_init(&self, key: &str, value: &str) -> StoreResult<String> {
        let (this, key, value) = (self.clone(), key.to_string(), value.to_string());
        detached(async move { Sql::setting_or_init(&this, &key, &value).await }).await
    }

    async fn get_callflow(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCallflow>> {
        let row: Option<CallflowRow> = sqlx::query_as(CALLFLOW_BY_ID)
            .bind(account_id)
            .bind(id)
            .fetch_optional(self.read())
            .await?;
        row.map(StoredCallflow::try_from).transpose()
    }

    async fn list_callflows(
        &self,
        account_id: &str,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>> {
        let statement = match (start, descending) {
            (None, false) => LIST_CALLFLOWS_ASC,
            (None, true) => LIST_CALLFLOWS_DESC,
            (Some(_), false) => LIST_CALLFLOWS_FROM_ASC,
            (Some(_), true) => LIST_CALLFLOWS_FROM_DESC,
        };
        let mut query = sqlx::query_as(statement).bind(account_id).bind(limit);
        if let Some(start) = start {
            query = query.bind(start);
        }
        callflows(query.fetch_all(self.read()).await?)
    }

    async fn write_callflow_as(&self, write: &CallflowWrite, meta: &WriteMeta) -> StoreResult<i64> {
        let (this, write, meta) = (self.clone(), write.clone(), meta.clone());
        detached(async move { Sql::grouped(&this, GroupWrite::Callflow(write), meta).await }).await
    }

    async fn purge_as(
        &self,
        kind: &str,
        account_id: &str,
        id: &str,
        expected_rev: &str,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let this = self.clone();
        let (kind, account_id, id, expected_rev, meta) = (
            kind.to_string(),
            account_id.to_string(),
            id.to_string(),
            expected_rev.to_string(),
            meta.clone(),
        );
        detached(
            async move { Sql::purge(&this, &kind, &account_id, &id, &expected_rev, &meta).await },
        )
        .await
    }

    async fn callflows_referencing(
        &self,
        account_id: &str,
        ref_id: &str,
    ) -> StoreResult<Vec<StoredCallflow>> {
        let rows: Vec<CallflowRow> = sqlx::query_as(CALLFLOWS_REFERENCING)
            .bind(account_id)
            .bind(ref_id)
            .fetch_all(self.read())
            .await?;
        callflows(rows)
    }

    async fn documents_by_ids(
        &self,
        account_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<(String, String, Map<String, Value>)>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let statement = documents_by_ids_statement(chunk.len());
            let mut query =
                sqlx::query_as::<_, (String, String, String)>(&statement).bind(account_id);
            for id in chunk {
                query = query.bind(id);
            }
            for (id, doc_type, text) in query.fetch_all(self.read()).await? {
                let mut doc = parse_doc(&text)?;
                if doc_type == "user" {
                    let names: Option<(String, Option<String>, Option<String>)> =
                        sqlx::query_as(USER_NAMES)
                            .bind(account_id)
                            .bind(&id)
                            .fetch_optional(self.read())
                            .await?;
                    if let Some((_, first, last)) = names {
                        for (key, value) in [("first_name", first), ("last_name", last)] {
                            if let Some(v) = value {
                                doc.entry(key).or_insert(Value::String(v));
                            }
                        }
                    }
                }
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
        Ok(sqlx::query_scalar(DOCUMENT_BY_KEY)
            .bind(account_id)
            .bind(key_kind)
            .bind(value)
            .fetch_optional(self.read())
            .await?)
    }

    async fn get_document(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<(String, StoredCallflow)>> {
        let row: Option<DocumentRow> = sqlx::query_as(DOCUMENT_BY_ID)
            .bind(account_id)
            .bind(id)
            .fetch_optional(self.read())
            .await?;
        row.map(|r| {
            Ok((
                r.doc_type,
                StoredCallflow {
                    id: r.id,
                    rev: r.rev,
                    deleted: r.deleted != 0,
                    doc: parse_doc(&r.doc)?,
                },
            ))
        })
        .transpose()
    }

    async fn list_documents(
        &self,
        account_id: &str,
        doc_type: &str,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>> {
        let statement = match (start, descending) {
            (None, false) => LIST_DOCUMENTS_ASC,
            (None, true) => LIST_DOCUMENTS_DESC,
            (Some(_), false) => LIST_DOCUMENTS_FROM_ASC,
            (Some(_), true) => LIST_DOCUMENTS_FROM_DESC,
        };
        let mut query = sqlx::query_as(statement)
            .bind(account_id)
            .bind(limit)
            .bind(doc_type);
        if let Some(start) = start {
            query = query.bind(start);
        }
        callflows(query.fetch_all(self.read()).await?)
    }

    async fn write_document_as(&self, write: &DocumentWrite, meta: &WriteMeta) -> StoreResult<i64> {
        let (this, write, meta) = (self.clone(), write.clone(), meta.clone());
        detached(async move { Sql::grouped(&this, GroupWrite::Document(write), meta).await }).await
    }

    async fn write_batch(
        &self,
        writes: Vec<BatchWrite>,
        meta: &WriteMeta,
    ) -> StoreResult<Vec<StoreResult<i64>>> {
        let (this, meta) = (self.clone(), meta.clone());
        detached(async move { Sql::batch(&this, &writes, &meta).await }).await
    }

    async fn list_deleted(
        &self,
        account_id: &str,
        doc_type: Option<&str>,
        start: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> StoreResult<Vec<StoredCallflow>> {
        let statement = deleted_statement(doc_type.is_some(), start.is_some(), descending);
        let mut query = sqlx::query_as(&statement).bind(account_id).bind(limit);
        if let Some(start) = start {
            query = query.bind(start);
        }
        if let Some(doc_type) = doc_type {
            query = query.bind(doc_type);
        }
        callflows(query.fetch_all(self.read()).await?)
    }

    async fn revisions(
        &self,
        account_id: &str,
        doc_id: &str,
        at_or_below: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RevisionInfo>> {
        let statement = format!(
            "SELECT {REVISION_COLUMNS} FROM revisions WHERE account_id = $1 AND doc_id = $2 \
             AND number <= $3 ORDER BY number DESC LIMIT $4"
        );
        let rows: Vec<RevisionRow> = sqlx::query_as(&statement)
            .bind(account_id)
            .bind(doc_id)
            .bind(at_or_below.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(self.read())
            .await?;
        Ok(rows.into_iter().map(RevisionInfo::from).collect())
    }

    async fn revision(
        &self,
        account_id: &str,
        doc_id: &str,
        number: i64,
    ) -> StoreResult<Option<Revision>> {
        let statement = format!(
            "SELECT {REVISION_COLUMNS}, doc FROM revisions \
             WHERE account_id = $1 AND doc_id = $2 AND number = $3"
        );
        let row: Option<FullRevisionRow> = sqlx::query_as(&statement)
            .bind(account_id)
            .bind(doc_id)
            .bind(number)
            .fetch_optional(self.read())
            .await?;
        row.map(|r| {
            Ok(Revision {
                doc: parse_doc(&r.doc)?,
                info: r.info.into(),
            })
        })
        .transpose()
    }

    async fn prune_revisions(&self, before: i64) -> StoreResult<u64> {
        let this = self.clone();
        detached(async move {
            let mut tx = this.begin_write().await?;
            let gone: Vec<String> =
                sqlx::query_scalar(&format!("{PRUNE_OLD_REVISIONS} RETURNING doc_id"))
                    .bind(before)
                    .fetch_all(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(gone.len() as u64)
        })
        .await
    }

    async fn changes_since(
        &self,
        account_id: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<Change>> {
        let statement = format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE account_id = $1 AND pos > $2 \
             ORDER BY pos LIMIT $3"
        );
        let rows: Vec<ChangeRow> = sqlx::query_as(&statement)
            .bind(account_id)
            .bind(after)
            .bind(limit)
            .fetch_all(self.read())
            .await?;
        Ok(rows.into_iter().map(Change::from).collect())
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<Change>> {
        Sql::audit(self, query).await
    }

    async fn get_draft(&self, account_id: &str, callflow_id: &str) -> StoreResult<Option<Draft>> {
        let statement = format!(
            "SELECT {DRAFT_COLUMNS} FROM drafts WHERE account_id = $1 AND callflow_id = $2"
        );
        let row: Option<DraftRow> = sqlx::query_as(&statement)
            .bind(account_id)
            .bind(callflow_id)
            .fetch_optional(self.read())
            .await?;
        row.map(Draft::try_from).transpose()
    }

    async fn list_drafts(&self, account_id: &str) -> StoreResult<Vec<Draft>> {
        let statement = format!(
            "SELECT {DRAFT_COLUMNS} FROM drafts WHERE account_id = $1 ORDER BY callflow_id"
        );
        let rows: Vec<DraftRow> = sqlx::query_as(&statement)
            .bind(account_id)
            .fetch_all(self.read())
            .await?;
        rows.into_iter().map(Draft::try_from).collect()
    }

    async fn write_draft(&self, write: &DraftWrite, meta: &WriteMeta) -> StoreResult<i64> {
        let (this, write, meta) = (self.clone(), write.clone(), meta.clone());
        detached(async move { Sql::write_draft(&this, &write, &meta).await }).await
    }

    async fn delete_draft(
        &self,
        account_id: &str,
        callflow_id: &str,
        expected_rev: &str,
        request_id: &str,
        meta: &WriteMeta,
    ) -> StoreResult<i64> {
        let this = self.clone();
        let (account_id, callflow_id, expected_rev, request_id, meta) = (
            account_id.to_string(),
            callflow_id.to_string(),
            expected_rev.to_string(),
            request_id.to_string(),
            meta.clone(),
        );
        detached(async move {
            Sql::delete_draft(
                &this,
                &account_id,
                &callflow_id,
                &expected_rev,
                Some(&request_id),
                &meta,
            )
            .await
        })
        .await
    }

    async fn callflows_with_number(
        &self,
        account_id: &str,
        number: &str,
    ) -> StoreResult<Vec<StoredCallflow>> {
        callflows(
            sqlx::query_as(CALLFLOWS_WITH_NUMBER)
                .bind(account_id)
                .bind(number)
                .fetch_all(self.read())
                .await?,
        )
    }

    async fn search_candidates(
        &self,
        account_id: &str,
        doc_type: &str,
        views: (&str, &str),
        prefix: &str,
    ) -> StoreResult<Vec<StoredCallflow>> {
        let Some(end) = prefix_end(prefix) else {
            return Err(StoreError::Other(anyhow::anyhow!(
                "a search prefix must be non-empty ASCII"
            )));
        };
        let statement = if doc_type == "callflow" {
            SEARCH_CALLFLOWS
        } else {
            SEARCH_DOCUMENTS
        };
        callflows(
            sqlx::query_as(statement)
                .bind(account_id)
                .bind(doc_type)
                .bind(views.0)
                .bind(views.1)
                .bind(prefix)
                .bind(end.as_str())
                .fetch_all(self.read())
                .await?,
        )
    }

    async fn documents_owned_by(
        &self,
        account_id: &str,
        doc_type: &str,
        owner_id: &str,
    ) -> StoreResult<Vec<(StoredCallflow, bool)>> {
        let rows: Vec<OwnedRow> = sqlx::query_as(DOCUMENTS_OWNED_BY)
            .bind(account_id)
            .bind(owner_id)
            .bind(doc_type)
            .fetch_all(self.read())
            .await?;
        rows.into_iter()
            .map(|row| {
                let hotdesked = row.hotdesked != 0;
                Ok((StoredCallflow::try_from(row.document)?, hotdesked))
            })
            .collect()
    }

    async fn index_stored_documents(&self) -> StoreResult<()> {
        let this = self.clone();
        detached(async move { Sql::index_stored_documents(&this).await }).await
    }

    fn subscribe_changes(&self) -> Option<UnboundedReceiver<ChangeEvent>> {
        self.change_events()
    }

    async fn route_keys(&self, account_id: &str) -> StoreResult<Vec<RouteKey>> {
        // One row per callflow with its keys as a JSON array: a million-number account loads
        // in a thousand rows instead of a million.
        let mut keys = Vec::new();
        for (kind, statement) in [
            (KeyKind::Number, B::NUMBER_KEYS),
            (KeyKind::Pattern, B::PATTERN_KEYS),
        ] {
            let rows: Vec<RouteKeysRow> = sqlx::query_as(statement)
                .bind(account_id)
                .fetch_all(self.read())
                .await?;
            for row in rows {
                let values: Vec<String> = serde_json::from_str(&row.route_keys).map_err(|e| {
                    StoreError::Other(anyhow::anyhow!("routing keys of {}: {e}", row.callflow_id))
                })?;
                keys.extend(values.into_iter().map(|value| RouteKey {
                    kind,
                    value,
                    callflow_id: row.callflow_id.clone(),
                }));
            }
        }
        Ok(keys)
    }

    async fn callflow_route_keys(
        &self,
        account_id: &str,
        callflow_id: &str,
    ) -> StoreResult<(Vec<String>, Vec<String>)> {
        let numbers: Vec<String> = sqlx::query_scalar(CALLFLOW_NUMBERS)
            .bind(account_id)
            .bind(callflow_id)
            .fetch_all(self.read())
            .await?;
        let patterns: Vec<String> = sqlx::query_scalar(CALLFLOW_PATTERNS)
            .bind(account_id)
            .bind(callflow_id)
            .fetch_all(self.read())
            .await?;
        Ok((numbers, patterns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_shift_past_the_statements_before() {
        let mut out = String::new();
        shift_placeholders(
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $10) -- json '$.name' costs $ 5",
            7,
            &mut out,
        );
        assert_eq!(
            out,
            "INSERT INTO t (a, b) VALUES ($8, $9), ($10, $17) -- json '$.name' costs $ 5"
        );
        let mut out = String::from("x;");
        shift_placeholders("DELETE FROM t WHERE id = $1", 0, &mut out);
        assert_eq!(out, "x;DELETE FROM t WHERE id = $1");
    }

    /// Joined statements bind each one's parameters, and a failing one fails the query.
    #[tokio::test]
    async fn deferred_statements_run_joined_on_sqlite() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("memory database");
        sqlx::query("CREATE TABLE t (a TEXT PRIMARY KEY, b INTEGER, c TEXT)")
            .execute(&mut conn)
            .await
            .expect("table");
        let owned = String::from("owned");
        let mut deferred = Deferred::default();
        deferred.push(
            "INSERT INTO t (a, b, c) VALUES ($1, $2, $3)",
            vec![Arg::Text("x"), Arg::Int(1), Arg::MaybeText(None)],
        );
        deferred.push(
            "INSERT INTO t (a, b, c) VALUES ($1, $2, $3), ($4, $5, $6)",
            vec![
                Arg::Owned(owned.clone()),
                Arg::Int(2),
                Arg::Text("second"),
                Arg::Text("y"),
                Arg::Int(3),
                Arg::MaybeText(Some("third")),
            ],
        );
        deferred.push(
            "UPDATE t SET b = b + $1 WHERE a = $2",
            vec![Arg::Int(10), Arg::Text("x")],
        );
        Sql::<super::super::sqlite::SqliteStore>::flush(&mut conn, &mut deferred)
            .await
            .expect("joined statements run");
        assert!(deferred.statements.is_empty());
        let rows: Vec<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT a, b, c FROM t ORDER BY a")
                .fetch_all(&mut conn)
                .await
                .expect("rows");
        assert_eq!(
            rows,
            vec![
                ("owned".into(), 2, Some("second".into())),
                ("x".into(), 11, None),
                ("y".into(), 3, Some("third".into())),
            ]
        );
        // A duplicate key in the second statement fails the whole query.
        deferred.push(
            "INSERT INTO t (a, b) VALUES ($1, $2)",
            vec![Arg::Text("z"), Arg::Int(4)],
        );
        deferred.push(
            "INSERT INTO t (a, b) VALUES ($1, $2)",
            vec![Arg::Text("x"), Arg::Int(5)],
        );
        let failed =
            Sql::<super::super::sqlite::SqliteStore>::flush(&mut conn, &mut deferred).await;
        assert!(failed.is_err(), "a failing statement fails the flush");
    }
}
