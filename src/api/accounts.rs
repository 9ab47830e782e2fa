//! `GET /v2/accounts/{ACCOUNT_ID}`, `PUT /v2/accounts/{PARENT_ID}` (sub-accounts), and the
//! `children` and `descendants` listings, enough for Kazoo's account hierarchy rule to hold
//! for real.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::accounts::{new_account, NewAccount};
use crate::schema::SchemaError;
use crate::store::Account;

use super::error::{ApiError, ApiResult};
use super::extract::AccountScope;
use super::reply::Reply;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/accounts/{account_id}", get(fetch).put(create_child))
        .route("/v2/accounts/{account_id}/children", get(children))
        .route("/v2/accounts/{account_id}/descendants", get(descendants))
}

/// A row of Kazoo's `children` and `descendants` listings.
fn account_row(account: &Account) -> Value {
    json!({"id": account.id, "name": account.name, "realm": account.realm})
}

/// `GET /v2/accounts/{A}/children`: the accounts whose parent is `A`, by name.
async fn children(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    sub_accounts(&state, &scope.account.id, true).await
}

/// `GET /v2/accounts/{A}/descendants`: every account below `A`, by name.
async fn descendants(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    sub_accounts(&state, &scope.account.id, false).await
}

async fn sub_accounts(state: &AppState, id: &str, direct: bool) -> ApiResult<Reply> {
    let rows = state.store.accounts_below(id, direct).await?;
    Ok(Reply::ok(Value::Array(
        rows.iter().map(account_row).collect(),
    )))
}

/// Public view of an account with Kazoo's derived keys.
pub fn account_view(account: &Account) -> Value {
    let mut data: Map<String, Value> = account.doc.clone();
    data.insert("id".into(), json!(account.id));
    data.insert("name".into(), json!(account.name));
    if let Some(realm) = &account.realm {
        data.insert("realm".into(), json!(realm));
    }
    data.insert("superduper_admin".into(), json!(account.superduper));
    data.insert("created".into(), json!(account.created));
    data.insert("enabled".into(), json!(true));
    data.insert("is_reseller".into(), json!(false));
    data.insert(
        "reseller_id".into(),
        json!(account.tree.first().unwrap_or(&account.id)),
    );
    data.insert("wnm_allow_additions".into(), json!(account.superduper));
    data.insert("billing_mode".into(), json!("manual"));
    Value::Object(data)
}

async fn fetch(scope: AccountScope) -> ApiResult<Reply> {
    Ok(Reply::ok(account_view(&scope.account)))
}

/// Creates a sub-account under `{account_id}`. Its API key is returned once, in `api_key`:
/// only a hash is stored.
#[tracing::instrument(skip_all, fields(parent = %scope.account.id))]
async fn create_child(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let data = super::validated_data(&state, "accounts", &scope.ctx.data).await?;
    let field = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
    let (name, realm) = (field("name"), field("realm"));
    let mut tree = scope.account.tree.clone();
    tree.push(scope.account.id.clone());
    let doc: Map<String, Value> = data
        .into_iter()
        .filter(|(k, _)| !crate::domain::callflow::is_private_key(k) && k != "id")
        .collect();
    let created = new_account(
        state.store.as_ref(),
        NewAccount {
            name: name.unwrap_or_default(),
            realm,
            parent: Some(scope.account.id.clone()),
            tree,
            doc,
            admin: None,
        },
    )
    .await
    .map_err(|e| match e {
        // A concurrent creation won the realm at the unique index.
        crate::store::StoreError::Conflict => ApiError::invalid_field(
            SchemaError::at("realm", "unique", "Account realm already in use").with(
                "cause",
                json!(scope.ctx.data.get("realm").cloned().unwrap_or_default()),
            ),
        ),
        other => other.into(),
    })?;
    let mut view = account_view(&created.account);
    if let Value::Object(m) = &mut view {
        m.insert("api_key".into(), json!(created.api_key));
    }
    Ok(Reply::created(view))
}
