//! Lint: the mistakes Kazoo accepts on save and finds only during a call (a feature code that
//! steals another's numbers, a jump to a deleted callflow, a loop between callflows, a menu key
//! nobody can press, ...), reported as findings with a stable rule id, a severity, the JSON
//! path of the node or field, a message and, where it helps, a suggested fix.
//!
//! Owns the rule table ([`RULES`], one file per rule), the account snapshot the rules read
//! ([`Snapshot`], loaded from the store once per request), and the saved call tests
//! ([`calltests`]) that guard every write. Must not know about HTTP; must not write anything
//! but the call tests' last results. Module facts come from the engine's table
//! ([`crate::engine::modules::child_keys`]), routing facts from
//! [`crate::routing::analysis`]; no rule compiles a regex itself.

mod callflow_loop;
pub mod calltests;
mod carrier_fallback;
mod failure_key;
mod menu_fallback;
mod missing_reference;
mod number_shadowed;
mod pattern_never_routes;
mod pattern_shadowed;
mod schema_default;
mod unreachable_child;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::documents::pipeline::{self, Pipeline};
use crate::routing::analysis::PatternReport;
use crate::routing::table::CallflowKeys;
use crate::routing::RouteTable;

/// A JSON object, as documents are stored.
pub type Doc = Map<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// One thing wrong (or worth knowing) about a callflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// The callflow the finding is about.
    pub callflow_id: String,
    /// JSON path in that callflow: `flow.children._.data.id`, `patterns.0`, `numbers.1`.
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A rule's entry in the table (docs/lint.md documents each).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

/// Every rule, by stable id.
pub const RULES: &[Rule] = &[
    unreachable_child::RULE,
    missing_reference::RULE,
    callflow_loop::RULE,
    callflow_loop::BUDGET_RULE,
    menu_fallback::RULE,
    carrier_fallback::RULE,
    failure_key::RULE,
    schema_default::RULE,
    pattern_never_routes::RULE,
    pattern_shadowed::RULE,
    number_shadowed::RULE,
];

/// A node of a flow, with its JSON path.
pub struct Node<'a> {
    pub path: String,
    pub module: &'a str,
    pub data: Option<&'a Doc>,
    pub children: Vec<(&'a str, &'a Value)>,
}

impl Node<'_> {
    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.data?.get(key)?.as_str().filter(|s| !s.is_empty())
    }
}

/// Every node of a callflow document's `flow`, depth first, with its path.
pub fn nodes(doc: &Doc) -> Vec<Node<'_>> {
    fn walk<'a>(v: &'a Value, path: String, out: &mut Vec<Node<'a>>, depth: usize) {
        let Some(obj) = v.as_object() else { return };
        if depth > 256 || obj.is_empty() {
            return;
        }
        let children: Vec<(&str, &Value)> = obj
            .get("children")
            .and_then(Value::as_object)
            .map(|c| c.iter().map(|(k, v)| (k.as_str(), v)).collect())
            .unwrap_or_default();
        out.push(Node {
            path: path.clone(),
            module: obj.get("module").and_then(Value::as_str).unwrap_or(""),
            data: obj.get("data").and_then(Value::as_object),
            children: children.clone(),
        });
        for (k, child) in children {
            walk(child, format!("{path}.children.{k}"), out, depth + 1);
        }
    }
    let mut out = Vec::new();
    if let Some(flow) = doc.get("flow") {
        walk(flow, "flow".into(), &mut out, 0);
    }
    out
}

/// A document the lint knows of: its `pvt_type` and whether it was deleted.
#[derive(Debug, Clone)]
pub struct Known {
    pub pvt_type: String,
    pub deleted: bool,
    pub doc: Doc,
}

/// What the rules read: the callflows in scope (the linted ones and every callflow they jump
/// to), every document they name (deleted ones included), and the routing snapshot (with a
/// draft's numbers and patterns in it).
pub struct Snapshot {
    pub callflows: BTreeMap<String, Doc>,
    pub docs: HashMap<String, Known>,
    pub table: Arc<RouteTable>,
}

/// Linting context for one callflow.
pub struct Ctx<'a> {
    pub id: &'a str,
    pub doc: &'a Doc,
    pub snapshot: &'a Snapshot,
    /// The routing analysis of this callflow's patterns.
    pub patterns: &'a [PatternReport],
}

impl Ctx<'_> {
    pub fn finding(
        &self,
        rule: &Rule,
        path: impl Into<String>,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Finding {
        Finding {
            rule: rule.id,
            severity: rule.severity,
            callflow_id: self.id.to_string(),
            path: path.into(),
            message: message.into(),
            fix,
        }
    }

    /// A live document of one of `types`, if the snapshot has it.
    pub fn live(&self, id: &str, pvt_type: &str) -> Option<&Doc> {
        if pvt_type == "callflow" {
            if let Some(doc) = self.snapshot.callflows.get(id) {
                return Some(doc);
            }
        }
        self.snapshot
            .docs
            .get(id)
            .filter(|k| !k.deleted && k.pvt_type == pvt_type)
            .map(|k| &k.doc)
    }
}

/// Every rule over one callflow, findings ordered by severity then path.
pub fn lint_one(id: &str, doc: &Doc, snapshot: &Snapshot) -> Vec<Finding> {
    let patterns =
        crate::routing::analysis::analyse_where(&snapshot.table, |r| &*r.callflow_id == id);
    lint_with(id, doc, snapshot, &patterns)
}

