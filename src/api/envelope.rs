//! Kazoo's request and response envelopes, as one layer around the router (the parsed request
//! is in `request.rs`, the handlers' replies in `reply.rs`).
//!
//! Inbound: request id, path normalisation (trailing slash, API version), CORS preflight,
//! body size and nesting limits, JSON parsing with Kazoo's error shapes, top-level key
//! normalisation, the `data` check, the per-account request rate, verb tunnelling, and the
//! whole-request deadline (docs/limits.md). The parsed request is handed to
//! handlers as a [`ReqCtx`] extension.
//!
//! Outbound: handlers return an [`Envelope`] extension (their part of the body); this layer
//! adds the request-wide keys, pretty-prints or wraps JSONP on request, and sets `X-Request-ID`,
//! `ETag` (with `If-None-Match` -> 304), and CORS headers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::schema::SchemaError;

use super::error::ApiError;
pub use super::reply::{Envelope, Reply};
use super::request::parse_request;
pub use super::request::ReqCtx;
use super::AppState;

/// Kazoo's list, then the headers history adds (docs/history.md): a write's commit message and
/// where an event stream resumes.
const CORS_ALLOW_HEADERS: &str = "content-type, depth, user-agent, x-http-method-override, x-file-size, x-requested-with, if-modified-since, x-file-name, cache-control, x-auth-token, x-kazoo-cluster-id, if-match, x-commit-message, last-event-id";
const CORS_EXPOSE_HEADERS: &str =
    "content-type, x-auth-token, x-request-id, x-kazoo-cluster-id, location, etag";

