//! Simulations against an account's stored documents: the request read from JSON (the same
//! `data` for `PUT /v2/accounts/{A}/simulations` and `callflowd simulate`), the lookup, and
//! the engine run with the documents it asks for fetched from the store.
//!
//! Owns: parsing a simulation request (Kazoo-shaped field errors), choosing where the call
//! enters (lookup, a stored callflow, a callflow's saved draft (`draft: true`), or a validated
//! inline draft), and the fetch-and-rerun loop
//! around the pure [`crate::engine`]. Must not know about HTTP; stores nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::documents::pipeline::{self, Kind, Pipeline, Target};
use crate::domain::callflow::public_view;
use crate::engine::{self, Call, Caller, DocumentSet, Need, Start};
use crate::routing::table::MatchKind;
use crate::routing::RouteTable;
use crate::schema::{SchemaError, SchemaErrors};
use crate::store::{Account, StoreError};

/// Rounds of "run, fetch what was missing, run again" before the last run is answered. Each
/// round follows one more hop (a callflow jump, a rule set's rules, a group's users' devices).
const MAX_ROUNDS: usize = 12;
/// The largest `max_steps` a request may ask for.
pub const MAX_STEPS_LIMIT: usize = 100_000;
/// The id a draft callflow runs under when it has none.
pub const DRAFT_ID: &str = "draft";

/// Where the call enters.
#[derive(Debug, Clone)]
pub enum Entry {
    /// The callflow the dialled number reaches.
    Lookup,
    /// A stored callflow, whatever the number.
    Callflow(String),
    /// A callflow not saved: validated as a save would, then run.
    Draft(Map<String, Value>),
}

/// A simulation request.
#[derive(Debug, Clone)]
pub struct Request {
    pub number: String,
    pub caller: Caller,
    pub now: DateTime<Utc>,
    pub entry: Entry,
    /// Inline documents, `(URL type, id, document)`: they win over stored ones.
    pub documents: Vec<(String, String, Map<String, Value>)>,
    pub events: Vec<engine::Event>,
    pub max_steps: usize,
    /// `draft: true`: the callflow the call enters (by `callflow_id` or by lookup) runs from
    /// its saved draft instead of its live version (a `callflow_id` must have one; a looked-up
    /// callflow without one runs live).
    pub use_draft: bool,
}

/// The document types a request may carry inline and the engine reads, by the engine's type
/// names (the URL names, plus `list_entries` for a list's entries).
fn kind_of(url_type: &str) -> Option<Kind> {
    match url_type {
        "callflows" => Some(Kind::Callflow),
        "list_entries" => Some(Kind::Doc(&crate::documents::ENTRY)),
        other => crate::documents::by_segment(other).map(Kind::Doc),
    }
}

/// The stored `pvt_type` of an engine type name.
fn stored_type(url_type: &str) -> Option<&'static str> {
    kind_of(url_type).map(|kind| match kind {
        Kind::Callflow => "callflow",
        Kind::Doc(ty) => ty.pvt_type,
    })
}

fn field_error(path: &[&str], rule: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::new(path.iter().map(|s| s.to_string()).collect(), rule, message)
}

fn optional_text(
    data: &Map<String, Value>,
    path: &[&str],
    errors: &mut SchemaErrors,
) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let mut cur = data;
    for p in parents {
        cur = cur.get(*p)?.as_object()?;
    }
    match cur.get(*last) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(other) => {
            errors.push(
                field_error(path, "type", "Value did not match type(s): string")
                    .with("target", json!("string"))
                    .with("value", other.clone()),
            );
            None
        }
    }
}

