//! Lint and routing analysis: `GET /v2/accounts/{A}/callflows/{ID}/lint` (`?draft=true`: its
//! saved draft),
//! `PUT /v2/accounts/{A}/lint` (an inline draft in `data`), `GET /v2/accounts/{A}/lint` (every
//! callflow), `GET /v2/accounts/{A}/routing/analysis` and
//! `GET /v2/accounts/{A}/routing/explain?number=N`. Handlers parse, authorise (the account
//! scope), call [`crate::lint`] or [`crate::routing::analysis`] and reply.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::documents::pipeline::{Kind, Target};
use crate::schema::SchemaError;

use super::callflows::request_object;
use super::error::{ApiError, ApiResult};
use super::extract::AccountScope;
use super::reply::Reply;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/accounts/{account_id}/callflows/{callflow_id}/lint",
            get(lint_stored),
        )
        .route(
            "/v2/accounts/{account_id}/lint",
            get(lint_account).put(lint_draft),
        )
        .route("/v2/accounts/{account_id}/routing/analysis", get(analysis))
        .route("/v2/accounts/{account_id}/routing/explain", get(explain))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn lint_stored(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Reply> {
    // `?draft=true`: the callflow's saved draft, checked as publishing it would check it.
    let doc = if scope.ctx.flag("draft") == Some(true) {
        let draft = state.pipeline.draft(&scope.account.id, &id).await?;
        state
            .pipeline
            .validate(Kind::Callflow, &scope.account, draft.doc)
            .await?
    } else {
        state
            .pipeline
            .load(Target::new(Kind::Callflow, &scope.account.id, &id))
            .await?
            .doc
    };
    let findings = crate::lint::lint_callflow(&state.pipeline, &scope.account.id, &id, doc).await?;
    Ok(Reply::ok(crate::lint::report(&findings)))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn lint_draft(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let id = if data.contains_key("_id") || data.contains_key("id") {
        crate::documents::pipeline::requested_id(&data)
    } else {
        crate::simulation::DRAFT_ID.to_string()
    };
    let doc = state
        .pipeline
        .validate(Kind::Callflow, &scope.account, data)
        .await?;
    let findings = crate::lint::lint_callflow(&state.pipeline, &scope.account.id, &id, doc).await?;
    Ok(Reply::ok(crate::lint::report(&findings)))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn lint_account(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let findings = crate::lint::lint_account(&state.pipeline, &scope.account.id).await?;
    Ok(Reply::ok(crate::lint::report(&findings)))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn analysis(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let table = state.routes.table(&scope.account.id).await?;
    let started = std::time::Instant::now();
    let reports = super::offload(move || crate::routing::analysis::analyse(&table)).await?;
    let count = |f: &dyn Fn(&crate::routing::analysis::PatternReport) -> bool| {
        reports.iter().filter(|r| f(r)).count()
    };
    let summary = json!({
        "patterns": reports.len(),
        "with_witness": count(&|r| r.witness.is_some()),
        "never_wins_proved": count(&|r| r.never_wins.is_some() && r.exact),
        "never_wins_sampled": count(&|r| r.never_wins.is_some() && !r.exact),
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    Ok(Reply::ok(json!(reports)).with_field("analysis", summary))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn explain(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let Some(number) = scope.ctx.query("number").filter(|n| !n.is_empty()) else {
        return Err(ApiError::invalid_field(
            SchemaError::at("number", "required", "Field is required but missing")
                .with("value", Value::Null),
        ));
    };
    let number = number.to_string();
    // The caller may reach `no_match` only when asked to play an on-net caller.
    let on_net = scope.ctx.flag("on_net").unwrap_or(false);
    let table = state.routes.table(&scope.account.id).await?;
    let data =
        super::offload(move || crate::routing::analysis::explain(&table, &number, on_net)).await?;
    Ok(Reply::ok(data))
}

/// `PUT /v2/accounts/{A}/callflow_tests/run`: runs every test, or those `data.tests` names
/// (names or ids), keeps each result as the test's last result, and answers them.
pub fn tests_router() -> Router<AppState> {
    Router::new().route(
        "/v2/accounts/{account_id}/callflow_tests/run",
        axum::routing::put(run_tests),
    )
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn run_tests(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let names: Vec<String> = match scope.ctx.data.get("tests") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(other) => {
            return Err(ApiError::invalid_field(
                SchemaError::at(
                    "tests",
                    "type",
                    "Value did not match type(s): array of strings",
                )
                .with("value", other.clone()),
            ))
        }
    };
    let results = crate::lint::calltests::run_selected(
        &state.pipeline,
        &scope.account,
        &scope.ctx.request_id,
        &names,
    )
    .await?;
    let passed = results.iter().filter(|r| r.result == "pass").count();
    Ok(Reply::ok(json!({
        "results": results.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        "summary": {"run": results.len(), "passed": passed, "failed": results.len() - passed},
    })))
}
