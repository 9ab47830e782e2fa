//! `Authorization: Basic base64(ACCOUNT_ID:CREDENTIALS)`, as Kazoo's `cb_basic_auth` (on by
//! default): `CREDENTIALS` is the md5 of `"<user>:<password>"` (what `user_auth` takes) or, as
//! Kazoo also accepts, `"<user>:<password>"` itself. A request so authenticated acts as that
//! user of that account.
//!
//! Checking costs an argon2 verification, so, as Kazoo caches a verified Basic token, a
//! verified header is remembered for a few minutes (bounded; only a hash of the header is
//! kept). Misses are charged to the login throttle like `user_auth` attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::{md5_credentials, verify_secret, Claims};

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use super::request::ReqCtx;
use super::AppState;

/// How long a verified Basic header is trusted without checking it again.
const REMEMBER_FOR: Duration = Duration::from_secs(300);
/// Most verified headers remembered.
const REMEMBER_MAX: usize = 10_000;

type Verified = HashMap<[u8; 32], (Instant, String, String)>;

fn verified() -> &'static Mutex<Verified> {
    static CACHE: std::sync::OnceLock<Mutex<Verified>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The caller Basic credentials name, or `None` when they do not check out.
pub async fn caller(state: &AppState, ctx: &ReqCtx, basic: &str) -> ApiResult<Option<Caller>> {
    let key: [u8; 32] = Sha256::digest(basic.as_bytes()).into();
    let remembered = {
        let mut cache = verified().lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _, _)| at.elapsed() < REMEMBER_FOR);
        cache.get(&key).map(|(_, a, u)| (a.clone(), u.clone()))
    };
    let (account_id, user_id) = match remembered {
        Some(found) => found,
        None => match check(state, ctx, basic).await? {
            Some(found) => {
                let mut cache = verified().lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() < REMEMBER_MAX {
                    cache.insert(key, (Instant::now(), found.0.clone(), found.1.clone()));
                }
                found
            }
            None => return Ok(None),
        },
    };
    let Some(account) = state.store.get_account(&account_id).await? else {
        return Ok(None);
    };
    ctx.mark_authenticated();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Some(Caller {
        claims: Claims {
            account_id,
            owner_id: Some(user_id),
            method: "cb_basic_auth".into(),
            exp: now + REMEMBER_FOR.as_secs(),
            iat: now,
        }
        .into(),
        account: account.into(),
    }))
}

/// Verifies the credentials against the account's enabled users: `(account id, user id)`.
async fn check(state: &AppState, ctx: &ReqCtx, basic: &str) -> ApiResult<Option<(String, String)>> {
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
        return Ok(None);
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Ok(None);
    };
    let Some((account_id, credentials)) = decoded.split_once(':') else {
        return Ok(None);
    };
    if !crate::domain::is_account_id(account_id) {
        return Ok(None);
    }
    // Kazoo also takes `user:password` in clear and hashes it the way `user_auth` expects.
    let credentials = match credentials.split_once(':') {
        Some((user, password)) => md5_credentials(user, password),
        None => credentials.to_string(),
    };
    if let Some(ip) = ctx.client_ip {
        state
            .throttle
            .attempt(ip, &[account_id])
            .map_err(ApiError::too_many_requests)?;
    }
    let users = state.store.login_users(account_id).await?;
    let found = crate::auth::hasher::pool()
        .run(move || {
            users
                .into_iter()
                .find(|u| verify_secret(&credentials, &u.md5_hash))
                .map(|u| u.id)
        })
        .await
        .map_err(|_| ApiError::too_many_requests(1))?;
    if let (Some(ip), Some(_)) = (ctx.client_ip, &found) {
        state.throttle.succeeded(ip);
    }
    Ok(found.map(|user_id| (account_id.to_string(), user_id)))
}
