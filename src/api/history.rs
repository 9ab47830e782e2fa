//! History endpoints: a document's revisions (`.../{ID}/revisions[/{REV}[/diff]]`), rollback
//! and restore (`PUT .../{ID}/rollback`) for callflows, every other document type and list
//! entries; soft-deleted documents (`?deleted=true` on a listing); the account's audit
//! (`/audit`) and change feed (`/changes`, JSON or server-sent events).
//!
//! Handlers parse, call the store's history reads or the save pipeline, and reply; the rows
//! and diffs are rendered by [`crate::history`]. New endpoints, so their paging is plain:
//! `page_size`, and `start_key` / `next_start_key` holding a revision number or a feed
//! position.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Value};

use crate::documents::pipeline::{Kind, Target};
use crate::documents::{DocType, ENTRY, TYPES};
use crate::domain::callflow::{listing_summary, public_part, public_view};
use crate::history::{self, diff};
use crate::schema::SchemaError;
use crate::store::{rev_number, AuditQuery, RevisionInfo};

use super::callflows::{list_reply, request_object, Paging};
use super::error::{ApiError, ApiResult};
use super::extract::AccountScope;
use super::listing::{self, Page, Term};
use super::reply::{raw, Reply};
use super::AppState;

/// Rows per page unless `page_size` says otherwise.
const DEFAULT_PAGE: i64 = 50;
/// The largest page a history read answers.
const MAX_PAGE: i64 = 1000;

pub fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/v2/accounts/{account_id}/audit", get(audit))
        .route("/v2/accounts/{account_id}/changes", get(changes));
    router = document_routes(
        router,
        "/v2/accounts/{account_id}/callflows/{doc_id}",
        Kind::Callflow,
    );
    for ty in TYPES {
        let base = format!("/v2/accounts/{{account_id}}/{}/{{doc_id}}", ty.segment);
        router = document_routes(router, &base, Kind::Doc(ty));
    }
    document_routes(
        router,
        "/v2/accounts/{account_id}/lists/{list_id}/entries/{doc_id}",
        Kind::Doc(&ENTRY),
    )
}

type Params = Path<HashMap<String, String>>;

/// The revision routes of one document path.
fn document_routes(router: Router<AppState>, base: &str, kind: Kind) -> Router<AppState> {
    router
        .route(
            &format!("{base}/revisions"),
            get(
                move |State(state): State<AppState>, Path(p): Params, scope: AccountScope| {
                    list_revisions(kind, state, p, scope)
                },
            ),
        )
        .route(
            &format!("{base}/revisions/{{rev}}"),
            get(
                move |State(state): State<AppState>, Path(p): Params, scope: AccountScope| {
                    fetch_revision(kind, state, p, scope)
                },
            ),
        )
        .route(
            &format!("{base}/revisions/{{rev}}/diff"),
            get(
                move |State(state): State<AppState>, Path(p): Params, scope: AccountScope| {
                    revision_diff(kind, state, p, scope)
                },
            ),
        )
        .route(
            &format!("{base}/rollback"),
            put(
                move |State(state): State<AppState>, Path(p): Params, scope: AccountScope| {
                    rollback(kind, state, p, scope)
                },
            ),
        )
}

/// The document the path names (a list entry under the list in the path).
fn target<'a>(
    kind: Kind,
    scope: &'a AccountScope,
    params: &'a HashMap<String, String>,
) -> Target<'a> {
    let id = params.get("doc_id").map(String::as_str).unwrap_or_default();
    let mut target = Target::new(kind, &scope.account.id, id);
    if let Some(list_id) = params.get("list_id") {
        target.parent = Some(("list_id", list_id.as_str()));
    }
    target
}

fn bad_value(field: &str, message: &str, value: &str) -> ApiError {
    ApiError::invalid_field(SchemaError::at(field, "type", message).with("value", json!(value)))
}

/// An integer query option, if given.
fn int_option(scope: &AccountScope, key: &str) -> ApiResult<Option<i64>> {
    match scope.ctx.query(key) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| bad_value(key, "Value did not match type(s): integer", text)),
    }
}

