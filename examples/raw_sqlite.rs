//! The naive ceiling for durable writes, for `bench/load`: inserts callflow documents into a
//! SQLite file, one transaction (and so one fsync) each, with the settings callflowd uses
//! (WAL, `synchronous=FULL`), from one connection for `seconds`, and prints the rate.
//!
//! `cargo run --release --example raw_sqlite -- /tmp/raw.db 5 body.json [BATCH]`
//!
//! With `BATCH` (default 1), that many inserts share each transaction: `bench/import`'s
//! baseline, the naive ceiling for its batches.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/tmp/raw_sqlite.db".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let doc = match args.next() {
        Some(p) => std::fs::read_to_string(p)?,
        None => r#"{"numbers":["+15550000000"],"flow":{"module":"user","data":{"id":"u"}}}"#.into(),
    };
    let batch: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let _ = std::fs::remove_file(&path);
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
    sqlx::query("CREATE TABLE docs (id TEXT PRIMARY KEY, number TEXT UNIQUE, doc TEXT NOT NULL)")
        .execute(&mut conn)
        .await?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let mut tx = conn.begin().await?;
        for _ in 0..batch {
            sqlx::query("INSERT INTO docs (id, number, doc) VALUES (?, ?, ?)")
                .bind(format!("{n:032x}"))
                .bind(format!("+1555{n:07}"))
                .bind(&doc)
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        tx.commit().await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw_sqlite inserts={n} seconds={secs:.2} per_sec={:.0}",
        n as f64 / secs
    );
    Ok(())
}