/// The response `data` of a lint: the findings and their count per severity.
pub fn report(findings: &[Finding]) -> Value {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    json!({
        "findings": findings,
        "summary": {"error": count(Severity::Error), "warning": count(Severity::Warning), "info": count(Severity::Info)},
    })
}

/// Ids a callflow names, each with the `pvt_type`s it may be, and the field path naming it.
pub fn references(doc: &Doc) -> Vec<(String, &'static [&'static str], String)> {
    missing_reference::references(doc)
}

/// Loads what the rules need for `roots` (callflows being linted; a draft is one of them):
/// every callflow they jump to, transitively, and every document they name.
pub async fn load(
    pipeline: &Pipeline,
    account_id: &str,
    roots: Vec<(String, Doc)>,
    whole_account: bool,
) -> pipeline::Result<Snapshot> {
    let mut table = pipeline.routes.table(account_id).await?;
    let mut callflows: BTreeMap<String, Doc> = BTreeMap::new();
    if whole_account {
        for cf in pipeline
            .store
            .list_callflows(account_id, None, i64::MAX, false)
            .await?
        {
            callflows.insert(cf.id, cf.doc);
        }
    }
    // A draft (or an unsaved version) replaces the stored callflow, routing included.
    let mut changes = Vec::new();
    for (id, doc) in roots {
        let stored_same = callflows.get(&id) == Some(&doc);
        if !stored_same {
            changes.push(CallflowKeys {
                callflow_id: id.clone(),
                numbers: crate::domain::callflow::string_list(&doc, "numbers"),
                patterns: crate::domain::callflow::string_list(&doc, "patterns"),
            });
        }
        callflows.insert(id, doc);
    }
    if !changes.is_empty() {
        let t = table.clone();
        table = Arc::new(
            crate::cpu::offload(move || t.with_changes(&changes))
                .await
                .map_err(pipeline::Error::Internal)?,
        );
    }
    let mut docs: HashMap<String, Known> = HashMap::new();
    let mut asked: HashSet<String> = callflows.keys().cloned().collect();
    let mut pending: Vec<String> = callflows.keys().cloned().collect();
    // Follow callflow jumps until every named document is known (bounded: each round asks
    // only for ids never asked before).
    for _ in 0..64 {
        let mut ids = Vec::new();
        for id in &pending {
            let Some(doc) = callflows.get(id) else {
                continue;
            };
            for (rid, _, _) in references(doc) {
                if asked.insert(rid.clone()) {
                    ids.push(rid);
                }
            }
        }
        if ids.is_empty() {
            break;
        }
        pending.clear();
        for (id, pvt_type, doc) in pipeline.store.documents_by_ids(account_id, &ids).await? {
            let deleted = doc.get("pvt_deleted").and_then(Value::as_bool) == Some(true);
            if pvt_type == "callflow" && !deleted {
                callflows.insert(id.clone(), doc.clone());
                pending.push(id.clone());
            }
            docs.insert(
                id,
                Known {
                    pvt_type,
                    deleted,
                    doc,
                },
            );
        }
    }
    Ok(Snapshot {
        callflows,
        docs,
        table,
    })
}

/// Lints one stored callflow (`draft` replaces it, or lints an unsaved one under `id`).
pub async fn lint_callflow(
    pipeline: &Pipeline,
    account_id: &str,
    id: &str,
    doc: Doc,
) -> pipeline::Result<Vec<Finding>> {
    let snapshot = load(
        pipeline,
        account_id,
        vec![(id.to_string(), doc.clone())],
        false,
    )
    .await?;
    let id = id.to_string();
    crate::cpu::offload(move || lint_one(&id, &doc, &snapshot))
        .await
        .map_err(pipeline::Error::Internal)
}

/// Lints every callflow of the account.
pub async fn lint_account(pipeline: &Pipeline, account_id: &str) -> pipeline::Result<Vec<Finding>> {
    let snapshot = load(pipeline, account_id, Vec::new(), true).await?;
    crate::cpu::offload(move || {
        // Pattern analysis once for the whole account, not once per callflow.
        let reports = crate::routing::analysis::analyse(&snapshot.table);
        let mut by_callflow: HashMap<&str, Vec<PatternReport>> = HashMap::new();
        for r in &reports {
            by_callflow
                .entry(r.callflow_id.as_str())
                .or_default()
                .push(r.clone());
        }
        let mut out = Vec::new();
        for (id, doc) in &snapshot.callflows {
            let patterns = by_callflow.remove(id.as_str()).unwrap_or_default();
            out.extend(lint_with(id, doc, &snapshot, &patterns));
        }
        out
    })
    .await
    .map_err(pipeline::Error::Internal)
}

fn lint_with(id: &str, doc: &Doc, snapshot: &Snapshot, patterns: &[PatternReport]) -> Vec<Finding> {
    let ctx = Ctx {
        id,
        doc,
        snapshot,
        patterns,
    };
    let mut out = Vec::new();
    unreachable_child::check(&ctx, &mut out);
    missing_reference::check(&ctx, &mut out);
    callflow_loop::check(&ctx, &mut out);
    menu_fallback::check(&ctx, &mut out);
    carrier_fallback::check(&ctx, &mut out);
    failure_key::check(&ctx, &mut out);
    schema_default::check(&ctx, &mut out);
    pattern_never_routes::check(&ctx, &mut out);
    pattern_shadowed::check(&ctx, &mut out);
    number_shadowed::check(&ctx, &mut out);
    out.sort_by(|a, b| (a.severity, &a.path, a.rule).cmp(&(b.severity, &b.path, b.rule)));
    out
}
