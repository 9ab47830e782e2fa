//! `/v2/accounts/{ACCOUNT_ID}/{TYPE}[/{ID}]` for every account document type in
//! [`crate::documents::TYPES`] (devices, vmboxes, groups, menus, ...): list, create, fetch,
//! change, patch and delete, on one generic pipeline (validate with the type's schema, stamp
//! Kazoo's private fields, keep the type's unique values, write with a revision).

use axum::extract::{Path, State};
use axum::http::header;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::documents::{DocType, TYPES};
use crate::domain::callflow::{self as cf, public_view};
use crate::schema::{SchemaError, SchemaErrors};
use crate::store::{ChangeOp, DocumentWrite, StoreError, StoredCallflow};

use super::callflows::{
    check_if_match, list_reply, request_object, requested_id, stamp_private_as, Paging,
};
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

/// The stored document when it is a live document of this type (Kazoo's 404 otherwise).
async fn live(
    ty: &DocType,
    state: &AppState,
    account_id: &str,
    id: &str,
) -> ApiResult<StoredCallflow> {
    match state.store.get_document(account_id, id).await? {
        Some((doc_type, stored)) if doc_type == ty.pvt_type && !stored.deleted => Ok(stored),
        _ => Err(ApiError::bad_identifier(id)),
    }
}

/// The type's schema, with defaults applied, off the async workers.
async fn validate(
    ty: &'static DocType,
    state: &AppState,
    data: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    if !state.schemas.contains(ty.schema) {
        return Err(ApiError::schema_missing(ty.schema));
    }
    let schemas = state.schemas.clone();
    let mut value = Value::Object(cf::public_part(&data));
    let value =
        super::offload(move || schemas.validate(ty.schema, &mut value).map(|()| value)).await??;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::internal(format!(
            "schema {} accepted a non-object",
            ty.schema
        ))),
    }
}

/// Writes the document, answering a clash on a unique value with the type's Kazoo error.
async fn commit(ty: &DocType, state: &AppState, write: DocumentWrite) -> ApiResult<DocumentWrite> {
    let state = state.clone();
    let written = tokio::spawn(async move {
        state.store.write_document(&write).await?;
        Ok::<_, StoreError>(write)
    })
    .await
    .map_err(ApiError::internal)?;
    written.map_err(|e| match e {
        StoreError::KeyTaken(conflicts) => ApiError::validation(SchemaErrors(
            conflicts
                .into_iter()
                .map(|c| {
                    let rule = ty.rule(&c.kind);
                    let message = rule.map(|r| r.message).unwrap_or("already in use");
                    let path = c.kind.split('.').map(str::to_string).collect();
                    let error = SchemaError::new(path, "unique", message);
                    if rule.is_none_or(|r| r.cause) {
                        error.with("cause", json!(c.value))
                    } else {
                        error
                    }
                })
                .collect(),
        )),
        other => other.into(),
    })
}

/// A user's credentials, as `kzd_users` handles them: `password` is write-only, kept only as
/// argon2 hashes of Kazoo's md5 and sha1 credential strings (`"<username>:<password>"`); a
/// password without a username gets a generated one (`user_<16 hex>`); a new username needs a
/// password; a user with no username keeps no credentials.
async fn credentials(
    ty: &DocType,
    previous: Option<&Map<String, Value>>,
    doc: &mut Map<String, Value>,
) -> ApiResult<()> {
    use crate::store::{USER_MD5_HASH, USER_SHA1_HASH};
    if ty.pvt_type != "user" {
        return Ok(());
    }
    let password = doc
        .remove("password")
        .and_then(|v| v.as_str().map(str::to_string));
    doc.remove("confirm_password");
    let username = doc
        .get("username")
        .and_then(Value::as_str)
        .map(str::to_string);
    let previous_username = previous
        .and_then(|p| p.get("username"))
        .and_then(Value::as_str);
    match (username, password) {
        (username, Some(password)) if !password.is_empty() => {
            let username = match username {
                Some(u) => u,
                None => {
                    let generated = format!("user_{}", crate::auth::random_hex(8));
                    doc.insert("username".into(), json!(generated));
                    generated
                }
            };
            let hashes = crate::auth::hasher::pool()
                .run(move || -> anyhow::Result<(String, String)> {
                    Ok((
                        crate::auth::hash_secret(&crate::auth::md5_credentials(
                            &username, &password,
                        ))?,
                        crate::auth::hash_secret(&crate::auth::sha1_credentials(
                            &username, &password,
                        ))?,
                    ))
                })
                .await
                .map_err(|_| ApiError::too_many_requests(1))?
                .map_err(ApiError::internal)?;
            doc.insert(USER_MD5_HASH.into(), json!(hashes.0));
            doc.insert(USER_SHA1_HASH.into(), json!(hashes.1));
        }
        (Some(username), _) if previous_username != Some(username.as_str()) => {
            return Err(ApiError::invalid_field(SchemaError::at(
                "password",
                "required",
                "The password must be provided when creating / updating the user name",
            )));
        }
        (Some(_), _) => {}
        (None, _) => {
            doc.remove(USER_MD5_HASH);
            doc.remove(USER_SHA1_HASH);
        }
    }
    Ok(())
}

