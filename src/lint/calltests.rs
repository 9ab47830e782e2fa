//! Saved call tests: a simulation request (number, caller, time, events, documents) plus
//! expectations (callflow reached, outcome kind, endpoint, nodes visited in order, branch
//! taken at a path), stored as `callflow_tests` documents by the generic pipeline.
//!
//! Owns running tests (on demand, and as the gate of every write: [`gate`] runs the tests a
//! pending write could affect against the store *with the write applied*, and refuses the
//! write when a `gate: true` test fails), checking expectations (the first divergence), and
//! keeping each test's last result in its private `pvt_last_result` (with the ids its run
//! touched, which decide what later writes affect it). Must not know about HTTP; simulations
//! go through [`crate::simulation`].

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::documents::pipeline::{self, Kind, Pipeline, Writer};
use crate::documents::CALL_TESTS;
use crate::routing::table::CallflowKeys;
use crate::simulation::{self, Overrides};
use crate::store::{Account, ChangeOp, DocumentWrite, StoredCallflow};

/// The stored `pvt_type` of a call test.
pub const PVT_TYPE: &str = "callflow_test";
/// Where a test keeps its last result.
pub const LAST_RESULT: &str = "pvt_last_result";

/// One test's result.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub id: String,
    pub name: String,
    pub gate: bool,
    /// `pass`, `fail` (an expectation diverged) or `error` (the simulation could not run).
    pub result: &'static str,
    pub divergence: Option<String>,
    pub outcome: Value,
    /// Ids the run read or looked for.
    pub touched: Vec<String>,
}

impl TestResult {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id, "name": self.name, "gate": self.gate, "result": self.result,
            "outcome": self.outcome,
        });
        if let Some(d) = &self.divergence {
            v["divergence"] = json!(d);
        }
        v
    }

    fn stored(&self, request_id: &str) -> Value {
        json!({
            "result": self.result, "divergence": self.divergence, "outcome": self.outcome,
            "touched": self.touched, "at": chrono::Utc::now().to_rfc3339(), "request_id": request_id,
        })
    }
}

/// Every live test of the account.
pub async fn all_tests(
    pipeline: &Pipeline,
    account_id: &str,
) -> pipeline::Result<Vec<StoredCallflow>> {
    Ok(pipeline
        .store
        .list_documents(account_id, PVT_TYPE, None, i64::MAX, false)
        .await?)
}

fn text<'a>(doc: &'a Map<String, Value>, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Runs one test against the store as `overrides` changes it.
pub async fn run_one(
    pipeline: &Pipeline,
    account: &Account,
    test: &StoredCallflow,
    overrides: &Overrides,
) -> pipeline::Result<TestResult> {
    let doc = &test.doc;
    let mut result = TestResult {
        id: test.id.clone(),
        name: text(doc, "name").to_string(),
        gate: doc.get("gate").and_then(Value::as_bool).unwrap_or(false),
        result: "pass",
        divergence: None,
        outcome: Value::Null,
        touched: Vec::new(),
    };
    let request = doc
        .get("simulation")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let request = match simulation::parse(&request, chrono::Utc::now()) {
        Ok(r) => r,
        Err(errors) => {
            result.result = "error";
            result.divergence = Some(format!(
                "the simulation request is invalid: {}",
                serde_json::to_string(&errors.to_json()).unwrap_or_default()
            ));
            return Ok(result);
        }
    };
    let (data, touched) = match simulation::run_with(pipeline, account, request, overrides).await {
        Ok(x) => x,
        Err(pipeline::Error::NotFound(id)) => {
            result.result = "error";
            result.divergence = Some(format!("the callflow {id} does not exist"));
            result.touched = vec![id];
            return Ok(result);
        }
        Err(pipeline::Error::Invalid(errors)) => {
            result.result = "error";
            result.divergence = Some(format!(
                "the simulation was refused: {}",
                serde_json::to_string(&errors.to_json()).unwrap_or_default()
            ));
            return Ok(result);
        }
        Err(other) => return Err(other),
    };
    result.touched = touched;
    result.outcome = data["outcome"].clone();
    let expect = doc
        .get("expect")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(divergence) = first_divergence(&expect, &data) {
        result.result = "fail";
        result.divergence = Some(divergence);
    }
    Ok(result)
}

