//! Extractors: the parsed request context, and the account access check every
//! `/v2/accounts/{ACCOUNT_ID}/...` route runs.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use crate::auth::Claims;
use crate::store::Account;

use super::error::ApiError;
use super::request::ReqCtx;
use super::AppState;

/// The request context the envelope layer parsed.
pub struct Ctx(pub Arc<ReqCtx>);

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<ReqCtx>>()
            .cloned()
            .map(Ctx)
            .ok_or_else(|| {
                ApiError::internal("request context missing: envelope layer not installed")
            })
    }
}

/// A caller holding a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Arc<Claims>,
    pub account: Arc<Account>,
}

impl Caller {
    /// Kazoo's rule: a token may touch its own account, its descendants, and every account if
    /// it belongs to a superduper admin account.
    pub fn may_access(&self, target: &Account) -> bool {
        self.account.superduper
            || target.id == self.account.id
            || target.tree.contains(&self.account.id)
    }
}

/// Resolve and check the credentials of a request: a token (`X-Auth-Token`, `auth_token`,
/// `Authorization: Bearer`) or Basic credentials. `Ok(None)` when none were sent or they are
/// not valid: as in Kazoo, a garbage or forged token then takes the path of a missing one
/// (404 for an unknown account, else 401 `invalid_credentials`). Expired tokens were already
/// stopped by the envelope layer.
pub async fn caller(state: &AppState, ctx: &ReqCtx) -> Result<Option<Caller>, ApiError> {
    if let Some(basic) = ctx.basic_auth.as_deref() {
        return super::basic::caller(state, ctx, basic).await;
    }
    let Some(token) = ctx.auth_token.as_deref() else {
        return Ok(None);
    };
    // Checked once by the envelope layer; checked here only for a context built without it.
    let check = match &ctx.token_check {
        Some(check) => check.clone(),
        None => state.signer.check(token),
    };
    let claims = match check {
        Ok(claims) => claims,
        Err(crate::auth::TokenError::Expired) => return Err(ApiError::invalid_token()),
        Err(crate::auth::TokenError::Invalid) => {
            tracing::debug!("token refused: not one of ours");
            return Ok(None);
        }
    };
    // A token whose account is gone stops as an expired one does (Kazoo's `not_found`).
    let account = state
        .store
        .account_shared(&claims.account_id)
        .await?
        .ok_or_else(ApiError::invalid_token)?;
    // A user's token lives only as long as the user: Kazoo signs it with a secret kept on the
    // user's document, so a deleted user's tokens stop verifying.
    if let Some(owner) = claims.owner_id.as_deref() {
        if !state.store.user_exists(&account.id, owner).await? {
            tracing::debug!("token refused: its user is gone");
            return Err(ApiError::invalid_token());
        }
    }
    ctx.mark_authenticated();
    Ok(Some(Caller { claims, account }))
}

/// An authenticated caller (any account).
pub struct Authenticated(pub Caller, pub Arc<ReqCtx>);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ctx(ctx) = Ctx::from_request_parts(parts, state).await?;
        match caller(state, &ctx).await? {
            Some(c) => Ok(Self(c, ctx)),
            None => Err(ApiError::invalid_credentials()),
        }
    }
}

/// The target account of an `/accounts/{account_id}/...` route, checked in Kazoo's order:
/// token validity (401), account id shape (404), account existence (404), token presence
/// (401), authorisation (403).
pub struct AccountScope {
    pub account: Arc<Account>,
    pub caller: Caller,
    pub ctx: Arc<ReqCtx>,
}

impl FromRequestParts<AppState> for AccountScope {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ctx(ctx) = Ctx::from_request_parts(parts, state).await?;
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        let account_id = params
            .iter()
            .find(|(k, _)| k == "account_id")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        Self::resolve(state, ctx, account_id).await
    }
}

impl AccountScope {
    /// The checks of the extractor, for a request whose account id is already known (the
    /// envelope layer's direct dispatch of hot reads, `direct.rs`).
    pub async fn resolve(
        state: &AppState,
        ctx: Arc<ReqCtx>,
        account_id: &str,
    ) -> Result<Self, ApiError> {
        let caller = caller(state, &ctx).await?;
        if !crate::domain::is_account_id(account_id) {
            return Err(ApiError::invalid_account_id(account_id));
        }
        // The caller's own account was just read with its token: not read twice.
        let account = match &caller {
            Some(c) if c.account.id == account_id => c.account.clone(),
            _ => state
                .store
                .account_shared(account_id)
                .await?
                .ok_or_else(|| ApiError::bad_identifier(account_id))?,
        };
        let caller = caller.ok_or_else(ApiError::invalid_credentials)?;
        if !caller.may_access(&account) {
            return Err(ApiError::forbidden());
        }
        Ok(Self {
            account,
            caller,
            ctx,
        })
    }
}

impl AccountScope {
    /// Who is writing, as the save pipeline stamps it, with the commit message (envelope
    /// `commit_message`, else the `X-Commit-Message` header) and whether this is a dry run
    /// (`dry_run=true` in the query string or the envelope; never read from `data`, which is
    /// the document).
    pub fn writer(&self) -> Result<crate::documents::pipeline::Writer, ApiError> {
        Ok(crate::documents::pipeline::Writer {
            account: Account::clone(&self.account),
            request_id: self.ctx.request_id.clone(),
            auth_account_id: self.caller.account.id.clone(),
            auth_user_id: self.caller.claims.owner_id.clone(),
            skip_tests: self.ctx.flag("skip_tests") == Some(true),
            message: commit_message(&self.ctx)?,
            dry_run: self.dry_run(),
        })
    }

    /// `dry_run=true` in the query string or the envelope.
    pub fn dry_run(&self) -> bool {
        let is_true = |v: &serde_json::Value| match v {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        self.ctx.query_value("dry_run").is_some_and(|v| is_true(&v))
            || self.ctx.envelope.get("dry_run").is_some_and(is_true)
    }

    /// The raw `If-Match` header, if sent.
    pub fn if_match(&self) -> Option<&str> {
        self.ctx.header("if-match")
    }

    /// A hard delete was asked for (`should_soft_delete=false`).
    pub fn hard_delete(&self) -> bool {
        self.ctx.flag("should_soft_delete") == Some(false)
    }
}

/// The longest commit message kept.
pub const MAX_COMMIT_MESSAGE: usize = 1000;

/// A write's commit message: the envelope's `commit_message`, else `X-Commit-Message`; a
/// string of at most [`MAX_COMMIT_MESSAGE`] characters (blank counts as none).
fn commit_message(ctx: &ReqCtx) -> Result<Option<String>, ApiError> {
    use crate::schema::SchemaError;
    use serde_json::{json, Value};
    let text = match ctx.envelope.get("commit_message") {
        None | Some(Value::Null) => ctx.header("x-commit-message").map(str::to_string),
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ApiError::invalid_field(
                SchemaError::at(
                    "commit_message",
                    "type",
                    "Value did not match type(s): string",
                )
                .with("target", json!("string"))
                .with("value", other.clone()),
            ))
        }
    };
    let text = text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if let Some(t) = &text {
        if t.chars().count() > MAX_COMMIT_MESSAGE {
            return Err(ApiError::invalid_field(
                SchemaError::at(
                    "commit_message",
                    "maxLength",
                    format!("String must not be more than {MAX_COMMIT_MESSAGE} characters"),
                )
                .with("target", json!(MAX_COMMIT_MESSAGE)),
            ));
        }
    }
    Ok(text)
}
