//! Callflow drafts: `GET|PUT /v2/accounts/{A}/callflows/drafts` (every draft; a draft of a
//! callflow not created yet), `GET|POST|PATCH|DELETE .../callflows/{ID}/draft` and
//! `PUT .../callflows/{ID}/draft/publish`. Handlers parse, call the save pipeline
//! ([`crate::documents::drafts`]) and reply.
//!
//! A draft is shown like a callflow (its public fields and `id`) with `_read_only.draft`
//! holding its `rev` (the draft's own revision, its `ETag` and what `If-Match` names on a draft
//! edit) and `base_rev` (the live revision it started from; what `If-Match` names on a
//! publish).

use axum::extract::{Path, State};
use axum::http::header;
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Value};

use crate::domain::callflow::public_view;
use crate::store::Draft;

use super::callflows::{list_reply, request_object};
use super::error::ApiResult;
use super::extract::AccountScope;
use super::reply::Reply;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/accounts/{account_id}/callflows/drafts",
            get(list).put(create),
        )
        .route(
            "/v2/accounts/{account_id}/callflows/{callflow_id}/draft",
            get(fetch).post(save).patch(patch).delete(discard),
        )
        .route(
            "/v2/accounts/{account_id}/callflows/{callflow_id}/draft/publish",
            put(publish),
        )
}

/// A draft as clients see it; `live_rev` (when known) is the live callflow's current
/// revision, so a client can tell the draft's base moved.
fn view(draft: &Draft, live_rev: Option<Option<String>>) -> Value {
    let mut data = public_view(&draft.doc, &draft.callflow_id);
    let mut info = serde_json::Map::new();
    info.insert("rev".into(), json!(draft.rev));
    info.insert("base_rev".into(), json!(draft.base_rev));
    info.insert("modified".into(), json!(draft.modified));
    if let Some(live) = live_rev {
        info.insert("stale".into(), json!(live != draft.base_rev));
        info.insert("live_rev".into(), json!(live));
    }
    data.insert("_read_only".into(), json!({ "draft": info }));
    Value::Object(data)
}

fn reply(draft: &Draft) -> Reply {
    Reply::ok(view(draft, None)).with_revision(&draft.rev)
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn list(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let drafts = state.pipeline.drafts(&scope.account.id).await?;
    let rows = drafts
        .iter()
        .map(|d| {
            let mut row = crate::domain::callflow::listing_summary(&d.callflow_id, &d.doc);
            if let Value::Object(m) = &mut row {
                m.insert("rev".into(), json!(d.rev));
                m.insert("base_rev".into(), json!(d.base_rev));
                m.insert("modified".into(), json!(d.modified));
            }
            row
        })
        .collect();
    Ok(list_reply(rows, None))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn create(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let draft = state
        .pipeline
        .create_draft(&scope.writer()?, data, scope.if_match())
        .await?;
    let location = format!(
        "/v2/accounts/{}/callflows/{}/draft",
        scope.account.id, draft.callflow_id
    );
    Ok(reply(&draft)
        .with_status(axum::http::StatusCode::CREATED)
        .with_header(header::LOCATION, location))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn fetch(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let draft = state.pipeline.draft(&scope.account.id, &id).await?;
    let live = state
        .store
        .get_callflow(&scope.account.id, &id)
        .await?
        .map(|c| c.rev);
    Ok(Reply::ok(view(&draft, Some(live))).with_revision(&draft.rev))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn save(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let draft = state
        .pipeline
        .save_draft(&scope.writer()?, &id, data, scope.if_match())
        .await?;
    Ok(reply(&draft))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn patch(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let draft = state
        .pipeline
        .patch_draft(&scope.writer()?, &id, data, scope.if_match())
        .await?;
    Ok(reply(&draft))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn discard(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let draft = state
        .pipeline
        .discard_draft(&scope.writer()?, &id, scope.if_match())
        .await?;
    let mut data = view(&draft, None);
    data["_read_only"]["deleted"] = json!(true);
    Ok(Reply::ok(data).with_revision(&draft.rev))
}

/// Answers like a callflow save: the live callflow as published (201 with `Location` when the
/// publish created it).
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn publish(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let saved = state
        .pipeline
        .publish(&scope.writer()?, &id, scope.if_match())
        .await?;
    let created = crate::store::rev_number(&saved.rev) == 1;
    let reply =
        Reply::ok(Value::Object(public_view(&saved.doc, &saved.id))).with_revision(&saved.rev);
    if created {
        let location = format!("/v2/accounts/{}/callflows/{}", scope.account.id, saved.id);
        return Ok(reply
            .with_status(axum::http::StatusCode::CREATED)
            .with_header(header::LOCATION, location));
    }
    Ok(reply)
}
