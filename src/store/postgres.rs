//! PostgreSQL backend: one pool; the same statements as SQLite (see `sql.rs`). Uniqueness
//! races between nodes end in a unique-key violation inside the losing transaction, which is
//! reported as the same Kazoo uniqueness error.

use std::str::FromStr;
use std::time::Duration;

use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

use super::sql::{discard_if_in_transaction, Backend, FeedEntry, INSERT_CHANGE};
use super::{ChangeEvent, FaultSwitch, StoreError};

/// The NOTIFY channel every write announces itself on.
const CHANNEL: &str = "callflowd_changes";

#[derive(Debug, Clone)]
pub struct PgStore {
    read: PgPool,
    write: PgPool,
    /// Tags this process's notifications so it can skip its own.
    origin: String,
    /// Test hook: see [`FaultSwitch`].
    faults: FaultSwitch,
}

impl PgStore {
    /// Connects to `url` and applies the PostgreSQL migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .before_acquire(|conn, _| discard_if_in_transaction(conn))
            .after_release(|conn, _| discard_if_in_transaction(conn))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
            origin: crate::domain::new_id(),
            faults: FaultSwitch::default(),
        })
    }

    /// Test hook: the switch that makes writes fail before their revision (see
    /// [`FaultSwitch`]).
    pub fn faults_for_test(&self) -> FaultSwitch {
        self.faults.clone()
    }

    /// Creates an empty database next to the one `admin_url` names and returns its URL
    /// (test isolation: every test app gets its own database).
    pub async fn scratch_database(admin_url: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let name = format!("callflowd_test_{}", crate::domain::new_id());
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let mut url = url::Url::parse(admin_url)?;
        url.set_path(&format!("/{name}"));
        Ok(url.to_string())
    }
}

#[async_trait::async_trait]
impl Backend for PgStore {
    type Db = sqlx::Postgres;

    const NUMBER_KEYS: &'static str = "SELECT callflow_id, json_agg(number)::text AS route_keys \
         FROM callflow_numbers WHERE account_id = $1 GROUP BY callflow_id";
    const PATTERN_KEYS: &'static str = "SELECT callflow_id, json_agg(pattern)::text AS route_keys \
         FROM callflow_patterns WHERE account_id = $1 GROUP BY callflow_id";

    fn read(&self) -> &PgPool {
        &self.read
    }

    fn write(&self) -> &PgPool {
        &self.write
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.write.begin().await
    }

    /// NOTIFY inside the write transaction: delivered to every listener when, and only if,
    /// the transaction commits.
    async fn announce(
        &self,
        tx: &mut sqlx::PgConnection,
        account_id: &str,
        doc_type: &str,
        id: &str,
        seq: i64,
    ) -> Result<(), sqlx::Error> {
        let payload = json!({"a": account_id, "c": id, "t": doc_type, "s": seq, "o": self.origin})
            .to_string();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Serialises pattern-adding writes of one account (on every node) for the length of the
    /// transaction, so the per-account pattern cap is counted exactly.
    async fn lock_account_patterns(
        &self,
        tx: &mut sqlx::PgConnection,
        account_id: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(account_id)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Serialises account creation across nodes, so two accounts can never take the same
    /// realm or name (the checks read, then insert).
    async fn lock_accounts(&self, tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
            .execute(tx)
            .await?;
        Ok(())
    }

    /// A standby (or a database switched to read-only) cannot take writes.
    async fn check_writable(&self, tx: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        let (read_only,): (String,) =
            sqlx::query_as("SELECT current_setting('transaction_read_only')")
                .fetch_one(tx)
                .await?;
        if read_only == "on" {
            return Err(StoreError::Unavailable(anyhow::anyhow!(
                "the database accepts no writes (read-only)"
            )));
        }
        Ok(())
    }

    fn fail_revision_writes(&self) -> bool {
        self.faults.is_on()
    }

    /// The change row and the `NOTIFY`; the position is taken at commit by the deferred
    /// trigger `changes_feed_position` (migration 8), so no round trip happens while the
    /// `feed` row is locked. Answers the change's row id (the position is not known yet).
    async fn feed_step(
        &self,
        tx: &mut sqlx::PgConnection,
        e: &FeedEntry<'_>,
    ) -> Result<i64, sqlx::Error> {
        let seq: i64 = sqlx::query_scalar(INSERT_CHANGE)
            .bind(e.account_id)
            .bind(e.doc_id)
            .bind(e.rev)
            .bind(e.op)
            .bind(e.now)
            .bind(e.doc_type)
            .bind(None::<i64>)
            .bind(e.number)
            .bind(e.auth_account_id)
            .bind(e.auth_user_id)
            .bind(e.request_id)
            .bind(e.message)
            .fetch_one(&mut *tx)
            .await?;
        self.announce(tx, e.account_id, e.doc_type, e.doc_id, seq)
            .await?;
        Ok(seq)
    }

    /// Listens for other processes' writes. The listener reconnects by itself; each time it
    /// (re)connects it sends `Resync`, because notifications sent while it was away are lost.
    fn group_commit(&self) -> Option<&super::sql::GroupCommit> {
        None
    }

    /// Several nodes write to one database: no marker, no local cache.
    fn write_marker(&self) -> Option<std::path::PathBuf> {
        None
    }

    fn change_events(&self) -> Option<mpsc::UnboundedReceiver<ChangeEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = self.read.clone();
        let origin = self.origin.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener cannot connect; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                backoff = Duration::from_millis(100);
                tracing::info!("listening for changes from other nodes");
                // Anything committed before LISTEN took effect was not announced to us.
                if tx.send(ChangeEvent::Resync).is_err() {
                    return;
                }
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => {
                            let Ok(v) = serde_json::from_str::<serde_json::Value>(n.payload())
                            else {
                                continue;
                            };
                            if v["o"].as_str() == Some(origin.as_str()) {
                                continue;
                            }
                            let (Some(a), Some(c)) = (v["a"].as_str(), v["c"].as_str()) else {
                                continue;
                            };
                            let event = match v["t"].as_str() {
                                None | Some("callflow") => ChangeEvent::Changed {
                                    account_id: a.to_string(),
                                    callflow_id: c.to_string(),
                                },
                                Some(doc_type) => ChangeEvent::Document {
                                    account_id: a.to_string(),
                                    doc_type: doc_type.to_string(),
                                    id: c.to_string(),
                                },
                            };
                            if tx.send(event).is_err() {
                                return;
                            }
                        }
                        Ok(None) | Err(_) => {
                            tracing::warn!("change listener lost its connection; dropping caches and reconnecting");
                            if tx.send(ChangeEvent::Resync).is_err() {
                                return;
                            }
                            break;
                        }
                    }
                }
            }
        });
        Some(rx)
    }
}