fn write_for(
    ty: &DocType,
    scope: &AccountScope,
    id: &str,
    expected_rev: Option<String>,
    doc: Map<String, Value>,
    op: ChangeOp,
) -> DocumentWrite {
    DocumentWrite {
        account_id: scope.account.id.clone(),
        id: id.to_string(),
        doc_type: ty.pvt_type.to_string(),
        new_rev: cf::next_revision(expected_rev.as_deref(), &doc),
        expected_rev,
        keys: ty.unique_keys(&doc),
        doc,
        deleted: op == ChangeOp::Delete,
        op,
        request_id: scope.ctx.request_id.clone(),
    }
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn list(ty: &'static DocType, state: AppState, scope: AccountScope) -> ApiResult<Reply> {
    let page = Page::from_request(&scope.ctx)?;
    let filters = listing::Filters::from_request(&scope.ctx);
    let (docs, next) = listing::collect_from(
        &state,
        &scope.account.id,
        Some(ty.pvt_type),
        &page,
        &filters,
    )
    .await?;
    let items = docs.iter().map(|d| ty.summary_row(&d.id, &d.doc)).collect();
    Ok(list_reply(
        items,
        Some(Paging {
            paginate: page.paginate,
            start: page.start.clone(),
            next: next.map(Term::Bin),
        }),
    ))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn create(ty: &'static DocType, state: AppState, scope: AccountScope) -> ApiResult<Reply> {
    if scope.ctx.header("if-match").is_some() {
        return Err(ApiError::precondition_failed());
    }
    let data = request_object(&scope.ctx)?;
    let id = requested_id(&data);
    let mut doc = validate(ty, &state, data).await?;
    (ty.prepare)(&mut doc);
    credentials(ty, None, &mut doc).await?;
    // An id used by any document of the account is refused by the store, inside the write
    // transaction (one id space per account, as one CouchDB database per account).
    doc.insert("_id".into(), json!(id));
    stamp_private_as(&mut doc, &scope, true, ty.pvt_type);
    let write = commit(
        ty,
        &state,
        write_for(ty, &scope, &id, None, doc, ChangeOp::Create),
    )
    .await?;
    let location = format!("/v2/accounts/{}/{}/{}", scope.account.id, ty.segment, id);
    Ok(Reply::created(Value::Object(public_view(&write.doc, &id)))
        .with_revision(&write.new_rev)
        .with_header(header::LOCATION, location))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn fetch(
    ty: &'static DocType,
    state: AppState,
    id: String,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let stored = live(ty, &state, &scope.account.id, &id).await?;
    Ok(Reply::ok(Value::Object(public_view(&stored.doc, &id))).with_revision(&stored.rev))
}

/// The stored private fields plus the new validated public part, saved on top of `stored`.
async fn save_update(
    ty: &'static DocType,
    state: &AppState,
    scope: &AccountScope,
    stored: StoredCallflow,
    public: Map<String, Value>,
) -> ApiResult<Reply> {
    let previous = stored.doc.clone();
    let mut doc = cf::private_part(&stored.doc);
    doc.extend(public);
    (ty.prepare)(&mut doc);
    credentials(ty, Some(&previous), &mut doc).await?;
    stamp_private_as(&mut doc, scope, false, ty.pvt_type);
    let write = commit(
        ty,
        state,
        write_for(
            ty,
            scope,
            &stored.id,
            Some(stored.rev),
            doc,
            ChangeOp::Update,
        ),
    )
    .await?;
    Ok(Reply::ok(Value::Object(public_view(&write.doc, &write.id))).with_revision(&write.new_rev))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn replace(
    ty: &'static DocType,
    state: AppState,
    id: String,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let stored = live(ty, &state, &scope.account.id, &id);
    replace_loaded(ty, &state, &scope, data, stored).await
}

/// Full replace: the request validated first, then the stored document (`load`) checked
/// against `If-Match` and saved over.
async fn replace_loaded(
    ty: &'static DocType,
    state: &AppState,
    scope: &AccountScope,
    data: Map<String, Value>,
    load: impl std::future::Future<Output = ApiResult<StoredCallflow>>,
) -> ApiResult<Reply> {
    let public = validate(ty, state, data).await?;
    let stored = load.await?;
    check_if_match(&scope.ctx, &stored.rev)?;
    save_update(ty, state, scope, stored, public).await
}

/// Patch: the request merged over the stored document, validated, saved.
async fn patch_loaded(
    ty: &'static DocType,
    state: &AppState,
    scope: &AccountScope,
    data: Map<String, Value>,
    stored: StoredCallflow,
) -> ApiResult<Reply> {
    check_if_match(&scope.ctx, &stored.rev)?;
    let merged = cf::merge_patch(&cf::public_part(&stored.doc), &cf::public_part(&data));
    let public = validate(ty, state, merged).await?;
    save_update(ty, state, scope, stored, public).await
}

/// Soft delete (`pvt_deleted`, unique values released); answers the document as it was.
async fn soft_delete(
    ty: &'static DocType,
    state: &AppState,
    scope: &AccountScope,
    stored: StoredCallflow,
) -> ApiResult<Reply> {
    let mut doc = stored.doc.clone();
    doc.insert("pvt_deleted".into(), json!(true));
    stamp_private_as(&mut doc, scope, false, ty.pvt_type);
    let write = write_for(
        ty,
        scope,
        &stored.id,
        Some(stored.rev.clone()),
        doc,
        ChangeOp::Delete,
    );
    commit(ty, state, write).await?;
    Ok(deleted_reply(&stored))
}

fn deleted_reply(stored: &StoredCallflow) -> Reply {
    let mut data = public_view(&stored.doc, &stored.id);
    data.insert("_read_only".into(), json!({"deleted": true}));
    Reply::ok(Value::Object(data)).with_revision(&stored.rev)
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn patch(
    ty: &'static DocType,
    state: AppState,
    id: String,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let stored = live(ty, &state, &scope.account.id, &id).await?;
    patch_loaded(ty, &state, &scope, data, stored).await
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id, doc_type = ty.pvt_type))]
async fn remove(
    ty: &'static DocType,
    state: AppState,
    id: String,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let stored = live(ty, &state, &scope.account.id, &id).await?;
    check_if_match(&scope.ctx, &stored.rev)?;
    if ty.pvt_type == "list" {
        // `cb_lists`: a list's entries are removed for good with it.
        for entry in entries_of(&state, &scope.account.id, &id).await? {
            state
                .store
                .purge_document(&scope.account.id, &entry.id, &entry.rev)
                .await?;
        }
    }
    if scope.ctx.flag("should_soft_delete") != Some(false) {
        return soft_delete(ty, &state, &scope, stored).await;
    }
    let (store, account_id, doc_id, rev) = (
        state.store.clone(),
        scope.account.id.clone(),
        id.clone(),
        stored.rev.clone(),
    );
    tokio::spawn(async move { store.purge_document(&account_id, &doc_id, &rev).await })
        .await
        .map_err(ApiError::internal)??;
    Ok(deleted_reply(&stored))
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

/// The list-entry type (not served at a top-level URL).
static ENTRY: DocType = DocType {
    segment: "entries",
    pvt_type: "list_entry",
    schema: "list_entries",
    summary: entry_row,
    unique: &[],
    prepare: no_prepare,
};

fn no_prepare(_: &mut Map<String, Value>) {}

/// `lists/entries` view rows: `{id, key: list_id, value: {...}}`.
fn entry_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut value = Map::new();
    for key in [
        "capture_group_key",
        "capture_group_length",
        "name",
        "number",
        "pattern",
        "prefix",
        "regexp",
        "type",
    ] {
        if let Some(v) = doc.get(key) {
            value.insert(key.into(), v.clone());
        }
    }
    json!({"id": id, "key": doc.get("list_id").cloned().unwrap_or(Value::Null), "value": value})
}

/// The list, live (404 otherwise).
async fn the_list(state: &AppState, scope: &AccountScope, list_id: &str) -> ApiResult<()> {
    let lists = crate::documents::by_segment("lists")
        .ok_or_else(|| ApiError::internal("the lists type is missing"))?;
    live(lists, state, &scope.account.id, list_id)
        .await
        .map(|_| ())
}

/// The live entries of a list, ordered by id.
async fn entries_of(
    state: &AppState,
    account_id: &str,
    list_id: &str,
) -> ApiResult<Vec<StoredCallflow>> {
    let all = state
        .store
        .list_documents(account_id, ENTRY.pvt_type, None, i64::MAX, false)
        .await?;
    Ok(all
        .into_iter()
        .filter(|d| d.doc.get("list_id").and_then(Value::as_str) == Some(list_id))
        .collect())
}

/// The entry, live and belonging to the list in the URL.
async fn the_entry(
    state: &AppState,
    scope: &AccountScope,
    list_id: &str,
    id: &str,
) -> ApiResult<StoredCallflow> {
    let entry = live(&ENTRY, state, &scope.account.id, id).await?;
    if entry.doc.get("list_id").and_then(Value::as_str) != Some(list_id) {
        return Err(ApiError::bad_identifier(id));
    }
    Ok(entry)
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
    let entries = entries_of(&state, &scope.account.id, &list_id).await?;
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
    let mut doc = validate(&ENTRY, &state, data).await?;
    doc.insert("_id".into(), json!(id));
    stamp_private_as(&mut doc, &scope, true, ENTRY.pvt_type);
    let write = commit(
        &ENTRY,
        &state,
        write_for(&ENTRY, &scope, &id, None, doc, ChangeOp::Create),
    )
    .await?;
    Ok(Reply::created(Value::Object(public_view(&write.doc, &id))).with_revision(&write.new_rev))
}

/// `DELETE .../entries`: every entry of the list, removed for good; answers the old rows.
async fn delete_entries(
    State(state): State<AppState>,
    Path((_, list_id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    the_list(&state, &scope, &list_id).await?;
    let entries = entries_of(&state, &scope.account.id, &list_id).await?;
    for entry in &entries {
        state
            .store
            .purge_document(&scope.account.id, &entry.id, &entry.rev)
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
    let entry = the_entry(&state, &scope, &list_id, &id).await?;
    Ok(Reply::ok(Value::Object(public_view(&entry.doc, &id))).with_revision(&entry.rev))
}

async fn replace_entry(
    State(state): State<AppState>,
    Path((_, list_id, id)): Path<(String, String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = with_list_id(&scope, &list_id)?;
    let entry = the_entry(&state, &scope, &list_id, &id);
    replace_loaded(&ENTRY, &state, &scope, data, entry).await
}

async fn patch_entry(
    State(state): State<AppState>,
    Path((_, list_id, id)): Path<(String, String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = with_list_id(&scope, &list_id)?;
    let entry = the_entry(&state, &scope, &list_id, &id).await?;
    patch_loaded(&ENTRY, &state, &scope, data, entry).await
}

async fn delete_entry(
    State(state): State<AppState>,
    Path((_, list_id, id)): Path<(String, String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let entry = the_entry(&state, &scope, &list_id, &id).await?;
    soft_delete(&ENTRY, &state, &scope, entry).await
}