/// The first expectation the simulation's answer breaks, in the schema's order.
pub fn first_divergence(expect: &Map<String, Value>, data: &Value) -> Option<String> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    if let Some(want) = expect.get("callflow_id").and_then(Value::as_str) {
        let got = &data["lookup"]["callflow_id"];
        if got.is_null() {
            return Some(format!(
                "callflow: expected {want}, but no callflow took the number"
            ));
        }
        if got != want {
            return Some(format!("callflow: expected {want}, reached {}", s(got)));
        }
    }
    let outcome = &data["outcome"];
    if let Some(want) = expect.get("outcome").and_then(Value::as_str) {
        if outcome["kind"] != want {
            return Some(format!(
                "outcome: expected {want}, got {} ({})",
                s(&outcome["kind"]),
                s(&outcome["detail"])
            ));
        }
    }
    if let Some(want) = expect.get("endpoint").and_then(Value::as_object) {
        let got = &outcome["endpoint"];
        for key in ["type", "id"] {
            if let Some(w) = want.get(key).and_then(Value::as_str) {
                if got[key] != w {
                    return Some(format!(
                        "endpoint {key}: expected {w}, got {}",
                        if got[key].is_null() {
                            "none".to_string()
                        } else {
                            s(&got[key])
                        }
                    ));
                }
            }
        }
    }
    let steps = data["steps"].as_array().cloned().unwrap_or_default();
    if let Some(visits) = expect.get("visits").and_then(Value::as_array) {
        let mut from = 0;
        for (i, want) in visits.iter().enumerate() {
            let fits = |step: &Value| match want {
                Value::String(module) => step["module"] == module.as_str(),
                Value::Object(o) => ["module", "path", "callflow_id"]
                    .iter()
                    .all(|k| o.get(*k).is_none_or(|v| step[*k] == *v)),
                _ => false,
            };
            match steps[from..].iter().position(fits) {
                Some(p) => from += p + 1,
                None => {
                    return Some(format!(
                        "visits: expected #{i} ({want}) after step {}, not found; the call ran {}",
                        from.saturating_sub(1),
                        steps
                            .iter()
                            .map(|st| s(&st["module"]))
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    ))
                }
            }
        }
    }
    if let Some(branches) = expect.get("branches").and_then(Value::as_object) {
        for (path, want) in branches {
            let want = want.as_str().unwrap_or("");
            let at: Vec<&Value> = steps
                .iter()
                .filter(|st| st["path"] == path.as_str())
                .collect();
            if at.is_empty() {
                return Some(format!("branch at {path}: the call never ran that node"));
            }
            if !at.iter().any(|st| st["branch"] == want) {
                let took = at
                    .iter()
                    .rev()
                    .find_map(|st| st["branch"].as_str())
                    .map(|b| format!("took \"{b}\""))
                    .unwrap_or_else(|| "took no branch".into());
                return Some(format!(
                    "branch at {path}: expected \"{want}\", the call {took}"
                ));
            }
        }
    }
    None
}

/// Keeps each result as its test's last result (a private field, a new revision; a test
/// changed meanwhile keeps its newer revision and misses this result).
pub async fn record(
    pipeline: &Pipeline,
    account_id: &str,
    request_id: &str,
    results: &[TestResult],
) -> pipeline::Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    for r in results {
        let Some((pvt_type, stored)) = pipeline.store.get_document(account_id, &r.id).await? else {
            continue;
        };
        if pvt_type != PVT_TYPE || stored.deleted {
            continue;
        }
        let (id, rev, mut doc) = (stored.id, stored.rev, stored.doc);
        doc.insert(LAST_RESULT.into(), r.stored(request_id));
        let write = DocumentWrite {
            account_id: account_id.to_string(),
            id: id.clone(),
            doc_type: PVT_TYPE.to_string(),
            new_rev: crate::domain::callflow::next_revision(Some(&rev), &doc),
            expected_rev: Some(rev),
            keys: Vec::new(),
            doc,
            deleted: false,
            op: ChangeOp::Update,
            request_id: request_id.to_string(),
        };
        if let Err(error) = pipeline.store.write_document(&write).await {
            tracing::warn!(%error, test_id = %id, "call test result not kept");
        }
    }
    Ok(())
}

/// Runs the tests `names` selects (names or ids; all when empty) and keeps their results.
pub async fn run_selected(
    pipeline: &Pipeline,
    account: &Account,
    request_id: &str,
    names: &[String],
) -> pipeline::Result<Vec<TestResult>> {
    let mut results = Vec::new();
    for test in all_tests(pipeline, &account.id).await? {
        let name = text(&test.doc, "name");
        if !names.is_empty() && !names.iter().any(|n| n == name || *n == test.id) {
            continue;
        }
        results.push(run_one(pipeline, account, &test, &Overrides::default()).await?);
    }
    record(pipeline, &account.id, request_id, &results).await?;
    Ok(results)
}

/// What the gate decided about a write that may go ahead.
#[derive(Debug, Default)]
pub struct Passed {
    pub results: Vec<TestResult>,
    pub skipped: bool,
}

