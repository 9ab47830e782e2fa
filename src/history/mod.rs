//! History: what the save pipeline wrote, read back. Revisions of every document, the
//! differences between two of them, the change feed (and its followers), the audit, and
//! revision retention.
//!
//! Owns: how revisions and changes are shown (the rows the endpoints answer), the diff
//! renderings ([`diff`]), following the feed ([`feed`]) and the pruning task. Must not write
//! documents: rollbacks, restores, drafts and dry runs are writes, so they go through the save
//! pipeline (`documents::pipeline`, `documents::drafts`). Must not know about HTTP or SQL.

pub mod diff;
pub mod feed;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::domain::GREGORIAN_OFFSET;
use crate::store::{Change, DynStore, RevisionInfo};

/// Gregorian seconds as RFC 3339 (UTC).
pub fn rfc3339(gregorian: i64) -> String {
    DateTime::<Utc>::from_timestamp(gregorian - GREGORIAN_OFFSET, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A time filter value: Gregorian seconds (Kazoo's unit), or an RFC 3339 date-time.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(n) = text.trim().parse::<i64>() {
        return Some(n);
    }
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp() + GREGORIAN_OFFSET)
}

fn put_optional(row: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        row.insert(key.into(), json!(v));
    }
}

/// A row of a document's revision list.
pub fn revision_row(info: &RevisionInfo) -> Value {
    let mut row = Map::new();
    row.insert("revision".into(), json!(info.number));
    row.insert("rev".into(), json!(info.rev));
    row.insert("kind".into(), json!(info.op));
    row.insert("type".into(), json!(info.doc_type));
    row.insert("timestamp".into(), json!(info.written_at));
    row.insert("time".into(), json!(rfc3339(info.written_at)));
    put_optional(&mut row, "auth_account_id", &info.auth_account_id);
    put_optional(&mut row, "user_id", &info.auth_user_id);
    put_optional(&mut row, "request_id", &info.request_id);
    put_optional(&mut row, "message", &info.message);
    Value::Object(row)
}

/// A change, as the feed and the audit show it.
pub fn change_row(change: &Change) -> Value {
    let mut row = Map::new();
    row.insert("seq".into(), json!(change.pos));
    row.insert("account_id".into(), json!(change.account_id));
    row.insert("type".into(), json!(change.doc_type));
    row.insert("id".into(), json!(change.doc_id));
    if let Some(n) = change.number {
        row.insert("revision".into(), json!(n));
    }
    row.insert("rev".into(), json!(change.rev));
    row.insert("kind".into(), json!(change.op));
    row.insert("timestamp".into(), json!(change.written_at));
    row.insert("time".into(), json!(rfc3339(change.written_at)));
    put_optional(&mut row, "auth_account_id", &change.auth_account_id);
    put_optional(&mut row, "user_id", &change.auth_user_id);
    put_optional(&mut row, "request_id", &change.request_id);
    put_optional(&mut row, "message", &change.message);
    Value::Object(row)
}

/// The document type a filter names: a `pvt_type` (`callflow`, `device`, `callflow_draft`)
/// or a URL segment (`callflows`, `devices`).
pub fn doc_type_named(name: &str) -> String {
    if name == "callflows" {
        return "callflow".into();
    }
    crate::documents::by_segment(name)
        .map(|t| t.pvt_type.to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Retention by age: every hour (and once at start) removes the revisions older than
/// `keep_days` days, except each document's latest. Every node may run it; the deletes are
/// idempotent.
pub fn spawn_pruner(store: DynStore, keep_days: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let age = i64::try_from(keep_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
            let before = crate::domain::now_gregorian().saturating_sub(age);
            match store.prune_revisions(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(revisions = n, keep_days, "old revisions pruned"),
                Err(error) => tracing::warn!(%error, "pruning old revisions failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_gregorian_seconds_or_rfc3339() {
        assert_eq!(parse_time("63000000000"), Some(63_000_000_000));
        let t = parse_time("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(rfc3339(t), "2024-01-02T03:04:05Z");
        assert_eq!(parse_time("yesterday"), None);
    }
}
