//! PostgreSQL backend: one pool; the same statements as SQLite (see `sql.rs`). Uniqueness
//! races between nodes end in a unique-key violation inside the losing transaction, which is
//! reported as the same Kazoo uniqueness error.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::impl_sql_store;

#[derive(Debug, Clone)]
pub struct PgStore {
    read: PgPool,
    write: PgPool,
}

impl PgStore {
    /// Connects to `url` and applies the PostgreSQL migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
        })
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

    /// The pool, for callers that need PostgreSQL-only features (LISTEN/NOTIFY).
    pub fn pool(&self) -> &PgPool {
        &self.read
    }
}

impl_sql_store!(PgStore, sqlx::Postgres, json_agg: "json_agg({})::text", |pool| pool.begin().await);
