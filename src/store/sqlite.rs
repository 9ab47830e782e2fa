//! SQLite backend: the embedded default. WAL mode, full fsync on commit, and a single
//! writer connection so write transactions never fight over the lock; reads use a pool.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sql::{
    discard_if_in_transaction, Backend, FeedEntry, GroupCommit, INSERT_CHANGE, NEXT_POSITION,
};
use super::{ChangeEvent, FaultSwitch, StoreError};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    /// Test hook: a page cap applied to every writer connection (0: none). See
    /// [`SqliteStore::limit_pages_for_test`].
    page_limit: Arc<AtomicU64>,
    /// Test hook: see [`FaultSwitch`].
    faults: FaultSwitch,
    /// `<file>-writes` beside the database file (see [`super::CachedStore`]); `None` in memory.
    marker: Option<Arc<std::path::PathBuf>>,
    /// Concurrent document writes share one transaction and one fsync.
    group: Arc<GroupCommit>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://path`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = || {
            SqlitePoolOptions::new()
                .acquire_timeout(Duration::from_secs(10))
                .before_acquire(|conn, _| discard_if_in_transaction(conn))
                .after_release(|conn, _| discard_if_in_transaction(conn))
        };
        let write_options_filename = options.get_filename().to_path_buf();
        let page_limit = Arc::new(AtomicU64::new(0));
        let limit = page_limit.clone();
        let write = pool()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let pages = limit.load(Ordering::Relaxed);
                Box::pin(async move {
                    // The one writer keeps more of the indexes it checks in memory (16 MiB
                    // instead of SQLite's 2 MiB): fewer page reads per write as they grow.
                    sqlx::query("PRAGMA cache_size = -16384")
                        .execute(&mut *conn)
                        .await?;
                    if pages > 0 {
                        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = pool()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        let file = write_options_filename;
        let marker = (!file.as_os_str().is_empty() && file != std::path::Path::new(":memory:"))
            .then(|| {
                let mut name = file.as_os_str().to_owned();
                name.push("-writes");
                Arc::new(std::path::PathBuf::from(name))
            });
        Ok(Self {
            read,
            write,
            page_limit,
            faults: FaultSwitch::default(),
            marker,
            group: Default::default(),
        })
    }
}

impl SqliteStore {
    /// Transactions the group commit has committed (each holding one or more writes).
    pub fn group_commits(&self) -> u64 {
        self.group.commits()
    }

    /// Test hook: the switch that makes writes fail before their revision (see
    /// [`FaultSwitch`]).
    pub fn faults_for_test(&self) -> FaultSwitch {
        self.faults.clone()
    }

    /// Test hook: caps the database file at `pages` pages on the writer connection, so the next
    /// write that needs more space fails with SQLite's "database or disk is full", exactly as
    /// a full disk would (`None` lifts the cap). The cap also applies to connections opened later, so it lasts until lifted.
    /// Used by the full-disk regression test.
    pub async fn limit_pages_for_test(&self, pages: Option<u64>) -> anyhow::Result<()> {
        self.page_limit.store(pages.unwrap_or(0), Ordering::Relaxed);
        let limit = pages.unwrap_or(1_073_741_823);
        let mut conn = self.write.acquire().await?;
        sqlx::query(&format!("PRAGMA max_page_count = {limit}"))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for SqliteStore {
    type Db = sqlx::Sqlite;

    const NUMBER_KEYS: &'static str = "SELECT callflow_id, json_group_array(number) AS route_keys \
         FROM callflow_numbers WHERE account_id = $1 GROUP BY callflow_id";
    const PATTERN_KEYS: &'static str =
        "SELECT callflow_id, json_group_array(pattern) AS route_keys \
         FROM callflow_patterns WHERE account_id = $1 GROUP BY callflow_id";
    const JOINS_STATEMENTS: bool = true;

    fn read(&self) -> &SqlitePool {
        &self.read
    }

    fn write(&self) -> &SqlitePool {
        &self.write
    }

    /// BEGIN IMMEDIATE takes the write lock up front, so a transaction that reads then writes
    /// can never fail half-way because another process (e.g. `callflowd create-account`)
    /// wrote first.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.write.begin_with("BEGIN IMMEDIATE").await
    }

    /// SQLite has no cross-process push; a single node sees its own writes directly.
    async fn announce(
        &self,
        _tx: &mut sqlx::SqliteConnection,
        _account_id: &str,
        _doc_type: &str,
        _id: &str,
        _seq: i64,
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// The single writer already serialises account creation.
    async fn lock_accounts(&self, _tx: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// The single writer already serialises writes.
    async fn lock_account_patterns(
        &self,
        _tx: &mut sqlx::SqliteConnection,
        _account_id: &str,
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// `BEGIN IMMEDIATE` already proved the write lock can be taken.
    async fn check_writable(&self, _tx: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
        Ok(())
    }

    fn change_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ChangeEvent>> {
        None
    }

    fn group_commit(&self) -> Option<&GroupCommit> {
        Some(&self.group)
    }

    fn write_marker(&self) -> Option<std::path::PathBuf> {
        self.marker.as_deref().cloned()
    }

    fn fail_revision_writes(&self) -> bool {
        self.faults.is_on()
    }

    /// Two statements; the single writer already orders every write, and nobody is told.
    async fn feed_step(
        &self,
        tx: &mut sqlx::SqliteConnection,
        e: &FeedEntry<'_>,
    ) -> Result<i64, sqlx::Error> {
        let pos: i64 = sqlx::query_scalar(NEXT_POSITION)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(INSERT_CHANGE)
            .bind(e.account_id)
            .bind(e.doc_id)
            .bind(e.rev)
            .bind(e.op)
            .bind(e.now)
            .bind(e.doc_type)
            .bind(pos)
            .bind(e.number)
            .bind(e.auth_account_id)
            .bind(e.auth_user_id)
            .bind(e.request_id)
            .bind(e.message)
            .execute(&mut *tx)
            .await?;
        Ok(pos)
    }
}