/// The envelope layer (see the module docs) around `inner`, the routes ([`super::ApiService`]
/// calls it for every request).
///
/// Every request runs inside one `request` span carrying its id, method and path; the matched
/// route is recorded into it once routing has happened ([`record_route`]), so every log line of
/// the request can be found by its id.
pub async fn around<F, Fut>(state: AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(crate::domain::new_id);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        route = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let response =
        tracing::Instrument::instrument(handle(state, req, inner, request_id), span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

/// Records the route template that matched (`/v2/accounts/{account_id}/callflows`, never the
/// ids) into the request span.
pub async fn record_route(req: Request, next: Next) -> Response {
    if let Some(route) = req.extensions().get::<axum::extract::MatchedPath>() {
        tracing::Span::current().record("route", route.as_str());
    }
    next.run(req).await
}

async fn handle<F, Fut>(state: AppState, req: Request, next: F, request_id: String) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    // Reads cached in memory catch up with what other processes wrote to the store.
    if state.store.sync_external() {
        state.routes.invalidate_all();
    }
    let cors = [
        "origin",
        "access-control-request-method",
        "access-control-request-headers",
    ]
    .iter()
    .any(|h| req.headers().contains_key(*h));
    let requested_method = req
        .headers()
        .get("access-control-request-method")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let allowed = allowed_methods(req.uri().path());
    // cowboy answers a write without `Content-Type` (taken as JSON) with this header.
    let rfc2616 = matches!(*req.method(), Method::PUT | Method::POST | Method::PATCH)
        && !req.headers().contains_key(header::CONTENT_TYPE);
    let pretty_header = req
        .headers()
        .get("x-pretty-print")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("true"))
        .unwrap_or(false);

    // What the request cost in the account's token bucket, shown as Kazoo's `tokens` key.
    let tokens = std::sync::OnceLock::<crate::auth::throttle::Tokens>::new();
    let finish = |status: StatusCode,
                  envelope: Envelope,
                  ctx: Option<&ReqCtx>,
                  extra: HeaderMap,
                  method: &Method| {
        finalize(FinalizeInput {
            state: &state,
            request_id: &request_id,
            status,
            envelope,
            ctx,
            extra_headers: extra,
            cors: cors || status.is_client_error() || status.is_server_error(),
            allowed,
            rfc2616,
            requested_method: requested_method.as_deref(),
            if_none_match: if_none_match.as_ref(),
            pretty_header,
            method,
            tokens: tokens.get().copied(),
        })
    };

    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    // An early refusal: the error's envelope, no extra header.
    let refuse = |e: ApiError, ctx: Option<&ReqCtx>| {
        finish(e.status(), envelope_of(e), ctx, HeaderMap::new(), &method)
    };

    // Prometheus scrapes plain text, not an envelope (unless it is served elsewhere).
    if state.config.metrics_on_api && parts.uri.path() == "/metrics" && method == Method::GET {
        return next(Request::from_parts(parts, body)).await;
    }

    // CORS preflight short-circuits everything else.
    if method == Method::OPTIONS && cors {
        return preflight(&request_id, allowed, requested_method.as_deref());
    }

    match normalise_path(&parts.uri) {
        Ok(Some(uri)) => parts.uri = uri,
        Ok(None) => {}
        Err(e) => return refuse(e, None),
    }

    if parts.uri.path().starts_with("/v2/") {
        // No crossbar endpoint lists HEAD among its methods (`allowed_methods`): 405.
        if method == Method::HEAD {
            let e = ApiError::method_not_allowed();
            return refuse(e, None);
        }
        // cowboy's content negotiation: JSON (or JSONP) is all callflowd provides, except the
        // change feed's event stream and a diff's text form.
        if !accepts_json(&parts.headers) && !accepts_raw(parts.uri.path(), &parts.headers) {
            let e = ApiError::not_acceptable();
            return refuse(e, None);
        }
    }

    let too_large = || {
        let error = SchemaError::at(
            "file",
            "maxSize",
            format!(
                "Payload or Files must not be more than {} bytes",
                state.config.max_body_bytes
            ),
        )
        .with("target", json!(state.config.max_body_bytes));
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "validation error",
            Some(crate::schema::SchemaErrors::single(error).to_json()),
        )
    };
    // An oversized body is answered 413, but only after it has been read and thrown away
    // (up to the drain cap): a client that sends its whole body before reading then receives
    // the answer instead of a reset connection. A declared length past the cap is answered at
    // once (the connection then closes without reading it).
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = state.config.max_body_bytes;
    let drain_cap = state.config.max_body_drain_bytes.max(limit);
    // An import's dump is not read here: its handler streams it to a file, with its own cap.
    let upload = method == Method::PUT && super::transfer::is_import_upload(parts.uri.path());
    if !upload && declared.is_some_and(|n| n > drain_cap as u64) {
        metrics::counter!("callflowd_bodies_refused_total", "reason" => "too_large").increment(1);
        let e = too_large();
        return refuse(e, None);
    }
    let mut upload_body = None;
    let read = async {
        if upload {
            upload_body = Some(body);
            Ok(Bytes::new())
        } else {
            read_body(body, limit, drain_cap).await
        }
    };
    let bytes = match tokio::time::timeout(state.config.body_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => {
            metrics::counter!("callflowd_bodies_refused_total", "reason" => "too_large")
                .increment(1);
            let e = too_large();
            return refuse(e, None);
        }
        Ok(Err(BodyError::Broken)) => {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(json!({"message": "the request body could not be read"})),
            );
            return refuse(e, None);
        }
        Err(_) => {
            let e = ApiError::request_timeout();
            return refuse(e, None);
        }
    };

    let mut ctx = match parse_request(&state, &parts, &bytes, &request_id) {
        Ok(ctx) => ctx,
        Err(e) => return refuse(e, None),
    };
    if ctx.basic_auth.is_none() {
        ctx.token_check = ctx.auth_token.as_deref().map(|t| state.signer.check(t));
    }
    let ctx = Arc::new(ctx);

    // The request rate: one bucket per authenticated account (Kazoo's `token_costs` charged
    // at authentication), per client address otherwise. Health probes and preflights are free.
    if let Some(limiter) = state
        .limiter
        .as_ref()
        .filter(|_| parts.uri.path() != "/healthz")
    {
        let account = match &ctx.token_check {
            Some(Ok(claims)) => Some(claims.account_id.clone()),
            _ => None,
        };
        match limiter.charge(account.as_deref(), ctx.client_ip) {
            Ok(t) => {
                let _ = tokens.set(t);
            }
            Err(refused) => {
                let _ = tokens.set(refused.tokens);
                metrics::counter!("callflowd_requests_rate_limited_total").increment(1);
                tracing::info!(account = ?account, client = ?ctx.client_ip, "request rate limit reached");
                let e = ApiError::too_many_requests(refused.retry_after);
                let mut extra = HeaderMap::new();
                extra.insert(header::RETRY_AFTER, refused.retry_after.max(1).into());
                return finish(e.status(), envelope_of(e), Some(&ctx), extra, &method);
            }
        }
    }

    // Kazoo stops early, before path and method checks, only for an expired token (and one
    // whose account is gone): 401 with an empty `data` (`cb_token_auth:validate_auth_token`).
    // Garbage and forged tokens go on as if no token had been sent.
    if matches!(ctx.token_check, Some(Err(crate::auth::TokenError::Expired))) {
        let e = ApiError::invalid_token();
        return refuse(e, Some(&ctx));
    }

    // Verb tunnelling: `verb` in data, query string or envelope replaces the method, but only
    // on a real POST. Kazoo writes only for real PUT/POST/PATCH/DELETE; a GET or HEAD (a link,
    // a prefetcher, a replayed access log) must never change anything, whatever it carries.
    let effective = match ctx.tunnelled_method(&method) {
        Ok(m) => m,
        Err(e) => return refuse(e, Some(&ctx)),
    };
    parts.method = effective.clone();
    parts.extensions.insert(ctx.clone());
    if let Some(body) = upload_body {
        parts.extensions.insert(super::transfer::Upload::new(body));
    }
    // A whole-request deadline: past it the client is answered 503 and the handler dropped.
    // Writes run in tasks of their own (the save pipeline's commit), so one already under way
    // still completes; only the answer is lost.
    // The hottest reads skip the router (direct.rs); everything else goes through it.
    let uri = parts.uri.clone();
    let hot = if state.config.direct_reads && effective == Method::GET {
        super::direct::route(uri.path())
    } else {
        None
    };
    let run = async {
        match hot {
            Some(hot) => super::direct::serve(&state, ctx.clone(), hot).await,
            None => next(Request::from_parts(parts, Body::empty())).await,
        }
    };
    // An upload takes as long as the client takes to send it (the server's idle-socket
    // limits still apply).
    let deadline = if upload {
        Duration::from_secs(24 * 3600)
    } else {
        state.config.request_timeout
    };
    let response = match tokio::time::timeout(deadline, run).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("callflowd_requests_timed_out_total").increment(1);
            tracing::warn!(timeout = ?state.config.request_timeout, "request timed out");
            let e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                Some(json!({"message": "the request took too long and was abandoned"})),
            );
            let mut extra = HeaderMap::new();
            extra.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return finish(e.status(), envelope_of(e), Some(&ctx), extra, &effective);
        }
    };

    if response.extensions().get::<super::reply::Raw>().is_some() {
        let mut response = response;
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-request-id", v);
        }
        if cors {
            add_cors(headers, allowed, requested_method.as_deref());
        }
        return response;
    }

    let (mut resp_parts, _) = response.into_parts();
    let envelope = match resp_parts.extensions.remove::<Envelope>() {
        Some(env) => env,
        None => envelope_for_bare(resp_parts.status),
    };
    finish(
        resp_parts.status,
        envelope,
        Some(&ctx),
        resp_parts.headers,
        &effective,
    )
}

