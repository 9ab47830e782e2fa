//! `PUT /v2/user_auth`, `PUT /v2/api_auth`, `GET /v2/token_auth`.

use axum::extract::State;
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::auth::{dummy_hash, verify_secret, API_KEY_PREFIX_LEN};
use crate::domain::numbers::search_key;
use crate::schema::{SchemaError, SchemaErrors};
use crate::store::Account;

use super::envelope::Reply;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Ctx};
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/user_auth", put(user_auth))
        .route("/v2/api_auth", put(api_auth))
        .route("/v2/token_auth", get(token_info))
}

fn string_field(
    data: &Map<String, Value>,
    key: &str,
    min: usize,
    max: usize,
    errors: &mut SchemaErrors,
) -> Option<String> {
    match data.get(key) {
        None => None,
        Some(Value::String(s)) => {
            let len = s.chars().count();
            if len < min {
                errors.push(
                    SchemaError::at(
                        key,
                        "minLength",
                        format!("String must be at least {min} characters"),
                    )
                    .with("target", json!(min))
                    .with("value", json!(s)),
                );
            } else if len > max {
                errors.push(
                    SchemaError::at(
                        key,
                        "maxLength",
                        format!("String must not be more than {max} characters"),
                    )
                    .with("target", json!(max))
                    .with("value", json!(s)),
                );
            }
            Some(s.clone())
        }
        Some(other) => {
            errors.push(
                SchemaError::at(key, "type", "Value did not match type(s): string")
                    .with("target", json!("string"))
                    .with("value", other.clone()),
            );
            None
        }
    }
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
    let data = ctx.data.as_object().cloned().unwrap_or_default();
    let mut errors = SchemaErrors::default();
    let credentials = string_field(&data, "credentials", 1, 64, &mut errors);
    let realm = string_field(&data, "account_realm", 4, 253, &mut errors)
        .or_else(|| string_field(&data, "realm", 4, 253, &mut errors));
    let name = string_field(&data, "account_name", 1, 128, &mut errors);
    if credentials.is_none() {
        errors.push(
            SchemaError::at("credentials", "required", "Field is required but missing")
                .with("value", json!("credentials")),
        );
    }
    let method = data.get("method").and_then(Value::as_str).unwrap_or("md5");
    if !matches!(method, "md5" | "sha") {
        errors.push(
            SchemaError::at(
                "method",
                "enum",
                "Value not found in enumerated list of values",
            )
            .with("target", json!(["md5", "sha"]))
            .with("value", json!(method)),
        );
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let credentials = credentials.unwrap_or_default();

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
    let found = tokio::task::spawn_blocking(move || {
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
    .map_err(ApiError::internal)?;
    let Some((account, user)) = found else {
        tracing::debug!("user_auth rejected: no matching enabled user");
        return Err(ApiError::invalid_credentials());
    };
    let (token, _) = state
        .signer
        .issue(&account.id, Some(&user.id), "cb_user_auth")
        .map_err(ApiError::internal)?;
    ctx.mark_authenticated();
    Ok(Reply::created(login_data(&account, Some(&user.id))).with_field("auth_token", json!(token)))
}

#[tracing::instrument(skip_all)]
async fn api_auth(State(state): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Reply> {
    let data = ctx.data.as_object().cloned().unwrap_or_default();
    let mut errors = SchemaErrors::default();
    let key = string_field(&data, "api_key", 64, 64, &mut errors);
    if key.is_none() && errors.is_empty() {
        errors.push(
            SchemaError::at("api_key", "required", "Field is required but missing")
                .with("value", json!("api_key")),
        );
    }
    for extra in data.keys().filter(|k| k.as_str() != "api_key") {
        errors.push(
            SchemaError::at(
                extra,
                "additionalProperties",
                "Strict checking of data is enabled; only include schema-defined properties",
            )
            .with("value", data[extra.as_str()].clone()),
        );
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let key = key.unwrap_or_default();
    let prefix: String = key.chars().take(API_KEY_PREFIX_LEN).collect();
    let candidates = state.store.api_key_candidates(&prefix).await?;
    let probe = key.clone();
    let found = tokio::task::spawn_blocking(move || {
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
    .map_err(ApiError::internal)?;
    let Some(account) = found else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "bad identifier",
            Some(json!([key])),
        ));
    };
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
