//! `/v2/accounts/{ACCOUNT_ID}/callflows[/{CALLFLOW_ID}]` and the number search.

use axum::extract::{Path, State};
use axum::http::header;
use axum::routing::get;
use axum::Router;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use crate::domain::callflow::{self as cf, listing_summary, metadata_candidates, public_view};
use crate::domain::numbers::{dial_plan, normalize, search_key};
use crate::schema::{SchemaError, SchemaErrors};
use crate::store::{Account, CallflowWrite, ChangeOp, StoredCallflow};

use super::envelope::{Reply, ReqCtx};
use super::error::{ApiError, ApiResult};
use super::extract::AccountScope;
use super::listing::{self, Page};
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

/// Stored docs that are live callflows (Kazoo's 404 rule for fetch, replace and delete).
fn live_callflow(doc: Option<StoredCallflow>, id: &str) -> ApiResult<StoredCallflow> {
    match doc {
        Some(d)
            if !d.deleted
                && d.doc
                    .get("pvt_type")
                    .map(|t| t == "callflow")
                    .unwrap_or(true) =>
        {
            Ok(d)
        }
        _ => Err(ApiError::bad_identifier(id)),
    }
}

/// `If-Match` naming another revision fails the precondition: 412, as cowboy's REST flow
/// answers it for Kazoo (checked against `api_resource:generate_etag`), with the envelope.
fn check_if_match(ctx: &ReqCtx, current: &str) -> ApiResult<()> {
    match ctx.header("if-match").map(|v| v.trim().trim_matches('"')) {
        Some(wanted) if wanted != "*" && wanted != current => Err(ApiError::precondition_failed()),
        _ => Ok(()),
    }
}