/// `page_size` (1 to [`MAX_PAGE`]; default [`DEFAULT_PAGE`]).
fn page_size(scope: &AccountScope) -> ApiResult<i64> {
    match int_option(scope, "page_size")? {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::faulty_request(&format!(
            "page size must be from 1 to {MAX_PAGE}"
        ))),
    }
}

/// A page of history rows: `page_size`, the `start_key` asked for, and `next_start_key` when
/// more remain.
fn page_reply(rows: Vec<Value>, start: Option<i64>, next: Option<i64>) -> Reply {
    let count = rows.len();
    let mut reply = Reply::ok(Value::Array(rows)).with_field("page_size", json!(count));
    if let Some(start) = start {
        reply = reply.with_field("start_key", json!(start));
    }
    if let Some(next) = next {
        reply = reply.with_field("next_start_key", json!(next));
    }
    reply
}

/// A revision as named in a path or a request: its number, or its full rev (`N-hash`).
fn revision_ref(text: &str) -> ApiResult<(i64, Option<&str>)> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok((n, None));
    }
    match rev_number(text) {
        n if n > 0 => Ok((n, Some(text))),
        _ => Err(bad_value(
            "revision",
            "a revision is a number or a rev (N-hash)",
            text,
        )),
    }
}

/// The revision, checked against the full rev when one was given.
async fn load_revision(
    state: &AppState,
    target: Target<'_>,
    reference: &str,
) -> ApiResult<crate::store::Revision> {
    let (number, rev) = revision_ref(reference)?;
    let not_found = || {
        ApiError::from(crate::documents::pipeline::Error::NoRevision(
            reference.to_string(),
        ))
    };
    let revision = state
        .store
        .revision(target.account_id, target.id, number)
        .await?
        .ok_or_else(not_found)?;
    if rev.is_some_and(|r| r != revision.info.rev)
        || revision.info.doc_type != target.kind.pvt_type()
    {
        return Err(not_found());
    }
    Ok(revision)
}

/// `GET .../{ID}/revisions`: newest first; `start_key` is a revision number.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn list_revisions(
    kind: Kind,
    state: AppState,
    params: HashMap<String, String>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let target = target(kind, &scope, &params);
    state.pipeline.load_any(target).await?;
    let size = page_size(&scope)?;
    let start = int_option(&scope, "start_key")?;
    let mut rows: Vec<RevisionInfo> = state
        .store
        .revisions(&scope.account.id, target.id, start, size + 1)
        .await?;
    let next = (rows.len() as i64 > size).then(|| rows[size as usize].number);
    rows.truncate(size as usize);
    Ok(page_reply(
        rows.iter().map(history::revision_row).collect(),
        start,
        next,
    ))
}

/// `GET .../{ID}/revisions/{REV}`: the document as that revision stored it (public fields),
/// the revision's details under `_read_only.revision`.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn fetch_revision(
    kind: Kind,
    state: AppState,
    params: HashMap<String, String>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let target = target(kind, &scope, &params);
    state.pipeline.load_any(target).await?;
    let reference = params.get("rev").map(String::as_str).unwrap_or_default();
    let revision = load_revision(&state, target, reference).await?;
    let mut data = public_view(&revision.doc, target.id);
    data.remove("_read_only");
    let mut read_only = history::revision_row(&revision.info);
    if let Value::Object(m) = &mut read_only {
        m.insert(
            "deleted".into(),
            json!(revision.doc.get("pvt_deleted") == Some(&json!(true))),
        );
    }
    data.insert("_read_only".into(), json!({ "revision": read_only }));
    Ok(Reply::ok(Value::Object(data)).with_revision(&revision.info.rev))
}