enum BodyError {
    /// Over the limit (what fit within the drain cap was read and discarded).
    TooLarge,
    /// The body stream failed (a malformed chunk, a connection gone).
    Broken,
}

/// Reads a body of at most `limit` bytes. A longer one is read on and discarded up to
/// `drain_cap` bytes in all, then refused.
async fn read_body(
    body: Body,
    limit: usize,
    drain_cap: usize,
) -> Result<axum::body::Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut kept = bytes::BytesMut::new();
    let mut seen: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            if seen >= drain_cap {
                return Err(BodyError::TooLarge);
            }
            kept.clear();
            continue;
        }
        kept.extend_from_slice(&data);
    }
    if seen > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(kept.freeze())
    }
}

fn envelope_of(e: ApiError) -> Envelope {
    Envelope {
        body: e.into_answer().envelope().into(),
        ..Envelope::default()
    }
}

/// Responses produced by the router itself (no handler ran): 405 and friends.
fn envelope_for_bare(status: StatusCode) -> Envelope {
    let e = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::method_not_allowed(),
        StatusCode::NOT_FOUND => ApiError::not_found(),
        other => ApiError::new(
            other,
            &other
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace(' ', "_"),
            Some(
                json!({"message": other.canonical_reason().unwrap_or("error").to_ascii_lowercase()}),
            ),
        ),
    };
    envelope_of(e)
}

