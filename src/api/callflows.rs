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
pub(crate) fn check_if_match(ctx: &ReqCtx, current: &str) -> ApiResult<()> {
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

/// The id a create asks for (`_id` or `id`), else a new one.
pub(crate) fn requested_id(data: &Map<String, Value>) -> String {
    ["_id", "id"]
        .iter()
        .find_map(|k| {
            data.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_string)
        .unwrap_or_else(crate::domain::new_id)
}

/// The private fields Kazoo refreshes on every save of a callflow.
fn stamp_private(doc: &mut Map<String, Value>, scope: &AccountScope, first_save: bool) {
    stamp_private_as(doc, scope, first_save, "callflow")
}

/// The private fields Kazoo refreshes on every save (`crossbar_doc:update_pvt_parameters`),
/// `pvt_type` defaulting to `pvt_type`.
pub(crate) fn stamp_private_as(
    doc: &mut Map<String, Value>,
    scope: &AccountScope,
    first_save: bool,
    pvt_type: &str,
) {
    let now = crate::domain::now_gregorian();
    let account_id = &scope.account.id;
    doc.insert(
        "pvt_type".into(),
        doc.get("pvt_type")
            .cloned()
            .unwrap_or_else(|| json!(pvt_type)),
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
        references: cf::references(&doc),
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
    // An id used by any document of the account (the account itself, a user, a device) is a
    // `datastore_conflict`, decided by the store inside the write transaction.
    let id = requested_id(&data);
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
    let ids = metadata_candidates(flow);
    if ids.is_empty() {
        return Ok(json!({}));
    }
    // Every candidate in one store query, whatever its type; soft-deleted documents are found
    // too (`open_cache_doc`).
    let found: std::collections::HashMap<String, (String, Map<String, Value>)> = state
        .store
        .documents_by_ids(account_id, &ids)
        .await?
        .into_iter()
        .map(|(id, doc_type, doc)| (id, (doc_type, doc)))
        .collect();
    let mut out = Map::new();
    for id in ids {
        let Some((doc_type, doc)) = found.get(&id) else {
            continue;
        };
        // `cb_callflows:create_metadata`: `name` (a user's is first and last name), `numbers`
        // and `pvt_type`, each only when the document has it.
        let mut m = Map::new();
        if doc_type == "user" {
            let name = ["first_name", "last_name"]
                .iter()
                .filter_map(|k| doc.get(*k).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            if !name.trim().is_empty() {
                m.insert("name".into(), json!(name.trim()));
            }
        } else if let Some(name) = doc.get("name").filter(|v| !v.is_null()) {
            m.insert("name".into(), name.clone());
        }
        if let Some(numbers) = doc.get("numbers").filter(|v| !v.is_null()) {
            m.insert("numbers".into(), numbers.clone());
        }
        let pvt_type = doc
            .get("pvt_type")
            .cloned()
            .unwrap_or_else(|| json!(doc_type));
        m.insert("pvt_type".into(), pvt_type);
        out.insert(id, Value::Object(m));
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