impl Passed {
    /// The envelope value Kazoo clients ignore: every test run and its result.
    pub fn to_json(&self) -> Option<Value> {
        if self.skipped {
            return Some(json!({"skipped": true}));
        }
        (!self.results.is_empty()).then(|| {
            json!(self
                .results
                .iter()
                .map(TestResult::to_json)
                .collect::<Vec<_>>())
        })
    }

    /// After the write committed: keep the results and hand them to the caller.
    pub async fn attach(
        &self,
        pipeline: &Pipeline,
        writer: &Writer,
        mut saved: pipeline::Saved,
    ) -> pipeline::Saved {
        self.keep(pipeline, writer).await;
        saved.tests = self.to_json();
        saved
    }

    /// After the write committed: keep the results (not for a dry run, which keeps nothing).
    pub async fn keep(&self, pipeline: &Pipeline, writer: &Writer) {
        if writer.dry_run {
            return;
        }
        if let Err(error) = record(
            pipeline,
            &writer.account.id,
            &writer.request_id,
            &self.results,
        )
        .await
        {
            tracing::warn!(%error, "call test results not kept");
        }
    }
}

/// The gate: runs the tests a pending write could change (tests that never ran; for a
/// callflow, tests that touched it or that start with a lookup; for another document, tests
/// that touched it or its owner) against the store with the write applied. A failing
/// `gate: true` test refuses the write ([`pipeline::Error::TestsFailed`]) unless the writer
/// asked to skip tests, which is stamped on the written document.
pub async fn gate(
    pipeline: &Pipeline,
    writer: &Writer,
    kind: Kind,
    id: &str,
    doc: &mut Map<String, Value>,
    deleted: bool,
) -> pipeline::Result<Passed> {
    if let Kind::Doc(ty) = kind {
        if std::ptr::eq(ty, CALL_TESTS) {
            return Ok(Passed::default());
        }
    }
    if writer.skip_tests {
        doc.insert("pvt_tests_skipped".into(), json!(true));
        return Ok(Passed {
            results: Vec::new(),
            skipped: true,
        });
    }
    doc.remove("pvt_tests_skipped");
    let account_id = writer.account.id.as_str();
    let tests = all_tests(pipeline, account_id).await?;
    if tests.is_empty() {
        return Ok(Passed::default());
    }
    let owner = doc
        .get("owner_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let affected: Vec<&StoredCallflow> = tests
        .iter()
        .filter(|t| {
            let Some(last) = t.doc.get(LAST_RESULT) else {
                return true;
            };
            let touched: HashSet<&str> = last["touched"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let by_lookup = t
                .doc
                .get("simulation")
                .and_then(|s| s.get("callflow_id"))
                .is_none_or(Value::is_null);
            match kind {
                Kind::Callflow => touched.contains(id) || by_lookup,
                Kind::Doc(ty) => {
                    touched.contains(id)
                        || owner.as_deref().is_some_and(|o| touched.contains(o))
                        || touched.contains(format!("type:{}", ty.segment).as_str())
                }
            }
        })
        .collect();
    if affected.is_empty() {
        return Ok(Passed::default());
    }
    let mut overrides = Overrides::default();
    let segment = match kind {
        Kind::Callflow => "callflows",
        Kind::Doc(ty) => ty.segment,
    };
    if deleted {
        overrides.removed.insert(id.to_string());
    } else {
        let mut pending = doc.clone();
        pending.entry("id").or_insert_with(|| json!(id));
        overrides
            .documents
            .push((segment.to_string(), id.to_string(), pending));
    }
    if let Kind::Callflow = kind {
        let table = pipeline.routes.table(account_id).await?;
        let keys = if deleted {
            CallflowKeys {
                callflow_id: id.to_string(),
                ..Default::default()
            }
        } else {
            CallflowKeys {
                callflow_id: id.to_string(),
                numbers: crate::domain::callflow::string_list(doc, "numbers"),
                patterns: crate::domain::callflow::string_list(doc, "patterns"),
            }
        };
        let table = crate::cpu::offload(move || table.with_changes(&[keys]))
            .await
            .map_err(pipeline::Error::Internal)?;
        overrides.routes = Some(std::sync::Arc::new(table));
    }
    let mut results = Vec::new();
    for test in affected {
        results.push(run_one(pipeline, &writer.account, test, &overrides).await?);
    }
    let failed: Vec<Value> = results
        .iter()
        .filter(|r| r.gate && r.result != "pass")
        .map(TestResult::to_json)
        .collect();
    if !failed.is_empty() {
        return Err(pipeline::Error::TestsFailed(json!({
            "callflow_tests": failed,
            "message": "the change makes gating call tests fail; fix it, change the tests, or write with skip_tests=true",
        })));
    }
    Ok(Passed {
        results,
        skipped: false,
    })
}