/// `GET .../{ID}/revisions/{REV}/diff?against={REV2}`: what changed from `REV2` (default: the
/// revision before) to `REV`, as an RFC 6902 JSON Patch over the public fields, or with
/// `format=text` as a unified diff.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn revision_diff(
    kind: Kind,
    state: AppState,
    params: HashMap<String, String>,
    scope: AccountScope,
) -> ApiResult<Response> {
    let target = target(kind, &scope, &params);
    state.pipeline.load_any(target).await?;
    let reference = params.get("rev").map(String::as_str).unwrap_or_default();
    let to = load_revision(&state, target, reference).await?;
    let from = match scope.ctx.query("against") {
        Some(against) => Some(load_revision(&state, target, against).await?),
        None if to.info.number > 1 => {
            let before = (to.info.number - 1).to_string();
            Some(load_revision(&state, target, &before).await?)
        }
        None => None,
    };
    let from_number = from.as_ref().map(|r| r.info.number).unwrap_or(0);
    let old = Value::Object(from.map(|r| public_part(&r.doc)).unwrap_or_default());
    let new = Value::Object(public_part(&to.doc));
    let text_form = match scope.ctx.query("format") {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::invalid_field(
                SchemaError::at(
                    "format",
                    "enum",
                    "value not found in enumerated list of values",
                )
                .with("cause", json!(other))
                .with("target", json!(["json", "text"])),
            ))
        }
    };
    if text_form {
        let labels = (
            format!("{} revision {from_number}", target.id),
            format!("{} revision {}", target.id, to.info.number),
        );
        let text = super::offload(move || diff::text(&old, &new, &labels.0, &labels.1)).await?;
        return Ok(raw((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )));
    }
    let patch = super::offload(move || diff::json_patch(&old, &new)).await?;
    Ok(Reply::ok(Value::Array(patch))
        .with_field("from", json!(from_number))
        .with_field("to", json!(to.info.number))
        .into_response())
}

/// `PUT .../{ID}/rollback` with `{"data": {"revision": N}}`: a new revision equal to `N`,
/// after the full validation of a save (a deleted document is restored). `If-Match` names the
/// current revision; `dry_run=true` checks everything and saves nothing.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn rollback(
    kind: Kind,
    state: AppState,
    params: HashMap<String, String>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let target = target(kind, &scope, &params);
    let data = request_object(&scope.ctx)?;
    let number = match data.get("revision") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| bad_value("revision", "a revision is a number", &n.to_string()))?,
        Some(Value::String(s)) => {
            let revision = load_revision(&state, target, s).await?;
            revision.info.number
        }
        Some(other) => {
            return Err(bad_value(
                "revision",
                "Value did not match type(s): integer",
                &other.to_string(),
            ))
        }
        None => {
            return Err(ApiError::invalid_field(SchemaError::at(
                "revision",
                "required",
                "Field is required but missing",
            )))
        }
    };
    let saved = state
        .pipeline
        .rollback(target, &scope.writer()?, number, scope.if_match())
        .await?;
    Ok(Reply::ok(Value::Object(public_view(&saved.doc, &saved.id))).with_revision(&saved.rev))
}

/// Whether a listing asks for soft-deleted documents (`?deleted=true`).
pub fn wants_deleted(scope: &AccountScope) -> bool {
    scope
        .ctx
        .query_value("deleted")
        .is_some_and(|v| v == json!(true) || v == json!("true"))
}

/// `GET .../{TYPE}?deleted=true`: the soft-deleted documents of a type (callflows when `ty`
/// is `None`), paged and filtered like the live listing. Each row is the type's listing row
/// plus `revision` (the deletion's revision number: rolling back to it restores the document
/// as it was) and `deleted: true`.
pub async fn deleted_listing(
    state: &AppState,
    scope: &AccountScope,
    ty: Option<&'static DocType>,
) -> ApiResult<Reply> {
    let page = Page::from_request(&scope.ctx, &state.config)?;
    let filters = listing::Filters::from_request(&scope.ctx);
    let doc_type = ty.map(|t| t.pvt_type);
    let (docs, next) =
        listing::collect_deleted(state, &scope.account.id, doc_type, &page, &filters).await?;
    let items = docs
        .iter()
        .map(|d| {
            let mut row = match ty {
                Some(ty) => ty.summary_row(&d.id, &d.doc),
                None => listing_summary(&d.id, &d.doc),
            };
            if let Value::Object(m) = &mut row {
                m.insert("revision".into(), json!(rev_number(&d.rev)));
                m.insert("deleted".into(), json!(true));
            }
            row
        })
        .collect();
    Ok(list_reply(
        items,
        Some(Paging {
            paginate: page.shows_paging(next.is_some()),
            start: page.start.clone(),
            next: next.map(Term::Bin),
        }),
    ))
}

