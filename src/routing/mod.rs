//! Routing: which callflow a dialled number reaches, and why.
//!
//! Owns: the pattern dialect ([`pattern`]), per-account snapshots ([`table`]) and their cache
//! ([`cache`]), plus a plain reference implementation of Kazoo's algorithm ([`reference`])
//! that tests and benchmarks compare the engine with, and the account-wide analysis of which
//! pattern wins for what ([`analysis`]). Must not touch HTTP or SQL.

pub mod analysis;
pub mod cache;
#[doc(hidden)]
pub mod generator;
pub mod numbers;
pub mod pattern;
pub mod reference;
pub mod table;

pub use cache::RouteCache;
pub use table::{MatchKind, Route, RouteTable};

/// What a lookup reports: the winner, its document, how it matched, and every pattern that
/// matched with its capture.
pub fn lookup_data(route: &Route<'_>, doc: serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut data = Map::new();
    data.insert("callflow_id".into(), json!(route.callflow_id));
    data.insert("callflow".into(), doc);
    data.insert(
        "match".into(),
        json!({"type": route.kind.as_str(), "value": route.value}),
    );
    if let Some(c) = &route.capture_group {
        data.insert("capture_group".into(), json!(c));
    }
    if !route.capture_groups.is_empty() {
        data.insert("capture_groups".into(), json!(route.capture_groups));
    }
    let matched: Vec<Value> = route
        .hits
        .iter()
        .map(|h| json!({"pattern": h.pattern, "callflow_id": h.callflow_id, "capture": h.capture, "length": h.capture.len()}))
        .collect();
    data.insert(
        "explain".into(),
        json!({"reason": route.reason, "matched_patterns": matched}),
    );
    Value::Object(data)
}