/// Strips a trailing slash; maps `/v<N>/...` (N > 1) to `/v2/...`; rejects `/v1/...` with 410.
fn normalise_path(uri: &Uri) -> Result<Option<Uri>, ApiError> {
    let path = uri.path();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or_default();
    let rest = segments.next();
    let mut new_path = None;
    if let Some(n) = first.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
        if n == 1 {
            return Err(ApiError::gone_v1());
        }
        if first != "v2" {
            new_path = Some(format!("/v2/{}", rest.unwrap_or_default()));
        }
    }
    let candidate = new_path.clone().unwrap_or_else(|| path.to_string());
    let trimmed = if candidate.len() > 1 && candidate.ends_with('/') {
        Some(candidate.trim_end_matches('/').to_string())
    } else {
        new_path
    };
    let Some(p) = trimmed else { return Ok(None) };
    let p = if p.is_empty() { "/".to_string() } else { p };
    let pq = match uri.query() {
        Some(q) => format!("{p}?{q}"),
        None => p,
    };
    Ok(pq.parse::<Uri>().ok())
}

/// The methods a path answers (its `Access-Control-Allow-Methods`, as Kazoo lists each
/// endpoint's `allowed_methods`).
fn allowed_methods(path: &str) -> &'static str {
    let path = path.trim_end_matches('/');
    // No route below has more than ten segments (the version included): a longer path gets
    // the fallback, as it would from the match.
    let mut kept = [""; 10];
    let mut n = 0;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if n == kept.len() {
            return "OPTIONS, GET, PUT, POST, PATCH, DELETE";
        }
        kept[n] = segment;
        n += 1;
    }
    let segments = &kept[..n];
    let rest = match segments.split_first() {
        Some((v, rest)) if v.starts_with('v') && v[1..].parse::<u32>().is_ok() => rest,
        _ => segments,
    };
    match rest {
        ["accounts", _] => "OPTIONS, GET, PUT",
        ["accounts", _, "callflows"] => "OPTIONS, GET, PUT",
        ["accounts", _, "callflows", "drafts"] => "OPTIONS, GET, PUT",
        ["accounts", _, "callflows", _, "draft"] => "OPTIONS, GET, POST, PATCH, DELETE",
        ["accounts", _, "callflows", _, "draft", "publish"] => "OPTIONS, PUT",
        ["accounts", _, "audit" | "changes"] => "OPTIONS, GET",
        ["accounts", _, _, _, "revisions"]
        | ["accounts", _, _, _, "revisions", _]
        | ["accounts", _, _, _, "revisions", _, "diff"]
        | ["accounts", _, "lists", _, "entries", _, "revisions"]
        | ["accounts", _, "lists", _, "entries", _, "revisions", _]
        | ["accounts", _, "lists", _, "entries", _, "revisions", _, "diff"] => "OPTIONS, GET",
        ["accounts", _, _, _, "rollback"]
        | ["accounts", _, "lists", _, "entries", _, "rollback"] => "OPTIONS, PUT",
        ["accounts", _, "callflows", _] => "OPTIONS, GET, POST, PATCH, DELETE",
        ["accounts", _, "search" | "lookup"] => "OPTIONS, GET",
        ["accounts", _, kind] if crate::documents::by_segment(kind).is_some() => {
            "OPTIONS, GET, PUT"
        }
        ["accounts", _, "lists", _, "entries"] => "OPTIONS, GET, PUT, DELETE",
        ["accounts", _, "lists", _, "entries", _] => "OPTIONS, GET, POST, PATCH, DELETE",
        ["accounts", _, kind, _] if crate::documents::by_segment(kind).is_some() => {
            "OPTIONS, GET, POST, PATCH, DELETE"
        }
        ["user_auth"] | ["api_auth"] => "OPTIONS, PUT",
        ["user_auth", _] | ["token_auth"] => "OPTIONS, GET",
        ["schemas"] | ["schemas", _] => "OPTIONS, GET",
        ["schemas", _, "validation"] => "OPTIONS, PUT",
        _ => "OPTIONS, GET, PUT, POST, PATCH, DELETE",
    }
}

