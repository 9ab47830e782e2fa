//! `/v2/accounts/{ACCOUNT_ID}/callflows[/{CALLFLOW_ID}]` and the number search. Handlers
//! parse, call the save pipeline ([`crate::documents::pipeline`]) and reply.

use axum::extract::{Path, State};
use axum::http::header;
use axum::routing::get;
use axum::Router;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use crate::documents::pipeline::{Kind, Target};
use crate::domain::callflow::{listing_summary, public_view};
use crate::domain::numbers::{dial_plan, normalize, search_key};
use crate::schema::SchemaError;

use super::error::{ApiError, ApiResult};
use super::extract::AccountScope;
use super::listing::{self, Page, Pager, Term};
use super::reply::Reply;
use super::request::ReqCtx;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/accounts/{account_id}/callflows", get(list).put(create))
        .route(
            "/v2/accounts/{account_id}/callflows/{callflow_id}",
            get(fetch).post(replace).patch(patch).delete(remove),
        )
        .route("/v2/accounts/{account_id}/search", get(search))
}

pub(crate) fn request_object(ctx: &ReqCtx) -> ApiResult<Map<String, Value>> {
    match &ctx.data {
        Value::Object(m) => Ok(m.clone()),
        other => Err(ApiError::invalid_field(
            SchemaError::at("data", "type", "Value did not match type(s): object")
                .with("target", json!("object"))
                .with("value", other.clone()),
        )),
    }
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn create(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    // cowboy: `If-Match` on a PUT to a missing resource fails the precondition.
    if scope.if_match().is_some() {
        return Err(ApiError::precondition_failed());
    }
    let data = request_object(&scope.ctx)?;
    let saved = state
        .pipeline
        .create(Kind::Callflow, &scope.writer(), data, None)
        .await?;
    let location = format!("/v2/accounts/{}/callflows/{}", scope.account.id, saved.id);
    Ok(
        Reply::created(Value::Object(public_view(&saved.doc, &saved.id)))
            .with_revision(&saved.rev)
            .with_header(header::LOCATION, location),
    )
}

fn target<'a>(scope: &'a AccountScope, id: &'a str) -> Target<'a> {
    Target::new(Kind::Callflow, &scope.account.id, id)
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn fetch(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let stored = state.pipeline.load(target(&scope, &id)).await?;
    let mut data = public_view(&stored.doc, &id);
    let metadata = state
        .pipeline
        .metadata(&scope.account.id, stored.doc.get("flow"))
        .await?;
    data.insert("metadata".into(), metadata);
    Ok(Reply::ok(Value::Object(data)).with_revision(&stored.rev))
}

fn saved_reply(saved: crate::documents::pipeline::Saved) -> Reply {
    Reply::ok(Value::Object(public_view(&saved.doc, &saved.id))).with_revision(&saved.rev)
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn replace(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let saved = state
        .pipeline
        .replace(target(&scope, &id), &scope.writer(), data, scope.if_match())
        .await?;
    Ok(saved_reply(saved))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn patch(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let saved = state
        .pipeline
        .patch(target(&scope, &id), &scope.writer(), data, scope.if_match())
        .await?;
    Ok(saved_reply(saved))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn remove(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let stored = state
        .pipeline
        .delete(
            target(&scope, &id),
            &scope.writer(),
            scope.if_match(),
            scope.hard_delete(),
        )
        .await?;
    let mut data = public_view(&stored.doc, &id);
    data.insert("_read_only".into(), json!({"deleted": true}));
    Ok(Reply::ok(Value::Object(data)).with_revision(&stored.rev))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn list(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let account_id = scope.account.id.clone();
    // Better than Kazoo: `?number=N` lists the callflows holding N (as dialled or normalised).
    if let Some(number) = scope.ctx.query("number") {
        let plan = dial_plan(&Value::Object(scope.account.doc.clone()));
        let mut found = state
            .store
            .callflows_with_number(&account_id, number)
            .await?;
        let normalised = normalize(number, &plan);
        if normalised != *number {
            for d in state
                .store
                .callflows_with_number(&account_id, &normalised)
                .await?
            {
                if !found.iter().any(|f| f.id == d.id) {
                    found.push(d);
                }
            }
        }
        let items: Vec<Value> = found
            .iter()
            .map(|d| listing_summary(&d.id, &d.doc))
            .collect();
        return Ok(list_reply(items, None));
    }
    // Better than Kazoo: `?references=ID` lists the callflows whose flow or metaflows name
    // the document ID (a user, a device, a menu...).
    if let Some(reference) = scope.ctx.query("references") {
        let found = state
            .store
            .callflows_referencing(&account_id, reference)
            .await?;
        let items = found
            .iter()
            .map(|d| listing_summary(&d.id, &d.doc))
            .collect();
        return Ok(list_reply(items, None));
    }
    let page = Page::from_request(&scope.ctx)?;
    let filters = listing::Filters::from_request(&scope.ctx);
    let (docs, next) = listing::collect(&state, &account_id, &page, &filters).await?;
    let items: Vec<Value> = docs
        .iter()
        .map(|d| listing_summary(&d.id, &d.doc))
        .collect();
    let paging = Paging {
        paginate: page.paginate,
        start: page.start.clone(),
        next: next.map(Term::Bin),
    };
    Ok(list_reply(items, Some(paging)))
}

/// The paging part of a listing's envelope.
pub(crate) struct Paging {
    pub(crate) paginate: bool,
    /// The start key the view was read from (absent when none was given or built).
    pub(crate) start: Option<Term>,
    /// The key of the first unread row.
    pub(crate) next: Option<Term>,
}

/// A listing reply: `revision` is the md5 of the data (absent when empty); with paging on,
/// `page_size` and the start keys re-encoded as `api_util:encode_start_keys` does.
pub(crate) fn list_reply(items: Vec<Value>, paging: Option<Paging>) -> Reply {
    let count = items.len();
    let data = Value::Array(items);
    let revision = (count > 0).then(|| hex::encode(Md5::digest(data.to_string().as_bytes())));
    let mut reply = Reply::ok(data);
    if let Some(rev) = revision {
        reply = reply.with_revision(&rev);
    }
    if let Some(paging) = paging.filter(|p| p.paginate) {
        reply = reply.with_field("page_size", json!(count));
        if let Some(start) = &paging.start {
            reply = reply.with_field("start_key", json!(listing::encode_term(start)));
        }
        if let Some(next) = &paging.next {
            reply = reply.with_field("next_start_key", json!(listing::encode_term(next)));
        }
    }
    reply
}

/// Document types `cb_search` names when `t` is missing.
const SEARCHABLE: [&str; 4] = ["account", "user", "callflow", "device"];
/// The views of the account's `_design/search`, without their `search_by_` prefix, in the
/// order the design document lists them (`cb_search:available_query_options`).
const SEARCH_VIEWS: [&str; 3] = ["name", "name_and_number", "number"];

fn search_error(field: &str, rule: &str, message: &str) -> SchemaError {
    SchemaError::at(field, rule, message)
}

/// `GET /v2/accounts/{A}/search?t=TYPE&q=VIEW&v=VALUE`, as `cb_search:validate_search` and
/// `cb_search:search` do it: the checks in Kazoo's order, then a `crossbar_view:load` of
/// the view `search/search_by_VIEW` from `[t, v]` to `[t, v + "Z"]` (`v` normalised), paged
/// and filtered like every listing. Each item is the view row's value.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn search(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let ctx = &scope.ctx;
    let text = |v: Value| match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let Some(doc_type) = ctx.option("t").map(text) else {
        return Err(ApiError::invalid_field(
            search_error("t", "required", "search needs a document type to search on")
                .with("target", json!(SEARCHABLE)),
        ));
    };
    let view = match ctx.option("q") {
        None => {
            return Err(ApiError::invalid_field(
                search_error("q", "required", "search needs a view to search in")
                    .with("target", json!(SEARCH_VIEWS)),
            ))
        }
        Some(Value::String(q)) if SEARCH_VIEWS.contains(&q.as_str()) => q,
        Some(other) => {
            return Err(ApiError::invalid_field(
                search_error("q", "enum", "value not found in enumerated list of values")
                    .with("cause", json!(text(other))),
            ))
        }
    };
    // A `v` that is not text counts only when it is `true` (a bare `?v`): an empty search.
    let value = match ctx.option("v") {
        Some(Value::String(v)) => v,
        Some(Value::Bool(true)) => String::new(),
        _ => {
            return Err(ApiError::invalid_field(search_error(
                "v",
                "required",
                "search needs a value to search for",
            )))
        }
    };
    let page = Page::from_request(ctx)?;
    let filters = listing::Filters::from_request(ctx);
    // `cb_modules_util:normalize_alphanum_name`: ASCII lower case, then only [a-z0-9].
    let needle: String = value
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .collect();
    let low = Term::List(vec![Term::Bin(doc_type.clone()), Term::Bin(needle.clone())]);
    let high = Term::List(vec![
        Term::Bin(doc_type.clone()),
        Term::Bin(format!("{needle}Z")),
    ]);

    // Candidate documents: the number index narrows a plain number search; anything else
    // reads the account's documents, as the view holds one row per document or number.
    let docs = if doc_type != "callflow" {
        // Users, devices, vmboxes...: the documents of that type.
        state
            .store
            .list_documents(&scope.account.id, &doc_type, None, i64::MAX, false)
            .await?
    } else if view == "number" && page.start.is_none() {
        state
            .store
            .search_numbers(&scope.account.id, &needle)
            .await?
    } else {
        state
            .store
            .list_callflows(&scope.account.id, None, i64::MAX, false)
            .await?
    };
    let mut rows: Vec<(Term, usize, Map<String, Value>)> = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        if d.doc.get("pvt_type").and_then(Value::as_str) != Some(doc_type.as_str()) {
            continue;
        }
        for (key, value) in search_view_rows(&view, &d.id, &d.doc) {
            rows.push((
                Term::List(vec![Term::Bin(doc_type.clone()), Term::of_json(&key)]),
                i,
                value,
            ));
        }
    }
    // CouchDB reads a range of the view: keys between the start and end key (the start key
    // from the request replaces Kazoo's), rows with equal keys in doc id order.
    use std::cmp::Ordering::{Greater, Less};
    let start = page.start.clone().unwrap_or_else(|| {
        if page.descending {
            high.clone()
        } else {
            low.clone()
        }
    });
    rows.retain(|(key, _, _)| {
        if page.descending {
            listing::collate(key, &start) != Greater && listing::collate(key, &low) != Less
        } else {
            listing::collate(key, &start) != Less && listing::collate(key, &high) != Greater
        }
    });
    rows.sort_by(|a, b| listing::collate(&a.0, &b.0).then_with(|| docs[a.1].id.cmp(&docs[b.1].id)));
    if page.descending {
        rows.reverse();
    }
    let mut pager = Pager::new(&page);
    for row in rows {
        let doc = &docs[row.1];
        if !pager.offer(row, |_| filters.keep(&doc.doc, &doc.rev)) {
            break;
        }
    }
    let items: Vec<Value> = pager
        .rows
        .into_iter()
        .map(|(_, _, value)| Value::Object(value))
        .collect();
    let paging = Paging {
        paginate: page.paginate,
        start: Some(start),
        next: pager.next.map(|(key, _, _)| key),
    };
    Ok(list_reply(items, Some(paging)))
}

/// JavaScript truthiness of a document field.
fn js_truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// `(doc.field || '')` followed by `.toLowerCase()`: `None` where JavaScript would throw.
fn js_text_or_empty(v: Option<&Value>) -> Option<String> {
    if !js_truthy(v) {
        return Some(String::new());
    }
    v.and_then(Value::as_str).map(str::to_string)
}

/// The rows the account's `_design/search` map functions emit for one live document, as
/// `(key after the type, value)`. A map function that throws (a field of the wrong type)
/// emits nothing for the document, as CouchDB discards its rows.
fn search_view_rows(
    view: &str,
    id: &str,
    doc: &Map<String, Value>,
) -> Vec<(Value, Map<String, Value>)> {
    search_view_rows_or_throw(view, id, doc).unwrap_or_default()
}

fn search_view_rows_or_throw(
    view: &str,
    id: &str,
    doc: &Map<String, Value>,
) -> Option<Vec<(Value, Map<String, Value>)>> {
    if js_truthy(doc.get("pvt_deleted")) || !js_truthy(doc.get("pvt_type")) {
        return Some(Vec::new());
    }
    let mut rows = Vec::new();
    let numbers = doc.get("numbers");
    // `for (var i in doc.numbers)` then `doc.numbers[i].toLowerCase()`.
    let number_keys = || -> Option<Vec<String>> {
        let items: Vec<Value> = match numbers {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Object(o)) => o.values().cloned().collect(),
            Some(Value::String(s)) => s.chars().map(|c| Value::String(c.into())).collect(),
            _ => Vec::new(),
        };
        items.iter().map(|n| n.as_str().map(search_key)).collect()
    };
    if view == "number" {
        for key in number_keys()? {
            let mut value = Map::new();
            value.insert("id".into(), json!(id));
            if let Some(name) = doc.get("name") {
                value.insert("name".into(), name.clone());
            }
            value.insert("numbers".into(), numbers.cloned().unwrap_or(Value::Null));
            rows.push((Value::String(key), value));
        }
        return Some(rows);
    }
    // `search_by_name` and the name row of `search_by_name_and_number`.
    let mut value = Map::new();
    let mut name = Value::String(String::new());
    let mut actual_name = String::new();
    if doc.contains_key("first_name") || doc.contains_key("last_name") {
        let first = js_text_or_empty(doc.get("first_name"))?;
        let last = js_text_or_empty(doc.get("last_name"))?;
        let (first_key, last_key) = (search_key(&first), search_key(&last));
        name = Value::String(format!("{first_key}{last_key}"));
        value.insert("first_name".into(), json!(first_key));
        value.insert("last_name".into(), json!(last_key));
        let gap = if !first.is_empty() && !last.is_empty() {
            " "
        } else {
            ""
        };
        actual_name = format!("{first}{gap}{last}");
    }
    if let Some(alphanum) = doc.get("pvt_alphanum_name") {
        name = alphanum.clone();
    } else if let Some(doc_name) = doc.get("name") {
        let doc_name = doc_name.as_str()?;
        name = Value::String(search_key(doc_name));
        actual_name = doc_name.to_string();
    } else if name.as_str() == Some("") {
        name = Value::String(search_key(id));
    }
    value.insert("id".into(), json!(id));
    let shown = if !actual_name.is_empty() {
        json!(actual_name)
    } else {
        doc.get("name").cloned().unwrap_or_else(|| name.clone())
    };
    value.insert("name".into(), shown);
    if view == "name" {
        rows.push((name, value));
        return Some(rows);
    }
    if let Some(n) = numbers {
        value.insert("numbers".into(), n.clone());
    }
    rows.push((name, value));
    if numbers.is_some() {
        for key in number_keys()? {
            let mut value = Map::new();
            value.insert("id".into(), json!(id));
            value.insert("name".into(), json!(actual_name));
            value.insert("numbers".into(), numbers.cloned().unwrap_or(Value::Null));
            rows.push((Value::String(key), value));
        }
    }
    Some(rows)
}
