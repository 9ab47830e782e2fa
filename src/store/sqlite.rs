//! SQLite backend: the embedded default. WAL mode, full fsync on commit, and a single
//! writer connection so write transactions never fight over the lock; reads use a pool.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sql::impl_sql_store;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
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
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { read, write })
    }
}

impl SqliteStore {
    /// SQLite has no cross-process push; a single node sees its own writes directly.
    async fn announce(
        &self,
        _tx: &mut sqlx::SqliteConnection,
        _account_id: &str,
        _callflow_id: &str,
        _seq: i64,
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    fn change_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<super::ChangeEvent>> {
        None
    }
}

// BEGIN IMMEDIATE takes the write lock up front, so a transaction that reads then writes can
// never fail half-way because another process (e.g. `callflowd create-account`) wrote first.
impl_sql_store!(SqliteStore, sqlx::Sqlite, json_agg: "json_group_array({})", |pool| pool
    .begin_with("BEGIN IMMEDIATE")
    .await);
