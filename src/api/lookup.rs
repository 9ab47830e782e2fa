//! `GET /v2/accounts/{ACCOUNT_ID}/lookup?number=N`: which callflow a dialled number reaches,
//! and why. Also used by `callflowd lookup`.

use std::time::Instant;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::domain::callflow::public_view;
use crate::routing::{lookup_data, RouteCache, RouteTable};
use crate::schema::SchemaError;
use crate::store::{Store, StoreError};

use super::error::{ApiError, ApiResult};
use super::extract::AccountScope;
use super::reply::Reply;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v2/accounts/{account_id}/lookup", get(lookup))
}

/// Routes `number` in `account_id`; `Ok(None)` when nothing routes it.
pub async fn resolve(
    routes: &RouteCache,
    store: &dyn Store,
    account_id: &str,
    number: &str,
    allow_no_match: bool,
) -> Result<Option<Value>, StoreError> {
    let started = Instant::now();
    let table = routes.table(account_id).await?;
    // (callflow id, the lookup's report without the document)
    let decide = move |table: &RouteTable, number: &str| {
        let route = table.lookup(number, allow_no_match, true);
        let result = route
            .as_ref()
            .map(|r| r.kind.as_str())
            .unwrap_or("not_found");
        metrics::counter!("callflowd_lookups_total", "result" => result).increment(1);
        route.map(|r| (r.callflow_id.to_string(), lookup_data(&r, Value::Null)))
    };
    // An account with many patterns that no prefix indexes makes every lookup try them all
    // (milliseconds): do that off the async workers.
    let decided = if table.unindexed_patterns() > OFFLOAD_UNINDEXED {
        let number = number.to_string();
        crate::api::offload(move || decide(&table, &number))
            .await
            .map_err(|e| StoreError::Other(anyhow::anyhow!("lookup task: {}", e.message())))?
    } else {
        decide(&table, number)
    };
    metrics::histogram!("callflowd_lookup_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    let Some((callflow_id, mut data)) = decided else {
        return Ok(None);
    };
    let Some(doc) = store
        .get_callflow(account_id, &callflow_id)
        .await?
        .filter(|d| !d.deleted)
    else {
        return Ok(None);
    };
    if let Value::Object(map) = &mut data {
        map.insert(
            "callflow".into(),
            Value::Object(public_view(&doc.doc, &doc.id)),
        );
    }
    Ok(Some(data))
}

/// Unindexed patterns past which a lookup runs on the blocking pool.
const OFFLOAD_UNINDEXED: usize = 64;

async fn lookup(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    lookup_in(&state, scope).await
}

/// The lookup once the scope is known (also the direct dispatch's).
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
pub(super) async fn lookup_in(state: &AppState, scope: AccountScope) -> ApiResult<Reply> {
    let number = match scope.ctx.query("number") {
        Some(n) if !n.is_empty() => n,
        _ => {
            return Err(ApiError::invalid_field(
                SchemaError::at("number", "required", "Field is required but missing")
                    .with("value", json!("number")),
            ))
        }
    };
    let allow_no_match = scope.ctx.flag("allow_no_match").unwrap_or(true);
    // Kept while neither the account's documents nor any routing snapshot changed.
    let compute = async {
        match resolve(
            &state.routes,
            state.store.as_ref(),
            &scope.account.id,
            number,
            allow_no_match,
        )
        .await?
        {
            Some(data) => Ok(Reply::ok_serialised(data.to_string().into())),
            None => Err(ApiError::bad_identifier(number)),
        }
    };
    state
        .replies
        .reply(state, &scope, "lookup", state.routes.version(), compute)
        .await
}
