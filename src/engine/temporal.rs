//! Temporal rule evaluation for `temporal_route` (Kazoo's `cf_temporal_route` rule engine).
//!
//! Owns deciding which child a temporal_route node takes at a given moment. Must not read a
//! clock or a store: time, timezone and documents are handed in.
// placeholder, replaced on merge

use serde_json::{Map, Value};

/// Which child a temporal_route takes, and why.
pub struct Decision {
    pub child_key: String,
    pub matched_rule: Option<String>,
    pub checks: Vec<RuleCheck>,
    pub quirks: Vec<Quirk>,
    /// Kazoo's process crashes (function_clause); the executor continues to `_`.
    pub crashed: bool,
}

/// One rule looked at.
pub struct RuleCheck {
    pub rule_id: String,
    pub name: Option<String>,
    pub matched: bool,
    pub reason: String,
}

/// A Kazoo quirk that affected the decision.
pub struct Quirk {
    pub id: &'static str,
    pub explanation: String,
}

/// `child_keys`: the node's child keys in JSON order. `account_timezone`: the account doc's
/// timezone if any.
pub fn evaluate(
    data: &Map<String, Value>,
    child_keys: &[&str],
    now: chrono::DateTime<chrono::Utc>,
    account_timezone: Option<&str>,
    docs: &dyn super::Documents,
) -> Decision {
    let _ = (data, child_keys, now, account_timezone, docs);
    Decision {
        child_key: "_".into(),
        matched_rule: None,
        checks: vec![],
        quirks: vec![],
        crashed: false,
    }
}
