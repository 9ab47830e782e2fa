//! Direct dispatch of the hottest reads: one callflow, a page of callflows and a lookup.
//!
//! These are the requests a switch and a provisioning tool send over and over, and once their
//! answer is in memory most of their cost was axum's routing around the handler (matching the
//! path among every route, the per-route service clones and boxed futures, the path
//! extractors). The envelope layer recognises them itself and calls the same handler functions
//! the router would, with the same account checks ([`AccountScope::resolve`]): the envelope,
//! the rate limit, CORS, `ETag` and the deadline are applied around them exactly as for any
//! other route. Anything unusual (percent-escapes in the path, another method, a deeper path)
//! goes through the router as before. `tests/api/direct.rs` checks that both ways give the
//! same answers.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use super::extract::AccountScope;
use super::request::ReqCtx;
use super::AppState;

/// A read the envelope layer serves without the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hot<'a> {
    /// `GET /v2/accounts/{account_id}/callflows/{callflow_id}`
    Callflow { account: &'a str, id: &'a str },
    /// `GET /v2/accounts/{account_id}/callflows`
    Callflows { account: &'a str },
    /// `GET /v2/accounts/{account_id}/lookup`
    Lookup { account: &'a str },
}

impl Hot<'_> {
    /// The route template, as the router would record it in the request's span.
    fn template(self) -> &'static str {
        match self {
            Hot::Callflow { .. } => "/v2/accounts/{account_id}/callflows/{callflow_id}",
            Hot::Callflows { .. } => "/v2/accounts/{account_id}/callflows",
            Hot::Lookup { .. } => "/v2/accounts/{account_id}/lookup",
        }
    }
}

/// The hot read a (normalised) path names, if it is one. Only paths the router would match to
/// the same handler with the same parameters: plain segments (the router percent-decodes
/// parameters; such paths take the router), none empty, and not a fixed route that shares
/// the shape (`callflows/drafts`).
pub fn route(path: &str) -> Option<Hot<'_>> {
    let rest = path.strip_prefix("/v2/accounts/")?;
    let mut segments = rest.split('/');
    let account = segments.next()?;
    let collection = segments.next()?;
    let id = segments.next();
    if segments.next().is_some() || !plain(account) {
        return None;
    }
    match (collection, id) {
        ("callflows", None) => Some(Hot::Callflows { account }),
        ("callflows", Some(id)) if plain(id) && id != "drafts" => {
            Some(Hot::Callflow { account, id })
        }
        ("lookup", None) => Some(Hot::Lookup { account }),
        _ => None,
    }
}

fn plain(segment: &str) -> bool {
    !segment.is_empty() && !segment.contains('%')
}

/// Answers a hot read as the router's handler would.
pub async fn serve(state: &AppState, ctx: Arc<ReqCtx>, hot: Hot<'_>) -> Response {
    tracing::Span::current().record("route", hot.template());
    let (Hot::Callflow { account, .. } | Hot::Callflows { account } | Hot::Lookup { account }) =
        hot;
    let scope = match AccountScope::resolve(state, ctx, account).await {
        Ok(scope) => scope,
        Err(e) => return e.into_response(),
    };
    match hot {
        Hot::Callflow { id, .. } => super::callflows::fetch_in(state, scope, id).await,
        Hot::Callflows { .. } => super::callflows::list_in(state, scope).await,
        Hot::Lookup { .. } => super::lookup::lookup_in(state, scope).await,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn recognises_only_the_plain_hot_paths() {
        let one = format!("/v2/accounts/{A}/callflows/abc");
        assert_eq!(
            route(&one),
            Some(Hot::Callflow {
                account: A,
                id: "abc"
            })
        );
        let list = format!("/v2/accounts/{A}/callflows");
        assert_eq!(route(&list), Some(Hot::Callflows { account: A }));
        let lookup = format!("/v2/accounts/{A}/lookup");
        assert_eq!(route(&lookup), Some(Hot::Lookup { account: A }));
        for other in [
            format!("/v2/accounts/{A}/callflows/drafts"),
            format!("/v2/accounts/{A}/callflows/abc/draft"),
            format!("/v2/accounts/{A}/callflows/a%62c"),
            format!("/v2/accounts/{A}/callflows/"),
            format!("/v2/accounts/{A}//abc"),
            format!("/v2/accounts/{A}/devices/abc"),
            format!("/v2/accounts/{A}/lookup/x"),
            "/v2/accounts//callflows".to_string(),
            "/v2/accounts/%30/callflows".to_string(),
            format!("/v2/accounts/{A}"),
            "/v2/callflows".to_string(),
        ] {
            assert_eq!(route(&other), None, "{other}");
        }
    }
}
