//! `PUT /v2/user_auth`, `PUT /v2/api_auth`, `GET /v2/token_auth`.

use axum::extract::State;
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::auth::{dummy_hash, verify_secret, API_KEY_PREFIX_LEN};
use crate::domain::numbers::search_key;
use crate::store::Account;

use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Ctx};
use super::reply::Reply;
use super::request::ReqCtx;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/user_auth", put(user_auth))
        .route("/v2/api_auth", put(api_auth))
        .route("/v2/token_auth", get(token_info))
        .route("/v2/user_auth/{token}", get(user_auth_token))
}

/// Charges a login attempt to the client's token bucket (429 when it is empty). Requests that
/// did not come through a socket (the router embedded in-process) have no address and are
/// not throttled.
fn throttle(state: &AppState, ctx: &ReqCtx, targets: &[&str]) -> ApiResult<()> {
    let Some(ip) = ctx.client_ip else {
        return Ok(());
    };
    state.throttle.attempt(ip, targets).map_err(|wait| {
        metrics::counter!("callflowd_logins_throttled_total").increment(1);
        tracing::info!(client = %ip, wait, "login throttled");
        ApiError::too_many_requests(wait)
    })
}

fn failed() {
    metrics::counter!("callflowd_logins_failed_total").increment(1);
}

fn succeeded(state: &AppState, ctx: &ReqCtx) {
    if let Some(ip) = ctx.client_ip {
        state.throttle.succeeded(ip);
    }
}

/// The account selectors a login names, normalised, read before validation so a flood is
/// throttled before it costs a schema check.
fn login_targets(data: &Value) -> Vec<String> {
    ["account_realm", "realm", "account_name", "phone_number"]
        .iter()
        .filter_map(|k| data.get(*k).and_then(Value::as_str))
        .map(search_key)
        .collect()
}

/// The account summary Kazoo returns on login.
fn login_data(account: &Account, owner_id: Option<&str>) -> Value {
    let mut data = Map::new();
    data.insert("account_id".into(), json!(account.id));
    if let Some(owner) = owner_id {
        data.insert("owner_id".into(), json!(owner));
    }
    data.insert("account_name".into(), json!(account.name));
    data.insert(
        "language".into(),
        account
            .doc
            .get("language")
            .cloned()
            .unwrap_or_else(|| json!("en-us")),
    );
    data.insert("is_reseller".into(), json!(false));
    data.insert("is_master_account".into(), json!(account.superduper));
    data.insert(
        "reseller_id".into(),
        json!(account.tree.first().unwrap_or(&account.id)),
    );
    data.insert("apps".into(), json!([]));
    Value::Object(data)
}

#[tracing::instrument(skip_all)]
async fn user_auth(State(state): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Reply> {
    let targets = login_targets(&ctx.data);
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    throttle(&state, &ctx, &targets)?;
    let data = super::validated_data(&state, "user_auth", &ctx.data).await?;
    let field = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
    let credentials = field("credentials").unwrap_or_default();
    let realm = field("account_realm").or_else(|| field("realm"));
    let name = field("account_name");
    let method = field("method").unwrap_or_else(|| "md5".into());

    let mut accounts = Vec::new();
    if let Some(realm) = &realm {
        accounts = state.store.accounts_by_realm(realm).await?;
    }
    if accounts.is_empty() {
        if let Some(name) = &name {
            accounts = state.store.accounts_by_name_key(&search_key(name)).await?;
        }
    }
    let mut candidates = Vec::new();
    for account in accounts {
        for user in state.store.login_users(&account.id).await? {
            candidates.push((account.clone(), user));
        }
    }
    let sha = method == "sha";
    let found = crate::auth::hasher::pool()
        .run(move || {
            if candidates.is_empty() {
                // Same cost as a real check, so a miss does not reveal that nobody matched.
                verify_secret(&credentials, dummy_hash());
                return None;
            }
            candidates.into_iter().find(|(_, user)| {
                verify_secret(
                    &credentials,
                    if sha { &user.sha1_hash } else { &user.md5_hash },
                )
            })
        })
        .await
        .map_err(|_| ApiError::too_many_requests(1))?;
    let Some((account, user)) = found else {
        tracing::debug!("user_auth rejected: no matching enabled user");
        failed();
        return Err(ApiError::invalid_credentials());
    };
    succeeded(&state, &ctx);
    let (token, _) = state
        .signer
        .issue(&account.id, Some(&user.id), "cb_user_auth")
        .map_err(ApiError::internal)?;
    ctx.mark_authenticated();
    Ok(Reply::created(login_data(&account, Some(&user.id))).with_field("auth_token", json!(token)))
}

#[tracing::instrument(skip_all)]
async fn api_auth(State(state): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Reply> {
    throttle(&state, &ctx, &["api_auth"])?;
    let data = super::validated_data(&state, "api_auth", &ctx.data).await?;
    let key = data
        .get("api_key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let prefix: String = key.chars().take(API_KEY_PREFIX_LEN).collect();
    let candidates = state.store.api_key_candidates(&prefix).await?;
    let probe = key.clone();
    let found = crate::auth::hasher::pool()
        .run(move || {
            if candidates.is_empty() {
                verify_secret(&probe, dummy_hash());
                return None;
            }
            candidates
                .into_iter()
                .find(|(_, hash)| verify_secret(&probe, hash))
                .map(|(a, _)| a)
        })
        .await
        .map_err(|_| ApiError::too_many_requests(1))?;
    let Some(account) = found else {
        failed();
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "bad identifier",
            Some(json!([key])),
        ));
    };
    succeeded(&state, &ctx);
    let (token, _) = state
        .signer
        .issue(&account.id, None, "cb_api_auth")
        .map_err(ApiError::internal)?;
    ctx.mark_authenticated();
    Ok(Reply::created(login_data(&account, None)).with_field("auth_token", json!(token)))
}

async fn token_info(Authenticated(caller, _): Authenticated) -> ApiResult<Reply> {
    let mut data = login_data(&caller.account, caller.claims.owner_id.as_deref());
    if let Value::Object(m) = &mut data {
        m.insert("method".into(), json!(caller.claims.method));
        m.insert("exp".into(), json!(caller.claims.exp));
    }
    Ok(Reply::ok(data))
}

/// `GET /v2/user_auth/{TOKEN}` (`cb_user_auth:maybe_get_auth_token`): the login data again,
/// for the token the request itself carries; any other token in the path is 401.
async fn user_auth_token(
    axum::extract::Path(token): axum::extract::Path<String>,
    Authenticated(caller, ctx): Authenticated,
) -> ApiResult<Reply> {
    if ctx.auth_token.as_deref() != Some(token.as_str()) {
        return Err(ApiError::invalid_credentials());
    }
    Ok(Reply::ok(login_data(
        &caller.account,
        caller.claims.owner_id.as_deref(),
    )))
}