/// `GET /v2/accounts/{A}/audit`: every write in the account and the accounts below it,
/// newest first. Filters: `type` (a document type or URL segment), `id`, `user_id`, `from`
/// and `to` (Gregorian seconds or RFC 3339, inclusive); `start_key` is a feed position.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn audit(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let time = |key: &str| -> ApiResult<Option<i64>> {
        match scope.ctx.query(key) {
            None => Ok(None),
            Some(text) => history::parse_time(text).map(Some).ok_or_else(|| {
                bad_value(
                    key,
                    "a time is Gregorian seconds or an RFC 3339 date-time",
                    text,
                )
            }),
        }
    };
    let size = page_size(&scope)?;
    let start = int_option(&scope, "start_key")?;
    let query = AuditQuery {
        account_id: scope.account.id.clone(),
        doc_type: scope.ctx.query("type").map(history::doc_type_named),
        doc_id: scope.ctx.query("id").map(str::to_string),
        user_id: scope
            .ctx
            .query("user_id")
            .or_else(|| scope.ctx.query("user"))
            .map(str::to_string),
        from: time("from")?,
        to: time("to")?,
        at_or_before: start,
        limit: size + 1,
    };
    let mut rows = state.store.audit(&query).await?;
    let next = (rows.len() as i64 > size).then(|| rows[size as usize].pos);
    rows.truncate(size as usize);
    Ok(page_reply(
        rows.iter().map(history::change_row).collect(),
        start,
        next,
    ))
}

/// `GET /v2/accounts/{A}/changes?since=SEQ`: the account's changes after a feed position, in
/// commit order (`limit`, default 100, at most 1000); `next_since` is where to continue.
/// With `feed=sse` (or `Accept: text/event-stream`) the changes stream as server-sent events
/// (`id` is the position), resuming after `Last-Event-ID` when the client sends one.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn changes(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Response> {
    let last_event = scope.ctx.header("last-event-id").map(str::trim);
    let since = match last_event.filter(|v| !v.is_empty()) {
        Some(text) => text.parse::<i64>().map_err(|_| {
            bad_value(
                "Last-Event-ID",
                "Value did not match type(s): integer",
                text,
            )
        })?,
        None => int_option(&scope, "since")?.unwrap_or(0),
    };
    if super::reply::wants_event_stream(&scope.ctx) {
        return Ok(event_stream(&state, &scope.account.id, since));
    }
    let limit = match int_option(&scope, "limit")? {
        None => 100,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::faulty_request(&format!(
                "limit must be from 1 to {MAX_PAGE}"
            )))
        }
    };
    let rows = state
        .store
        .changes_since(&scope.account.id, since, limit)
        .await?;
    let next = rows.last().map(|c| c.pos).unwrap_or(since);
    let data: Vec<Value> = rows.iter().map(history::change_row).collect();
    Ok(Reply::ok(Value::Array(data))
        .with_field("since", json!(since))
        .with_field("next_since", json!(next))
        .into_response())
}

/// The change feed as server-sent events: each change once, in feed order, `id` its position;
/// a comment every 15 s keeps proxies from closing the stream. It ends when the client goes
/// or the server stops; a reader error ends it too (the client resumes with `Last-Event-ID`).
fn event_stream(state: &AppState, account_id: &str, since: i64) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    let mut follower = crate::history::feed::Follower::new(
        state.store.clone(),
        &state.pipeline.feed,
        account_id.to_string(),
        since,
    );
    let mut stopping = state.stopping.subscribe();
    let account = account_id.to_string();
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                _ = stopping.wait_for(|s| *s) => return,
                _ = tx.closed() => return,
                batch = follower.next() => batch,
            };
            match batch {
                Ok(changes) => {
                    for change in changes {
                        let event = Event::default()
                            .id(change.pos.to_string())
                            .event("change")
                            .data(history::change_row(&change).to_string());
                        if tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, %account, "change feed read failed; ending the stream");
                    return;
                }
            }
        }
    });
    super::reply::event_stream(rx)
}
