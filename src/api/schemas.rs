//! `GET /v2/schemas`, `GET /v2/schemas/{NAME}`, `PUT /v2/schemas/{NAME}/validation`.

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Ctx};
use super::reply::Reply;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/schemas", get(list))
        .route("/v2/schemas/{name}", get(fetch))
        .route("/v2/schemas/{name}/validation", put(validate))
}

/// The schema names, sorted; `kapi.*` (internal message schemas) only with `internals=true`
/// (`cb_schemas:normalize_fun`).
async fn list(State(state): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Reply> {
    let internals = ctx.flag("internals").unwrap_or(false);
    let mut names: Vec<String> = state
        .schemas
        .names()
        .into_iter()
        .filter(|n| internals || !n.starts_with("kapi."))
        .collect();
    names.sort();
    Ok(Reply::ok(json!(names)))
}

async fn fetch(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Reply> {
    let doc = state
        .schemas
        .get(&name)
        .ok_or_else(|| ApiError::bad_identifier(&name))?;
    let mut data = doc.as_object().cloned().unwrap_or_default();
    data.retain(|k, _| !k.starts_with('_'));
    data.insert("id".into(), json!(name));
    Ok(Reply::ok(Value::Object(data)))
}

/// Validates without saving; any authenticated caller may use it.
async fn validate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Authenticated(_, ctx): Authenticated,
) -> ApiResult<Reply> {
    if !state.schemas.contains(&name) {
        // Kazoo answers 500 `schema NAME not found.`; the name is the client's mistake, so we
        // answer as `GET /v2/schemas/{name}` does (docs/compatibility.md).
        return Err(ApiError::bad_identifier(&name));
    }
    let (schemas, mut data) = (state.schemas.clone(), ctx.data.clone());
    let data = super::offload(move || schemas.validate(&name, &mut data).map(|()| data)).await??;
    Ok(Reply::created(data))
}