/// Whether the `Accept` header (if any) lets us answer JSON or JSONP.
fn accepts_json(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return true;
    }
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|range| {
            range
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .any(|range| {
            matches!(
                range.as_str(),
                "" | "*/*"
                    | "application/*"
                    | "application/json"
                    | "application/x-json"
                    | "application/javascript"
            )
        })
}

/// Whether the path offers a non-JSON form the `Accept` header asks for: the change feed's
/// `text/event-stream`, a diff's `text/plain`.
fn accepts_raw(path: &str, headers: &HeaderMap) -> bool {
    let wanted = |kind: &str| {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(kind))
    };
    let path = path.trim_end_matches('/');
    (path.ends_with("/changes") && wanted("text/event-stream"))
        || (path.contains("/imports/") && wanted("text/event-stream"))
        || (path.ends_with("/export") && wanted("application/x-ndjson"))
        || (path.ends_with("/diff") && wanted("text/plain"))
}

fn preflight(request_id: &str, allowed: &str, requested: Option<&str>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    add_cors(h, allowed, requested);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    response
}

fn add_cors(h: &mut HeaderMap, allowed: &str, requested: Option<&str>) {
    // Kazoo's quirk: the requested method is appended even when the path does not allow it.
    let mut methods = allowed.to_string();
    if let Some(m) = requested.filter(|m| !methods.contains(&m.to_ascii_uppercase())) {
        methods.push_str(", ");
        methods.push_str(m);
    }
    let pairs = [
        ("access-control-allow-origin", "*".to_string()),
        ("access-control-allow-methods", methods),
        (
            "access-control-allow-headers",
            CORS_ALLOW_HEADERS.to_string(),
        ),
        (
            "access-control-expose-headers",
            CORS_EXPOSE_HEADERS.to_string(),
        ),
        ("access-control-max-age", "86400".to_string()),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(HeaderName::from_static(k), v);
        }
    }
}

struct FinalizeInput<'a> {
    state: &'a AppState,
    request_id: &'a str,
    status: StatusCode,
    envelope: Envelope,
    ctx: Option<&'a ReqCtx>,
    extra_headers: HeaderMap,
    cors: bool,
    allowed: &'static str,
    rfc2616: bool,
    requested_method: Option<&'a str>,
    if_none_match: Option<&'a HeaderValue>,
    pretty_header: bool,
    method: &'a Method,
    tokens: Option<crate::auth::throttle::Tokens>,
}

