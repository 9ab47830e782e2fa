//! `/v2/accounts/{ACCOUNT_ID}/{TYPE}[/{ID}]` for every account document type in
//! [`crate::documents::TYPES`] (devices, vmboxes, groups, menus, ...): list, create, fetch,
//! change, patch and delete. Handlers parse, call the save pipeline
//! ([`crate::documents::pipeline`]) and reply.

use axum::extract::{Path, State};
use axum::http::header;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::documents::pipeline::{Kind, Target};
use crate::documents::{entry_row, DocType, ENTRY, TYPES};
use crate::domain::callflow::public_view;
use crate::store::StoredCallflow;

use super::callflows::{list_reply, request_object, Paging};
use super::error::{ApiError, ApiResult};
use super::extract::AccountScope;
use super::listing::{self, Page, Term};
use super::reply::Reply;
use super::AppState;

pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for ty in TYPES {
        let collection = format!("/v2/accounts/{{account_id}}/{}", ty.segment);
        let item = format!("{collection}/{{doc_id}}");
        router = router
            .route(
                &collection,
                get(move |State(state): State<AppState>, scope: AccountScope| {
                    list(ty, state, scope)
                })
                .put(move |State(state): State<AppState>, scope: AccountScope| {
                    create(ty, state, scope)
                }),
            )
            .route(
                &item,
                get(
                    move |State(state): State<AppState>,
                          Path((_, id)): Path<(String, String)>,
                          scope: AccountScope| fetch(ty, state, id, scope),
                )
                .post(
                    move |State(state): State<AppState>,
                          Path((_, id)): Path<(String, String)>,
                          scope: AccountScope| replace(ty, state, id, scope),
                )
                .patch(
                    move |State(state): State<AppState>,
                          Path((_, id)): Path<(String, String)>,
                          scope: AccountScope| patch(ty, state, id, scope),
                )
                .delete(
                    move |State(state): State<AppState>,
                          Path((_, id)): Path<(String, String)>,
                          scope: AccountScope| remove(ty, state, id, scope),
                ),
            );
    }
    router
}

fn deleted_reply(stored: &StoredCallflow) -> Reply {
    let mut data = public_view(&stored.doc, &stored.id);
    data.insert("_read_only".into(), json!({"deleted": true}));
    Reply::ok(Value::Object(data)).with_revision(&stored.rev)
}

