//! `PUT /v2/accounts/{ACCOUNT_ID}/simulations`: what a call would do, step by step, stored
//! nowhere. Parses, calls [`crate::simulation`], replies.

use axum::extract::State;
use axum::routing::put;
use axum::Router;

use super::callflows::request_object;
use super::error::ApiResult;
use super::extract::AccountScope;
use super::reply::Reply;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v2/accounts/{account_id}/simulations", put(simulate))
}

#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn simulate(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let data = request_object(&scope.ctx)?;
    let request = crate::simulation::parse(&data, chrono::Utc::now())?;
    let data = crate::simulation::run(&state.pipeline, &scope.account, request).await?;
    Ok(Reply::ok(data))
}