fn finalize(input: FinalizeInput<'_>) -> Response {
    let FinalizeInput {
        state,
        request_id,
        status,
        envelope,
        ctx,
        extra_headers,
        cors,
        allowed,
        rfc2616,
        requested_method,
        if_none_match,
        pretty_header,
        method,
        tokens,
    } = input;
    let body = envelope.body;
    let data_text = envelope.data_text;
    // The request-wide keys, in the order they join the body; a key the handler already set
    // keeps its place (and, for `auth_token`, its value), as a map insert would.
    let authenticated = ctx
        .map(|c| c.authenticated.load(Ordering::Relaxed))
        .unwrap_or(false);
    let stamp = timestamp();
    let tokens = tokens.map(|t| json!({"consumed": t.consumed, "remaining": t.remaining}));
    let mut added: Vec<(&'static str, Added<'_>, bool)> = Vec::with_capacity(6);
    if let Some(t) = &tokens {
        added.push(("tokens", Added::Value(t), false));
    }
    added.push(("request_id", Added::Text(request_id), false));
    if let Some(token) = ctx.and_then(|c| c.auth_token.as_deref()) {
        added.push(("auth_token", Added::Text(token), true));
    }
    added.push(("timestamp", Added::Text(&stamp), false));
    if authenticated {
        added.push(("version", Added::Text(&state.config.version), false));
    }
    added.push(("node", Added::Text(&state.config.node), false));

    let etag = envelope.etag;
    let mut headers = extra_headers;
    // The handler's bodiless response carried its own length; the envelope replaces the body.
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    if cors {
        add_cors(&mut headers, allowed, requested_method);
    }
    if rfc2616 {
        headers.insert(
            "x-rfc2616",
            HeaderValue::from_static("Section 14.17 (Try it, you'll like it)"),
        );
    }
    if *method == Method::GET {
        // Kazoo's context default: responses are never cached by intermediaries.
        headers.insert(
            header::EXPIRES,
            HeaderValue::from_static("Fri, 01 Jan 1999 00:00:00 GMT"),
        );
    }
    if let (Some(tag), true) = (&etag, status.is_success()) {
        if let Ok(v) = HeaderValue::from_str(tag) {
            headers.insert(header::ETAG, v);
        }
        let wanted = if_none_match.and_then(|v| v.to_str().ok());
        // `*` matches any current representation (cowboy_rest).
        let matches =
            wanted.is_some_and(|w| w.trim() == "*" || w.split(',').any(|t| t.trim() == &**tag));
        if *method == Method::GET && matches {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            *response.headers_mut() = headers;
            return response;
        }
    }

    let pretty = pretty_header || ctx.and_then(|c| c.flag("pretty_print")).unwrap_or(false);
    let text = if pretty {
        let mut with_data = serde_json::Map::new();
        if let Some(data) = &data_text {
            with_data.insert(
                "data".into(),
                serde_json::from_str(data).unwrap_or(Value::Null),
            );
        }
        with_data.extend(std::sync::Arc::unwrap_or_clone(body));
        for (key, value, keep) in &added {
            let value = match value {
                Added::Text(t) => json!(t),
                Added::Value(v) => (*v).clone(),
            };
            if *keep {
                with_data.entry(*key).or_insert(value);
            } else {
                with_data.insert((*key).into(), value);
            }
        }
        serde_json::to_string_pretty(&Value::Object(with_data)).unwrap_or_default()
    } else {
        write_envelope(data_text.as_deref(), &body, &added)
    };
    let jsonp = ctx
        .and_then(|c| c.option("jsonp"))
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|f| {
            !f.is_empty()
                && f.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$')
        });
    let (text, content_type) = match jsonp {
        Some(f) => (format!("{f}({text});"), "application/javascript"),
        None => (text, "application/json"),
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let mut response = (status, text).into_response();
    response.headers_mut().extend(headers);
    response
}

/// The envelope's `timestamp` (UTC, to the second), formatted once per second per thread.
fn timestamp() -> Arc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, Arc<str>)> = std::cell::RefCell::new((i64::MIN, Arc::from("")));
    }
    let now = chrono::Utc::now();
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != now.timestamp() {
            *last = (
                now.timestamp(),
                Arc::from(now.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
        }
        last.1.clone()
    })
}

