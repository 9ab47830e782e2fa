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
use crate::domain::numbers::{dial_plan_of, normalize};
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
        .create(Kind::Callflow, &scope.writer()?, data, None)
        .await?;
    let location = format!("/v2/accounts/{}/callflows/{}", scope.account.id, saved.id);
    Ok(
        Reply::created(Value::Object(public_view(&saved.doc, &saved.id)))
            .with_revision(&saved.rev)
            .with_call_tests(saved.tests.clone())
            .with_header(header::LOCATION, location),
    )
}

fn target<'a>(scope: &'a AccountScope, id: &'a str) -> Target<'a> {
    Target::new(Kind::Callflow, &scope.account.id, id)
}

async fn fetch(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    fetch_in(&state, scope, &id).await
}

/// `GET .../callflows/{id}` once the scope is known (also the direct dispatch's).
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
pub(super) async fn fetch_in(state: &AppState, scope: AccountScope, id: &str) -> ApiResult<Reply> {
    let name = format!("callflow/{id}");
    state
        .replies
        .reply(state, &scope, &name, 0, compute_fetch(state, &scope, id))
        .await
}

async fn compute_fetch(state: &AppState, scope: &AccountScope, id: &str) -> ApiResult<Reply> {
    let stored = state.pipeline.load(target(scope, id)).await?;
    let mut data = public_view(&stored.doc, id);
    let metadata = state
        .pipeline
        .metadata(&scope.account.id, stored.doc.get("flow"))
        .await?;
    data.insert("metadata".into(), metadata);
    Ok(Reply::ok_serialised(Value::Object(data).to_string().into()).with_revision(&stored.rev))
}

fn saved_reply(saved: crate::documents::pipeline::Saved) -> Reply {
    Reply::ok(Value::Object(public_view(&saved.doc, &saved.id)))
        .with_revision(&saved.rev)
        .with_call_tests(saved.tests.clone())
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
        .replace(
            target(&scope, &id),
            &scope.writer()?,
            data,
            scope.if_match(),
        )
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
        .patch(
            target(&scope, &id),
            &scope.writer()?,
            data,
            scope.if_match(),
        )
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
            &scope.writer()?,
            scope.if_match(),
            scope.hard_delete(),
        )
        .await?;
    let mut data = public_view(&stored.doc, &id);
    data.insert("_read_only".into(), json!({"deleted": true}));
    Ok(Reply::ok(Value::Object(data)).with_revision(&stored.rev))
}

async fn list(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    list_in(&state, scope).await
}

/// `GET .../callflows` once the scope is known (also the direct dispatch's).
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
pub(super) async fn list_in(state: &AppState, scope: AccountScope) -> ApiResult<Reply> {
    state
        .replies
        .reply(state, &scope, "callflows", 0, compute_list(state, &scope))
        .await
}

async fn compute_list(state: &AppState, scope: &AccountScope) -> ApiResult<Reply> {
    if super::history::wants_deleted(scope) {
        return super::history::deleted_listing(state, scope, None).await;
    }
    let account_id = scope.account.id.clone();
    // Better than Kazoo: `?number=N` lists the callflows holding N (as dialled or normalised).
    if let Some(number) = scope.ctx.query("number") {
        let plan = dial_plan_of(scope.account.doc.get("dial_plan"));
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
    let page = Page::from_request(&scope.ctx, &state.config)?;
    let filters = listing::Filters::from_request(&scope.ctx);
    let (docs, next) = listing::collect(state, &account_id, &page, &filters).await?;
    let items: Vec<Value> = docs
        .iter()
        .map(|d| listing_summary(&d.id, &d.doc))
        .collect();
    let paging = Paging {
        paginate: page.shows_paging(next.is_some()),
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
    // Serialised once: the revision is the md5 of this text, and the envelope writes it in.
    let data = Value::Array(items).to_string();
    let revision = (count > 0).then(|| hex::encode(Md5::digest(data.as_bytes())));
    let mut reply = Reply::ok_serialised(data.into());
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
    let page = Page::from_request(ctx, &state.config)?;
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

    // Candidate documents: the search index gives the documents with a key starting with the
    // searched value, which holds every row of the range read (see `search::index_keys`),
    // unless the request's own start key widens that range; an empty value reads the type.
    use std::cmp::Ordering::{Greater, Less};
    let within =
        |key: &Term| listing::collate(key, &low) != Less && listing::collate(key, &high) != Greater;
    let views = match view.as_str() {
        "name" => ("name", "name"),
        "number" => ("number", "number"),
        _ => ("name", "number"),
    };
    let docs = if !needle.is_empty() && page.start.as_ref().is_none_or(within) {
        state
            .store
            .search_candidates(&scope.account.id, &doc_type, views, &needle)
            .await?
    } else if doc_type != "callflow" {
        state
            .store
            .list_documents(&scope.account.id, &doc_type, None, i64::MAX, false)
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
        for (key, value) in crate::domain::search::view_rows(&view, &d.id, &d.doc) {
            rows.push((
                Term::List(vec![Term::Bin(doc_type.clone()), Term::of_json(&key)]),
                i,
                value,
            ));
        }
    }
    // CouchDB reads a range of the view: keys between the start and end key (the start key
    // from the request replaces Kazoo's), rows with equal keys in doc id order.
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
        paginate: page.shows_paging(pager.next.is_some()),
        start: Some(start),
        next: pager.next.map(|(key, _, _)| key),
    };
    Ok(list_reply(items, Some(paging)))
}