/// Reads a request's `data`. `now` is the default instant. Every problem is reported at once,
/// each as Kazoo names a field error.
pub fn parse(data: &Map<String, Value>, now: DateTime<Utc>) -> Result<Request, SchemaErrors> {
    let mut errors = SchemaErrors::default();
    let number = optional_text(data, &["number"], &mut errors);
    if number.is_none() && !data.contains_key("number") {
        errors.push(field_error(
            &["number"],
            "required",
            "Field is required but missing",
        ));
    }
    if let Some(c) = data.get("caller").filter(|v| !v.is_null()) {
        if !c.is_object() {
            errors.push(
                field_error(&["caller"], "type", "Value did not match type(s): object")
                    .with("target", json!("object")),
            );
        }
    }
    let caller = Caller {
        id_number: optional_text(data, &["caller", "id_number"], &mut errors),
        id_name: optional_text(data, &["caller", "id_name"], &mut errors),
        device_id: optional_text(data, &["caller", "device_id"], &mut errors),
        user_id: optional_text(data, &["caller", "user_id"], &mut errors),
    };
    let now = match optional_text(data, &["now"], &mut errors) {
        None => now,
        Some(text) => match DateTime::parse_from_rfc3339(&text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                errors.push(
                    field_error(
                        &["now"],
                        "format",
                        format!("not an RFC 3339 date-time: {e}"),
                    )
                    .with("value", json!(text)),
                );
                now
            }
        },
    };
    let callflow_id = optional_text(data, &["callflow_id"], &mut errors);
    let entry = match (callflow_id, data.get("callflow").filter(|v| !v.is_null())) {
        (Some(_), Some(_)) => {
            errors.push(field_error(
                &["callflow"],
                "error",
                "give either callflow_id or callflow, not both",
            ));
            Entry::Lookup
        }
        (Some(id), None) => Entry::Callflow(id),
        (None, Some(Value::Object(draft))) => Entry::Draft(draft.clone()),
        (None, Some(other)) => {
            errors.push(
                field_error(&["callflow"], "type", "Value did not match type(s): object")
                    .with("target", json!("object"))
                    .with("value", other.clone()),
            );
            Entry::Lookup
        }
        (None, None) => Entry::Lookup,
    };
    let mut documents = Vec::new();
    match data.get("documents") {
        None | Some(Value::Null) => {}
        Some(Value::Object(by_type)) => {
            for (url_type, docs) in by_type {
                if stored_type(url_type).is_none() {
                    errors.push(
                        field_error(&["documents", url_type], "enum", "unknown document type")
                            .with("cause", json!(url_type)),
                    );
                    continue;
                }
                let Some(docs) = docs.as_object() else {
                    errors.push(
                        field_error(
                            &["documents", url_type],
                            "type",
                            "Value did not match type(s): object",
                        )
                        .with("target", json!("object")),
                    );
                    continue;
                };
                for (id, doc) in docs {
                    match doc {
                        Value::Object(doc) => {
                            documents.push((url_type.clone(), id.clone(), doc.clone()))
                        }
                        _ => errors.push(
                            field_error(
                                &["documents", url_type, id],
                                "type",
                                "Value did not match type(s): object",
                            )
                            .with("target", json!("object")),
                        ),
                    }
                }
            }
        }
        Some(other) => errors.push(
            field_error(
                &["documents"],
                "type",
                "Value did not match type(s): object",
            )
            .with("target", json!("object"))
            .with("value", other.clone()),
        ),
    }
    let events = match data.get("events") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => match engine::parse_events(items) {
            Ok(events) => events,
            Err(e) => {
                let index = e.index.map(|i| i.to_string()).unwrap_or_default();
                errors.push(
                    field_error(&["events", &index], "error", e.message.clone()).with(
                        "value",
                        items
                            .get(e.index.unwrap_or(0))
                            .cloned()
                            .unwrap_or(Value::Null),
                    ),
                );
                Vec::new()
            }
        },
        Some(other) => {
            errors.push(
                field_error(&["events"], "type", "Value did not match type(s): array")
                    .with("target", json!("array"))
                    .with("value", other.clone()),
            );
            Vec::new()
        }
    };
    let max_steps = match data.get("max_steps") {
        None | Some(Value::Null) => engine::DEFAULT_MAX_STEPS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_STEPS_LIMIT as u64).contains(&n) => n as usize,
            _ => {
                errors.push(
                    field_error(
                        &["max_steps"],
                        "maximum",
                        format!("must be an integer from 1 to {MAX_STEPS_LIMIT}"),
                    )
                    .with("target", json!(MAX_STEPS_LIMIT))
                    .with("value", v.clone()),
                );
                engine::DEFAULT_MAX_STEPS
            }
        },
    };
    let use_draft = match data.get("draft") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(
                field_error(&["draft"], "type", "Value did not match type(s): boolean")
                    .with("target", json!("boolean"))
                    .with("value", other.clone()),
            );
            false
        }
    };
    if use_draft && matches!(entry, Entry::Draft(_)) {
        errors.push(field_error(
            &["draft"],
            "error",
            "draft: true runs a saved draft; give callflow_id (or a number), not callflow",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Request {
        use_draft,
        number: number.unwrap_or_default(),
        caller,
        now,
        entry,
        documents,
        events,
        max_steps,
    })
}

/// Runs a simulation for `account`: the lookup (unless the request names a callflow or
/// carries a draft), then the engine with stored documents fetched as it asks for them and
/// the request's inline documents winning. Answers the response `data`: `lookup`, `steps`,
/// `outcome`, `warnings`.
pub async fn run(
    pipeline: &Pipeline,
    account: &Account,
    request: Request,
) -> Result<Value, pipeline::Error> {
    Ok(run_with(pipeline, account, request, &Overrides::default())
        .await?
        .0)
}

/// A write not yet committed, as a simulation must see it: documents that replace the stored
/// ones (already validated), ids that no longer exist, and the routing snapshot with the
/// write's numbers and patterns.
#[derive(Default)]
pub struct Overrides {
    /// `(URL type, id, document)`.
    pub documents: Vec<(String, String, Map<String, Value>)>,
    pub removed: HashSet<String>,
    pub routes: Option<Arc<RouteTable>>,
}

/// [`run`] against the store as `overrides` changes it; also answers the ids of every
/// document the run read or looked for (callflows, the documents its nodes named, the
/// documents found by owner), so callers can tell which writes could change its outcome.
pub async fn run_with(
    pipeline: &Pipeline,
    account: &Account,
    request: Request,
    overrides: &Overrides,
) -> Result<(Value, Vec<String>), pipeline::Error> {
    let account_id = account.id.as_str();
    let mut touched: Vec<String> = Vec::new();
    // Inline documents, validated as a save of their type would be.
    let mut inline = DocumentSet::new();
    let mut inline_keys = HashSet::new();
    for (url_type, id, doc) in &overrides.documents {
        inline_keys.insert((url_type.clone(), id.clone()));
        inline.insert(url_type, id, doc.clone());
    }
    let mut invalid = SchemaErrors::default();
    for (url_type, id, doc) in request.documents {
        let Some(kind) = kind_of(&url_type) else {
            continue;
        };
        match pipeline.validate(kind, account, doc).await {
            Ok(doc) => {
                inline_keys.insert((url_type.clone(), id.clone()));
                inline.insert(&url_type, &id, doc);
            }
            Err(pipeline::Error::Invalid(errors)) => {
                for mut e in errors.0 {
                    let mut path = vec!["documents".to_string(), url_type.clone(), id.clone()];
                    path.append(&mut e.path);
                    e.path = path;
                    invalid.push(e);
                }
            }
            Err(other) => return Err(other),
        }
    }
    if !invalid.is_empty() {
        return Err(pipeline::Error::Invalid(invalid));
    }

    let table: Arc<RouteTable> = match &overrides.routes {
        Some(t) => t.clone(),
        None => pipeline.routes.table(account_id).await?,
    };
    let allow_no_match = request.caller.on_net();
    let (start_id, start_doc, capture_group, lookup) = match request.entry {
        Entry::Lookup => {
            let Some(route) = table.lookup(&request.number, allow_no_match, true) else {
                let trace = engine::Trace::no_route(format!(
                    "no callflow of the account takes {}",
                    request.number
                ));
                return Ok((respond(Value::Null, &trace), touched));
            };
            let callflow_id = route.callflow_id.to_string();
            let capture_group = route.capture_group.clone();
            let stored = load_callflow(pipeline, account_id, &callflow_id, overrides).await?;
            let mut lookup = crate::routing::lookup_data(
                &route,
                Value::Object(public_view(&stored.doc, &stored.id)),
            );
            let mut doc = stored.doc;
            if request.use_draft {
                if let Some(draft) = pipeline.store.get_draft(account_id, &callflow_id).await? {
                    doc = draft.doc;
                    lookup["draft"] = json!(true);
                }
            }
            (callflow_id, doc, capture_group, lookup)
        }
        Entry::Callflow(id) if request.use_draft => {
            let draft = pipeline.draft(account_id, &id).await?;
            let lookup = json!({"callflow_id": id, "draft": true,
                "match": {"type": "callflow_id", "value": id}});
            (id, draft.doc, None, lookup)
        }
        Entry::Callflow(id) => {
            touched.push(id.clone());
            let stored = load_callflow(pipeline, account_id, &id, overrides).await?;
            let lookup = json!({"callflow_id": id, "match": {"type": "callflow_id", "value": id}});
            (id, stored.doc, None, lookup)
        }
        Entry::Draft(draft) => {
            let id = pipeline::requested_id(&draft);
            let id = if draft.contains_key("_id") || draft.contains_key("id") {
                id
            } else {
                DRAFT_ID.to_string()
            };
            let doc = pipeline
                .validate(Kind::Callflow, account, draft)
                .await
                .map_err(|e| match e {
                    pipeline::Error::Invalid(errors) => {
                        let mut prefixed = SchemaErrors::default();
                        for mut e in errors.0 {
                            let mut path = vec!["callflow".to_string()];
                            path.append(&mut e.path);
                            e.path = path;
                            prefixed.push(e);
                        }
                        pipeline::Error::Invalid(prefixed)
                    }
                    other => other,
                })?;
            let lookup = json!({"callflow_id": id, "match": {"type": "draft", "value": id}});
            (id, doc, None, lookup)
        }
    };

    let call = Call {
        number: request.number,
        caller: request.caller,
        now: request.now,
        events: request.events,
        max_steps: request.max_steps,
    };
    let dialplan = |number: &str| {
        table
            .lookup(number, allow_no_match, false)
            .map(|r| engine::Route {
                callflow_id: r.callflow_id.to_string(),
                capture_group: r.capture_group.clone(),
                no_match: r.kind == MatchKind::NoMatch,
            })
    };

    let (trace, needs) = with_documents(
        pipeline,
        account,
        &inline,
        &inline_keys,
        &overrides.removed,
        |docs| {
            let start = Start {
                callflow_id: &start_id,
                callflow: &start_doc,
                capture_group: capture_group.as_deref(),
            };
            engine::simulate(start, &call, docs, &dialplan)
        },
    )
    .await?;
    for need in &needs {
        match need {
            Need::Doc { id, .. } => touched.push(id.clone()),
            Need::OwnedBy { owner_id, .. } => touched.push(owner_id.clone()),
            Need::All { doc_type } => touched.push(format!("type:{doc_type}")),
            Need::Account => {}
        }
    }
    touched.push(start_id.clone());
    for step in &trace.steps {
        touched.push(step.callflow_id.clone());
    }
    touched.sort();
    touched.dedup();
    Ok((respond(lookup, &trace), touched))
}

/// Runs `f` (an engine run) over the account's documents: each run says what it looked for
/// and did not have, that is read from the store, and `f` runs again, until a run asks for
/// nothing new (or after [`MAX_ROUNDS`]). `inline` documents win over stored ones; `removed`
/// ids are never read. Answers the last run's result and everything that was asked for.
pub(crate) async fn with_documents<T>(
    pipeline: &Pipeline,
    account: &Account,
    inline: &DocumentSet,
    inline_keys: &HashSet<(String, String)>,
    removed: &HashSet<String>,
    mut f: impl FnMut(&dyn engine::Documents) -> T,
) -> Result<(T, Vec<Need>), StoreError> {
    let mut docs = DocumentSet::new();
    docs.set_account(account.doc.clone());
    let mut fetched: Vec<Need> = Vec::new();
    let mut round = 0;
    loop {
        round += 1;
        // The recorder is not `Send`: it lives only for this synchronous run.
        let (result, wanted) = {
            let set = overlay(&docs, inline);
            let recorder = engine::Recorder::new(&set);
            let result = f(&recorder);
            let wanted: Vec<Need> = recorder
                .needs()
                .into_iter()
                .filter(|n| !fetched.contains(n))
                .collect();
            (result, wanted)
        };
        if wanted.is_empty() || round >= MAX_ROUNDS {
            return Ok((result, fetched));
        }
        fetch(
            pipeline,
            &account.id,
            &wanted,
            inline_keys,
            removed,
            &mut docs,
        )
        .await?;
        fetched.extend(wanted);
    }
}

/// The callflow a run enters: the pending write's version when there is one.
async fn load_callflow(
    pipeline: &Pipeline,
    account_id: &str,
    id: &str,
    overrides: &Overrides,
) -> Result<crate::store::StoredCallflow, pipeline::Error> {
    if overrides.removed.contains(id) {
        return Err(pipeline::Error::NotFound(id.to_string()));
    }
    if let Some((_, _, doc)) = overrides
        .documents
        .iter()
        .find(|(t, i, _)| t == "callflows" && i == id)
    {
        return Ok(crate::store::StoredCallflow {
            id: id.to_string(),
            rev: String::new(),
            deleted: false,
            doc: doc.clone(),
        });
    }
    pipeline
        .load(Target::new(Kind::Callflow, account_id, id))
        .await
}

/// The stored documents with the inline ones on top.
fn overlay(stored: &DocumentSet, inline: &DocumentSet) -> DocumentSet {
    if inline.is_empty() {
        return stored.clone();
    }
    let mut set = stored.clone();
    set.extend_from(inline);
    set
}

/// Reads from the store what a run asked for: documents by id in one query, a user's devices,
/// every document of a type.
async fn fetch(
    pipeline: &Pipeline,
    account_id: &str,
    wanted: &[Need],
    inline: &HashSet<(String, String)>,
    removed: &HashSet<String>,
    docs: &mut DocumentSet,
) -> Result<(), StoreError> {
    let mut by_id: HashMap<String, String> = HashMap::new();
    for need in wanted {
        match need {
            Need::Doc { doc_type, id } => {
                if !inline.contains(&(doc_type.clone(), id.clone())) && !removed.contains(id) {
                    by_id.insert(id.clone(), doc_type.clone());
                }
            }
            Need::OwnedBy { doc_type, owner_id } => {
                let Some(stored) = stored_type(doc_type) else {
                    continue;
                };
                for (doc, hotdesked) in pipeline
                    .store
                    .documents_owned_by(account_id, stored, owner_id)
                    .await?
                {
                    if !hotdesked && !removed.contains(&doc.id) {
                        docs.insert(doc_type, &doc.id, with_id(doc.doc, &doc.id));
                    }
                }
            }
            Need::All { doc_type } => {
                let Some(stored) = stored_type(doc_type) else {
                    continue;
                };
                let all = if stored == "callflow" {
                    pipeline
                        .store
                        .list_callflows(account_id, None, i64::MAX, false)
                        .await?
                } else {
                    pipeline
                        .store
                        .list_documents(account_id, stored, None, i64::MAX, false)
                        .await?
                };
                for doc in all.into_iter().filter(|d| !removed.contains(&d.id)) {
                    docs.insert(doc_type, &doc.id, with_id(doc.doc, &doc.id));
                }
            }
            // The account document is always there.
            Need::Account => {}
        }
    }
    if by_id.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = by_id.keys().cloned().collect();
    for (id, pvt_type, doc) in pipeline.store.documents_by_ids(account_id, &ids).await? {
        let Some(url_type) = by_id.get(&id) else {
            continue;
        };
        let deleted = doc.get("pvt_deleted").and_then(Value::as_bool) == Some(true);
        // A document of another type under that id is not the one the flow names.
        if deleted || stored_type(url_type) != Some(pvt_type.as_str()) {
            continue;
        }
        docs.insert(url_type, &id, with_id(doc, &id));
    }
    Ok(())
}

fn with_id(mut doc: Map<String, Value>, id: &str) -> Map<String, Value> {
    doc.entry("id").or_insert_with(|| json!(id));
    doc
}

/// The response `data`: the lookup, then the trace's fields.
fn respond(lookup: Value, trace: &engine::Trace) -> Value {
    let mut data = Map::new();
    data.insert("lookup".into(), lookup);
    if let Ok(Value::Object(fields)) = serde_json::to_value(trace) {
        data.extend(fields);
    }
    Value::Object(data)
}

/// A simulation's `data` as a readable tree: the lookup, one line per step indented by its
/// return-stack depth (with the event it consumed and the branch it took), the outcome and
/// the warnings. For terminals; the JSON is the contract.
pub fn render_tree(data: &Value) -> String {
    use std::fmt::Write;
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_default();
    let mut out = String::new();
    let lookup = &data["lookup"];
    if lookup.is_null() {
        let _ = writeln!(out, "lookup: no callflow");
    } else {
        let _ = writeln!(
            out,
            "lookup: {} {:?} -> callflow {}",
            text(&lookup["match"]["type"]),
            text(&lookup["match"]["value"]),
            text(&lookup["callflow_id"]),
        );
    }
    let steps = data["steps"].as_array().cloned().unwrap_or_default();
    let mut document = String::new();
    for (i, step) in steps.iter().enumerate() {
        let depth = step["depth"].as_u64().unwrap_or(0) as usize;
        let pad = "   ".repeat(depth);
        let last = i + 1 == steps.len();
        let (branch_glyph, rail) = if last {
            ("`--", "    ")
        } else {
            ("|--", "|   ")
        };
        let callflow = text(&step["callflow_id"]);
        if callflow != document {
            let _ = writeln!(out, "{pad}[callflow {callflow}]");
            document = callflow;
        }
        let _ = writeln!(
            out,
            "{pad}{branch_glyph} {i}. {} ({}): {}",
            text(&step["module"]),
            text(&step["path"]),
            text(&step["summary"]),
        );
        if let Some(event) = step.get("event").filter(|e| !e.is_null()) {
            let _ = writeln!(out, "{pad}{rail}   event: {event}");
        }
        match step.get("branch").and_then(Value::as_str) {
            Some(branch) => {
                let _ = writeln!(
                    out,
                    "{pad}{rail}   -> \"{branch}\": {}",
                    text(&step["reason"])
                );
            }
            None => {
                if let Some(reason) = step.get("reason").and_then(Value::as_str) {
                    let _ = writeln!(out, "{pad}{rail}   {reason}");
                }
            }
        }
    }
    let outcome = &data["outcome"];
    let _ = write!(out, "outcome: {}", text(&outcome["kind"]));
    if let Some(step) = outcome.get("step").and_then(Value::as_u64) {
        let _ = write!(out, " at step {step}");
    }
    if let Some(detail) = outcome.get("detail").and_then(Value::as_str) {
        let _ = write!(out, ": {detail}");
    }
    out.push('\n');
    for warning in data["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "warning {}: {}",
            text(&warning["code"]),
            text(&warning["message"])
        );
    }
    out
}