/// Kazoo's callflow validation pipeline on request data: private keys dropped, numbers and
/// patterns pre-checked and normalised, schema with defaults, then every pattern compiled.
fn validate_callflow(
    state: &AppState,
    account: &Account,
    data: &Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let mut public = cf::public_part(data);
    check_list_limits(&state.config, &public)?;
    cf::precheck_numbers(&mut public, &dial_plan(&Value::Object(account.doc.clone())))?;
    if !state.schemas.contains("callflows") {
        return Err(ApiError::schema_missing("callflows"));
    }
    // Pattern compile errors are reported together with the schema's, so one round trip
    // shows everything wrong with the document.
    let mut errors = SchemaErrors::default();
    for (i, p) in cf::string_list(&public, "patterns").iter().enumerate() {
        if let Err(e) = crate::routing::pattern::compile_routing(p) {
            errors.push(
                SchemaError::new(
                    vec!["patterns".into(), i.to_string()],
                    "error",
                    format!("invalid regular expression: {e}"),
                )
                .with("value", json!(p)),
            );
        }
    }
    let mut value = Value::Object(public);
    if let Err(schema_errors) = state.schemas.validate("callflows", &mut value) {
        errors.extend(schema_errors);
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let Value::Object(public) = value else {
        return Err(ApiError::internal("validated callflow is not an object"));
    };
    Ok(public)
}

/// The configured caps on numbers and patterns per callflow (Kazoo has none; a callflow with
/// 50,000 numbers is a mistake or an attack, and costs every later lookup and save).
fn check_list_limits(config: &super::ApiConfig, doc: &Map<String, Value>) -> ApiResult<()> {
    let mut errors = SchemaErrors::default();
    for (field, limit) in [
        ("numbers", config.max_numbers_per_callflow),
        ("patterns", config.max_patterns_per_callflow),
    ] {
        if let Some(Value::Array(items)) = doc.get(field) {
            if items.len() > limit {
                errors.push(
                    SchemaError::at(
                        field,
                        "maxItems",
                        format!("The list is more than {limit} items"),
                    )
                    .with("target", json!(limit)),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.into())
    }
}

/// Schema validation and pattern compilation are CPU work proportional to the body (up to the
/// size limit, thousands of patterns): keep them off the async workers.
async fn validate_off_runtime(
    state: &AppState,
    account: &Account,
    data: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let (state, account) = (state.clone(), account.clone());
    super::offload(move || validate_callflow(&state, &account, &data)).await?
}

fn request_object(ctx: &ReqCtx) -> ApiResult<Map<String, Value>> {
    match &ctx.data {
        Value::Object(m) => Ok(m.clone()),
        other => Err(ApiError::invalid_field(
            SchemaError::at("data", "type", "Value did not match type(s): object")
                .with("target", json!("object"))
                .with("value", other.clone()),
        )),
    }
}

/// The private fields Kazoo refreshes on every save.
fn stamp_private(doc: &mut Map<String, Value>, scope: &AccountScope, first_save: bool) {
    let now = crate::domain::now_gregorian();
    let account_id = &scope.account.id;
    doc.insert(
        "pvt_type".into(),
        doc.get("pvt_type")
            .cloned()
            .unwrap_or_else(|| json!("callflow")),
    );
    doc.entry("pvt_vsn").or_insert_with(|| json!("1"));
    doc.entry("pvt_account_id")
        .or_insert_with(|| json!(account_id));
    doc.entry("pvt_account_db")
        .or_insert_with(|| json!(account_db(account_id)));
    if first_save {
        doc.insert("pvt_created".into(), json!(now));
    }
    doc.insert("pvt_modified".into(), json!(now));
    doc.insert("pvt_request_id".into(), json!(scope.ctx.request_id));
    doc.insert("pvt_is_authenticated".into(), json!(true));
    doc.insert("pvt_auth_account_id".into(), json!(scope.caller.account.id));
    match &scope.caller.claims.owner_id {
        Some(owner) => doc.insert("pvt_auth_user_id".into(), json!(owner)),
        None => doc.remove("pvt_auth_user_id"),
    };
    match doc
        .get("name")
        .and_then(Value::as_str)
        .map(cf::alphanum_name)
    {
        Some(n) => doc.insert("pvt_alphanum_name".into(), json!(n)),
        None => doc.remove("pvt_alphanum_name"),
    };
}

/// Kazoo's encoded account database name.
fn account_db(id: &str) -> String {
    if id.len() == 32 {
        format!("account%2F{}%2F{}%2F{}", &id[0..2], &id[2..4], &id[4..])
    } else {
        format!("account%2F{id}")
    }
}

fn write_for(
    scope: &AccountScope,
    id: &str,
    expected_rev: Option<String>,
    doc: Map<String, Value>,
    op: ChangeOp,
) -> CallflowWrite {
    let deleted = op == ChangeOp::Delete;
    CallflowWrite {
        account_id: scope.account.id.clone(),
        id: id.to_string(),
        new_rev: cf::next_revision(expected_rev.as_deref(), &doc),
        expected_rev,
        // The document keeps what was sent; the uniqueness rows are one per value (Kazoo
        // stores `["^a$","^a$"]`: `validate_unique_patterns` only looks at other callflows).
        numbers: dedup(cf::string_list(&doc, "numbers")),
        patterns: dedup(cf::string_list(&doc, "patterns")),
        doc,
        deleted,
        op,
        request_id: scope.ctx.request_id.clone(),
        max_account_patterns: None,
    }
}

/// The values in first-seen order, each once.
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    values
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect()
}

/// Writes, then makes the write visible to this node's lookups, in a task of its own: a client
/// that leaves half-way cannot stop the routing refresh after the commit.
async fn commit(state: &AppState, mut write: CallflowWrite) -> ApiResult<CallflowWrite> {
    write.max_account_patterns = Some(state.config.max_patterns_per_account);
    let state = state.clone();
    tokio::spawn(async move {
        state.store.write_callflow(&write).await?;
        refresh_routes(&state, &write.account_id, &write.id).await;
        Ok(write)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Make a committed write visible to this node's lookups before answering. The write itself
/// succeeded, so a failure here only drops the snapshot (the next lookup reloads it).
async fn refresh_routes(state: &AppState, account_id: &str, callflow_id: &str) {
    if let Err(error) = state.routes.refresh(account_id, callflow_id).await {
        tracing::warn!(%error, account_id, "routing refresh failed; snapshot dropped");
        state.routes.invalidate(account_id);
    }
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn create(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    // cowboy: `If-Match` on a PUT to a missing resource fails the precondition.
    if scope.ctx.header("if-match").is_some() {
        return Err(ApiError::precondition_failed());
    }
    let data = request_object(&scope.ctx)?;
    let public = validate_off_runtime(&state, &scope.account, data.clone()).await?;
    let id = ["_id", "id"]
        .iter()
        .find_map(|k| {
            data.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_string)
        .unwrap_or_else(crate::domain::new_id);
    // Kazoo keeps every document of an account in one database: an id already used there by
    // another document (the account itself, a user) is a `datastore_conflict`.
    if id == scope.account.id
        || state
            .store
            .get_user(&scope.account.id, &id)
            .await?
            .is_some()
    {
        return Err(ApiError::conflict());
    }
    let mut doc = public;
    doc.insert("_id".into(), json!(id));
    stamp_private(&mut doc, &scope, true);
    let write = commit(&state, write_for(&scope, &id, None, doc, ChangeOp::Create)).await?;
    let location = format!("/v2/accounts/{}/callflows/{}", scope.account.id, id);
    Ok(Reply::created(Value::Object(public_view(&write.doc, &id)))
        .with_revision(&write.new_rev)
        .with_header(header::LOCATION, location))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn fetch(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let stored = live_callflow(state.store.get_callflow(&scope.account.id, &id).await?, &id)?;
    let mut data = public_view(&stored.doc, &id);
    data.insert(
        "metadata".into(),
        metadata(&state, &scope.account.id, stored.doc.get("flow")).await?,
    );
    Ok(Reply::ok(Value::Object(data)).with_revision(&stored.rev))
}

/// Names, numbers and types of the documents a flow refers to.
async fn metadata(state: &AppState, account_id: &str, flow: Option<&Value>) -> ApiResult<Value> {
    let mut out = Map::new();
    for id in metadata_candidates(flow) {
        // `cb_callflows:create_metadata`: `name`, `numbers` and `pvt_type`, each only when
        // the document has it; soft-deleted documents are found too (`open_cache_doc`).
        if let Some(doc) = state.store.get_callflow(account_id, &id).await? {
            let mut m = Map::new();
            for key in ["name", "numbers", "pvt_type"] {
                if let Some(v) = doc.doc.get(key).filter(|v| !v.is_null()) {
                    m.insert(key.into(), v.clone());
                }
            }
            out.insert(id, Value::Object(m));
        } else if let Some(user) = state.store.get_user(account_id, &id).await? {
            let mut m = Map::new();
            let name = [
                user.first_name.unwrap_or_default(),
                user.last_name.unwrap_or_default(),
            ]
            .join(" ");
            if !name.trim().is_empty() {
                m.insert("name".into(), json!(name.trim()));
            }
            m.insert("pvt_type".into(), json!("user"));
            out.insert(id, Value::Object(m));
        }
    }
    Ok(Value::Object(out))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn replace(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let public = validate_off_runtime(&state, &scope.account, data.clone()).await?;
    let stored = live_callflow(state.store.get_callflow(&scope.account.id, &id).await?, &id)?;
    check_if_match(&scope.ctx, &stored.rev)?;
    save_update(&state, &scope, stored, public).await
}

/// The stored private fields plus the new validated public part, saved on top of `stored`.
async fn save_update(
    state: &AppState,
    scope: &AccountScope,
    stored: StoredCallflow,
    public: Map<String, Value>,
) -> ApiResult<Reply> {
    let mut doc = cf::private_part(&stored.doc);
    doc.extend(public);
    stamp_private(&mut doc, scope, false);
    let write = commit(
        state,
        write_for(scope, &stored.id, Some(stored.rev), doc, ChangeOp::Update),
    )
    .await?;
    Ok(Reply::ok(Value::Object(public_view(&write.doc, &write.id))).with_revision(&write.new_rev))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn patch(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let stored = match state.store.get_callflow(&scope.account.id, &id).await? {
        Some(d) if !d.deleted => d,
        _ => return Err(ApiError::bad_identifier(&id)),
    };
    check_if_match(&scope.ctx, &stored.rev)?;
    let merged = cf::merge_patch(&cf::public_part(&stored.doc), &cf::public_part(&data));
    let public = validate_off_runtime(&state, &scope.account, merged).await?;
    // Kazoo patches any document type, then refuses to save one that is not a callflow.
    let stored = live_callflow(Some(stored), &id)?;
    save_update(&state, &scope, stored, public).await
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn remove(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    let stored = live_callflow(state.store.get_callflow(&scope.account.id, &id).await?, &id)?;
    check_if_match(&scope.ctx, &stored.rev)?;
    if scope.ctx.flag("should_soft_delete") == Some(false) {
        let (state, account_id, id, rev) = (
            state.clone(),
            scope.account.id.clone(),
            id.clone(),
            stored.rev.clone(),
        );
        tokio::spawn(async move {
            state.store.purge_callflow(&account_id, &id, &rev).await?;
            refresh_routes(&state, &account_id, &id).await;
            Ok::<_, ApiError>(())
        })
        .await
        .map_err(ApiError::internal)??;
    } else {
        let mut doc = stored.doc.clone();
        doc.insert("pvt_deleted".into(), json!(true));
        stamp_private(&mut doc, &scope, false);
        commit(
            &state,
            write_for(&scope, &id, Some(stored.rev.clone()), doc, ChangeOp::Delete),
        )
        .await?;
    }
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
    let page = Page::from_request(&scope.ctx)?;
    let filters = listing::Filters::from_query(&scope.ctx.query_pairs);
    let (docs, next) = listing::collect(&state, &account_id, &page, &filters).await?;
    let items: Vec<Value> = docs
        .iter()
        .map(|d| listing_summary(&d.id, &d.doc))
        .collect();
    Ok(list_reply(items, Some((&page, next))))
}

/// A listing reply: `revision` is the md5 of the data (absent when empty), paging keys when on.
fn list_reply(items: Vec<Value>, paging: Option<(&Page, Option<String>)>) -> Reply {
    let count = items.len();
    let data = Value::Array(items);
    let revision = (count > 0).then(|| hex::encode(Md5::digest(data.to_string().as_bytes())));
    let mut reply = Reply::ok(data);
    if let Some(rev) = revision {
        reply = reply.with_revision(&rev);
    }
    if let Some((page, next)) = paging {
        if page.paginate {
            reply = reply.with_field("page_size", json!(count));
            if let Some(raw) = &page.raw_start_key {
                reply = reply.with_field("start_key", json!(raw));
            }
            if let Some(next) = next {
                reply = reply.with_field("next_start_key", json!(listing::encode_key(&next)));
            }
        }
    }
    reply
}

/// `GET /v2/accounts/{A}/search?t=callflow&q=number|name_and_number&v=...`: prefix search on
/// the normalised number (and name), as Kazoo's search views do.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn search(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let q = |k: &str| {
        scope
            .ctx
            .option(k)
            .and_then(|v| v.as_str().map(str::to_string))
    };
    let mut errors = SchemaErrors::default();
    for key in ["t", "q"] {
        if q(key).is_none() {
            errors.push(
                SchemaError::at(key, "required", "Field is required but missing")
                    .with("value", json!(key)),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let (t, kind) = (q("t").unwrap_or_default(), q("q").unwrap_or_default());
    if t != "callflow" || !matches!(kind.as_str(), "number" | "name_and_number") {
        let field = if t != "callflow" { "t" } else { "q" };
        return Err(ApiError::invalid_field(
            SchemaError::at(
                field,
                "enum",
                "Value not found in enumerated list of values",
            )
            .with(
                "target",
                if field == "t" {
                    json!(["callflow"])
                } else {
                    json!(["number", "name_and_number"])
                },
            )
            .with("value", json!(if field == "t" { t } else { kind.clone() })),
        ));
    }
    let needle = search_key(&q("v").unwrap_or_default());
    let mut found = state
        .store
        .search_numbers(&scope.account.id, &needle)
        .await?;
    if kind == "name_and_number" {
        let all = state
            .store
            .list_callflows(&scope.account.id, None, i64::MAX, false)
            .await?;
        for d in all {
            let name_hit = d
                .doc
                .get("name")
                .and_then(Value::as_str)
                .map(|n| search_key(n).starts_with(&needle))
                .unwrap_or(false);
            if name_hit && !found.iter().any(|f| f.id == d.id) {
                found.push(d);
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let items: Vec<Value> = found
        .iter()
        .map(|d| {
            let mut m = Map::new();
            m.insert("id".into(), json!(d.id));
            for key in ["name", "numbers"] {
                if let Some(v) = d.doc.get(key) {
                    m.insert(key.into(), v.clone());
                }
            }
            Value::Object(m)
        })
        .collect();
    Ok(list_reply(items, None))
}