fn saved_reply(saved: crate::documents::pipeline::Saved) -> Reply {
    Reply::ok(Value::Object(public_view(&saved.doc, &saved.id)))
        .with_revision(&saved.rev)
        .with_call_tests(saved.tests.clone())
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn list(ty: &'static DocType, state: AppState, scope: AccountScope) -> ApiResult<Reply> {
    state
        .replies
        .reply(
            &state,
            &scope,
            ty.pvt_type,
            0,
            compute_list(ty, &state, &scope),
        )
        .await
}

async fn compute_list(
    ty: &'static DocType,
    state: &AppState,
    scope: &AccountScope,
) -> ApiResult<Reply> {
    if super::history::wants_deleted(scope) {
        return super::history::deleted_listing(state, scope, Some(ty)).await;
    }
    let page = Page::from_request(&scope.ctx, &state.config)?;
    let filters = listing::Filters::from_request(&scope.ctx);
    let (docs, next) =
        listing::collect_from(state, &scope.account.id, Some(ty.pvt_type), &page, &filters).await?;
    let items = docs.iter().map(|d| ty.summary_row(&d.id, &d.doc)).collect();
    Ok(list_reply(
        items,
        Some(Paging {
            paginate: page.shows_paging(next.is_some()),
            start: page.start.clone(),
            next: next.map(Term::Bin),
        }),
    ))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn create(ty: &'static DocType, state: AppState, scope: AccountScope) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let saved = state
        .pipeline
        .create(Kind::Doc(ty), &scope.writer()?, data, scope.if_match())
        .await?;
    let location = format!(
        "/v2/accounts/{}/{}/{}",
        scope.account.id, ty.segment, saved.id
    );
    Ok(
        Reply::created(Value::Object(public_view(&saved.doc, &saved.id)))
            .with_revision(&saved.rev)
            .with_call_tests(saved.tests.clone())
            .with_header(header::LOCATION, location),
    )
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn fetch(
    ty: &'static DocType,
    state: AppState,
    id: String,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let name = format!("{}/{id}", ty.pvt_type);
    let compute = async {
        let target = Target::new(Kind::Doc(ty), &scope.account.id, &id);
        let stored = state.pipeline.load(target).await?;
        let data = Value::Object(public_view(&stored.doc, &id)).to_string();
        Ok(Reply::ok_serialised(data.into()).with_revision(&stored.rev))
    };
    state.replies.reply(&state, &scope, &name, 0, compute).await
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn replace(
    ty: &'static DocType,
    state: AppState,
    id: String,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let target = Target::new(Kind::Doc(ty), &scope.account.id, &id);
    let saved = state
        .pipeline
        .replace(target, &scope.writer()?, data, scope.if_match())
        .await?;
    Ok(saved_reply(saved))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn patch(
    ty: &'static DocType,
    state: AppState,
    id: String,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let target = Target::new(Kind::Doc(ty), &scope.account.id, &id);
    let saved = state
        .pipeline
        .patch(target, &scope.writer()?, data, scope.if_match())
        .await?;
    Ok(saved_reply(saved))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn remove(
    ty: &'static DocType,
    state: AppState,
    id: String,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let target = Target::new(Kind::Doc(ty), &scope.account.id, &id);
    let stored = state
        .pipeline
        .delete(
            target,
            &scope.writer()?,
            scope.if_match(),
            scope.hard_delete(),
        )
        .await?;
    Ok(deleted_reply(&stored))
}

/// `GET /v2/accounts/{A}/users/{USER_ID}/devices`: the devices a live user owns or is
/// hot-desked into (`cb_devices` reading `devices/listing_by_owner`), ordered by id.
pub fn owner_router() -> Router<AppState> {
    Router::new().route(
        "/v2/accounts/{account_id}/users/{user_id}/devices",
        get(user_devices),
    )
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn user_devices(
    State(state): State<AppState>,
    Path((_, user_id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let users = crate::documents::by_segment("users")
        .ok_or_else(|| ApiError::internal("the users type is missing"))?;
    let target = Target::new(Kind::Doc(users), &scope.account.id, &user_id);
    state.pipeline.load(target).await?;
    let devices = state
        .store
        .documents_owned_by(&scope.account.id, "device", &user_id)
        .await?;
    let items = devices
        .iter()
        .map(|(d, hotdesked)| crate::documents::owned_device_row(&d.id, &d.doc, *hotdesked))
        .collect();
    Ok(list_reply(items, None))
}

/// The entries of a list: `/v2/accounts/{A}/lists/{LIST_ID}/entries[/{ENTRY_ID}]` (`cb_lists`).
/// Entries are `list_entry` documents whose `list_id` names their list. Better than Kazoo, an
/// entry is only reached through its own list, and a new entry needs an existing list.
pub fn entries_router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/accounts/{account_id}/lists/{list_id}/entries",
            get(list_entries).put(create_entry).delete(delete_entries),
        )
        .route(
            "/v2/accounts/{account_id}/lists/{list_id}/entries/{entry_id}",
            get(fetch_entry)
                .post(replace_entry)
                .patch(patch_entry)
                .delete(delete_entry),
        )
}

/// The list, live (404 otherwise).
async fn the_list(state: &AppState, scope: &AccountScope, list_id: &str) -> ApiResult<()> {
    let lists = crate::documents::by_segment("lists")
        .ok_or_else(|| ApiError::internal("the lists type is missing"))?;
    let target = Target::new(Kind::Doc(lists), &scope.account.id, list_id);
    state.pipeline.load(target).await?;
    Ok(())
}

/// An entry of the list in the URL.
fn entry<'a>(scope: &'a AccountScope, list_id: &'a str, id: &'a str) -> Target<'a> {
    Target {
        parent: Some(("list_id", list_id)),
        ..Target::new(Kind::Doc(&ENTRY), &scope.account.id, id)
    }
}

/// The request data with `list_id` set from the URL (`cb_lists` forces it on create).
fn with_list_id(scope: &AccountScope, list_id: &str) -> ApiResult<Map<String, Value>> {
    let mut data = request_object(&scope.ctx)?;
    data.insert("list_id".into(), json!(list_id));
    Ok(data)
}

async fn list_entries(
    State(state): State<AppState>,
    Path((_, list_id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    the_list(&state, &scope, &list_id).await?;
    let entries = state
        .pipeline
        .entries_of(&scope.account.id, &list_id)
        .await?;
    Ok(list_reply(
        entries.iter().map(|d| entry_row(&d.id, &d.doc)).collect(),
        None,
    ))
}

async fn create_entry(
    State(state): State<AppState>,
    Path((_, list_id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    the_list(&state, &scope, &list_id).await?;
    let data = with_list_id(&scope, &list_id)?;
    let id = crate::domain::new_id();
    let saved = state
        .pipeline
        .create_as(Kind::Doc(&ENTRY), &scope.writer()?, &id, data)
        .await?;
    Ok(
        Reply::created(Value::Object(public_view(&saved.doc, &saved.id)))
            .with_revision(&saved.rev)
            .with_call_tests(saved.tests.clone()),
    )
}

/// `DELETE .../entries`: every entry of the list, removed for good; answers the old rows.
async fn delete_entries(
    State(state): State<AppState>,
    Path((_, list_id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    the_list(&state, &scope, &list_id).await?;
    let entries = state
        .pipeline
        .entries_of(&scope.account.id, &list_id)
        .await?;
    let writer = scope.writer()?;
    for e in &entries {
        state
            .pipeline
            .purge(Kind::Doc(&ENTRY), &writer, &e.id, &e.rev)
            .await?;
    }
    Ok(list_reply(
        entries.iter().map(|d| entry_row(&d.id, &d.doc)).collect(),
        None,
    ))
}

async fn fetch_entry(
    State(state): State<AppState>,
    Path((_, list_id, id)): Path<(String, String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let stored = state.pipeline.load(entry(&scope, &list_id, &id)).await?;
    Ok(Reply::ok(Value::Object(public_view(&stored.doc, &id))).with_revision(&stored.rev))
}

async fn replace_entry(
    State(state): State<AppState>,
    Path((_, list_id, id)): Path<(String, String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = with_list_id(&scope, &list_id)?;
    let saved = state
        .pipeline
        .replace(
            entry(&scope, &list_id, &id),
            &scope.writer()?,
            data,
            scope.if_match(),
        )
        .await?;
    Ok(saved_reply(saved))
}

async fn patch_entry(
    State(state): State<AppState>,
    Path((_, list_id, id)): Path<(String, String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = with_list_id(&scope, &list_id)?;
    let saved = state
        .pipeline
        .patch(
            entry(&scope, &list_id, &id),
            &scope.writer()?,
            data,
            scope.if_match(),
        )
        .await?;
    Ok(saved_reply(saved))
}

async fn delete_entry(
    State(state): State<AppState>,
    Path((_, list_id, id)): Path<(String, String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let stored = state
        .pipeline
        .delete(
            entry(&scope, &list_id, &id),
            &scope.writer()?,
            scope.if_match(),
            false,
        )
        .await?;
    Ok(deleted_reply(&stored))
}