/// A request-wide key's value.
enum Added<'a> {
    Text(&'a str),
    Value(&'a Value),
}

/// The compact envelope in one pass: `data` first when it comes serialised (a listing, a
/// cached reply: written in as it is), then the handler's keys in their order, then the
/// request-wide keys `added` (each replacing a handler key of the same name in place, or kept
/// behind it when its flag says so). The same text `serde_json` gives for the map with those
/// inserts, without building it.
fn write_envelope(
    data: Option<&str>,
    body: &serde_json::Map<String, Value>,
    added: &[(&'static str, Added<'_>, bool)],
) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(data.map_or(0, str::len) + 512);
    out.push(b'{');
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, k: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
    };
    let value = |out: &mut Vec<u8>, v: &Added<'_>| {
        let _ = match v {
            Added::Text(t) => serde_json::to_writer(out, t),
            Added::Value(v) => serde_json::to_writer(out, v),
        };
    };
    if let Some(data) = data {
        key(&mut out, "data");
        out.extend_from_slice(data.as_bytes());
    }
    for (k, v) in body {
        key(&mut out, k);
        match added.iter().find(|(a, _, keep)| a == k && !keep) {
            Some((_, ours, _)) => value(&mut out, ours),
            None => {
                let _ = serde_json::to_writer(&mut out, v);
            }
        }
    }
    for (k, v, _) in added {
        if !body.contains_key(*k) {
            key(&mut out, k);
            value(&mut out, v);
        }
    }
    out.push(b'}');
    // Only JSON text and valid UTF-8 pieces were written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_text_is_what_the_map_gives() {
        let tokens = json!({"consumed": 1, "remaining": 99});
        let added = [
            ("tokens", Added::Value(&tokens), false),
            ("request_id", Added::Text("r\"1"), false),
            ("auth_token", Added::Text("tok"), true),
            ("timestamp", Added::Text("2026-01-01T00:00:00Z"), false),
            ("node", Added::Text("n"), false),
        ];
        let mut body = serde_json::Map::new();
        body.insert("revision".into(), json!("1-a"));
        body.insert("request_id".into(), json!("old"));
        body.insert("auth_token".into(), json!("theirs"));
        body.insert("status".into(), json!("success"));
        // The map with the same inserts, serialised.
        let mut expected = body.clone();
        for (k, v, keep) in &added {
            let v = match v {
                Added::Text(t) => json!(t),
                Added::Value(v) => (*v).clone(),
            };
            if *keep {
                expected.entry(*k).or_insert(v);
            } else {
                expected.insert((*k).into(), v);
            }
        }
        assert_eq!(
            write_envelope(None, &body, &added),
            serde_json::to_string(&expected).unwrap()
        );
        let spliced = write_envelope(Some("[1,2]"), &body, &added);
        let mut with_data = serde_json::Map::new();
        with_data.insert("data".into(), json!([1, 2]));
        with_data.extend(expected);
        assert_eq!(spliced, serde_json::to_string(&with_data).unwrap());
        assert_eq!(
            write_envelope(Some("{}"), &serde_json::Map::new(), &[]),
            r#"{"data":{}}"#
        );
        assert_eq!(write_envelope(None, &serde_json::Map::new(), &[]), "{}");
    }

    #[test]
    fn versions_and_trailing_slashes_normalise() {
        let u: Uri = "/v3/accounts/x/callflows/?a=1".parse().unwrap();
        assert_eq!(
            normalise_path(&u).unwrap().unwrap().to_string(),
            "/v2/accounts/x/callflows?a=1"
        );
        let u: Uri = "/v1/accounts".parse().unwrap();
        assert_eq!(normalise_path(&u).unwrap_err().status(), StatusCode::GONE);
        let u: Uri = "/v2/accounts".parse().unwrap();
        assert!(normalise_path(&u).unwrap().is_none());
    }
}
