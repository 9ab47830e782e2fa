//! Kazoo's request and response envelopes, as one layer around the router.
//!
//! Inbound: request id, path normalisation (trailing slash, API version), CORS preflight,
//! body size and nesting limits, JSON parsing with Kazoo's error shapes, top-level key
//! normalisation, the `data` check, and verb tunnelling. The parsed request is handed to
//! handlers as a [`ReqCtx`] extension.
//!
//! Outbound: handlers return an [`Envelope`] extension (their part of the body); this layer
//! adds the request-wide keys, pretty-prints or wraps JSONP on request, and sets `X-Request-ID`,
//! `ETag` (with `If-None-Match` -> 304), and CORS headers.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::schema::SchemaError;

use super::error::ApiError;
use super::AppState;

const CORS_ALLOW_HEADERS: &str = "content-type, depth, user-agent, x-http-method-override, x-file-size, x-requested-with, if-modified-since, x-file-name, cache-control, x-auth-token, x-kazoo-cluster-id, if-match";
const CORS_EXPOSE_HEADERS: &str =
    "content-type, x-auth-token, x-request-id, x-kazoo-cluster-id, location, etag";

/// A handler's part of the response body (`data`, `status`, `revision`, paging keys...).
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub body: Map<String, Value>,
    /// Revision to expose as `ETag`.
    pub etag: Option<String>,
}

/// A successful reply: status, envelope fields, extra headers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub envelope: Envelope,
    pub headers: Vec<(HeaderName, String)>,
}

impl Reply {
    /// 200 with `data`.
    pub fn ok(data: Value) -> Self {
        let mut body = Map::new();
        body.insert("data".into(), data);
        body.insert("status".into(), json!("success"));
        Self {
            status: StatusCode::OK,
            envelope: Envelope { body, etag: None },
            headers: Vec::new(),
        }
    }

    pub fn created(data: Value) -> Self {
        Self::ok(data).with_status(StatusCode::CREATED)
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds `revision` to the body and uses it as the `ETag`.
    pub fn with_revision(mut self, revision: &str) -> Self {
        self.envelope
            .body
            .insert("revision".into(), json!(revision));
        self.envelope.etag = Some(revision.to_string());
        self
    }

    pub fn with_field(mut self, key: &str, value: Value) -> Self {
        self.envelope.body.insert(key.into(), value);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response.extensions_mut().insert(self.envelope);
        response
    }
}

/// The parsed request every handler sees.
#[derive(Debug)]
pub struct ReqCtx {
    pub request_id: String,
    /// The request's `data` (`{}` when the body was empty).
    pub data: Value,
    /// The other top-level envelope keys (normalised).
    pub envelope: Map<String, Value>,
    /// Query parameters in request order (filters are ANDed in this order).
    pub query_pairs: Vec<(String, String)>,
    /// For each entry of `query_pairs`: the key came without `=` (`?paginate`). Cowboy hands
    /// Kazoo such a key with the value `true`, so options and filters read it as `true`.
    pub query_bare: Vec<bool>,
    pub auth_token: Option<String>,
    pub headers: HeaderMap,
    /// The client's address: the peer, or what a trusted proxy's `X-Forwarded-For` names
    /// (`None` when the request did not come through a socket, as in in-process tests).
    pub client_ip: Option<IpAddr>,
    /// The token came as `Authorization: Basic ...` (account id and credentials, not a JWT).
    pub basic_auth: Option<String>,
    /// Set once a token was accepted, so `version` is added to the reply.
    pub authenticated: AtomicBool,
}

impl ReqCtx {
    /// A query-string parameter (the last one when repeated).
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query_pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A query-string parameter as Kazoo's query JSON holds it (the last one when repeated):
    /// a string, or `true` for a bare key.
    pub fn query_value(&self, key: &str) -> Option<Value> {
        self.query_entries()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Every query parameter in request order, valued as [`ReqCtx::query_value`] values it.
    pub fn query_entries(&self) -> impl DoubleEndedIterator<Item = (&str, Value)> + '_ {
        self.query_pairs.iter().enumerate().map(|(i, (k, v))| {
            let value = if self.query_bare.get(i).copied().unwrap_or(false) {
                Value::Bool(true)
            } else {
                Value::String(v.clone())
            };
            (k.as_str(), value)
        })
    }

    /// Kazoo's request option lookup: `data`, then the query string, then the envelope.
    pub fn option(&self, key: &str) -> Option<Value> {
        if let Some(v) = self.data.as_object().and_then(|d| d.get(key)) {
            return Some(v.clone());
        }
        if let Some(v) = self.query_value(key) {
            return Some(v);
        }
        self.envelope.get(key).cloned()
    }

    /// A request option read as a boolean (`true`, `"true"`).
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.option(key)? {
            Value::Bool(b) => Some(b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn mark_authenticated(&self) {
        self.authenticated.store(true, Ordering::Relaxed);
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The envelope layer (see the module docs).
///
/// Every request runs inside one `request` span carrying its id, method and path; the matched
/// route is recorded into it once routing has happened ([`record_route`]), so every log line of
/// the request can be found by its id.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
        tracing::Instrument::instrument(handle(state, req, next, request_id), span.clone()).await;
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

async fn handle(state: AppState, req: Request, next: Next, request_id: String) -> Response {
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
        })
    };

    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();

    // Prometheus scrapes plain text, not an envelope.
    if parts.uri.path() == "/metrics" && method == Method::GET {
        return next.run(Request::from_parts(parts, body)).await;
    }

    // CORS preflight short-circuits everything else.
    if method == Method::OPTIONS && cors {
        return preflight(&request_id, allowed, requested_method.as_deref());
    }

    match normalise_path(&parts.uri) {
        Ok(Some(uri)) => parts.uri = uri,
        Ok(None) => {}
        Err(e) => return finish(e.status(), envelope_of(e), None, HeaderMap::new(), &method),
    }

    if parts.uri.path().starts_with("/v2/") {
        // No crossbar endpoint lists HEAD among its methods (`allowed_methods`): 405.
        if method == Method::HEAD {
            let e = ApiError::method_not_allowed();
            return finish(e.status(), envelope_of(e), None, HeaderMap::new(), &method);
        }
        // cowboy's content negotiation: JSON (or JSONP) is all callflowd provides.
        if !accepts_json(&parts.headers) {
            let e = ApiError::not_acceptable();
            return finish(e.status(), envelope_of(e), None, HeaderMap::new(), &method);
        }
    }

    let too_large = || {
        ApiError::invalid_field(
            SchemaError::at(
                "file",
                "maxSize",
                format!(
                    "Payload or Files must not be more than {} bytes",
                    state.config.max_body_bytes
                ),
            )
            .with("target", json!(state.config.max_body_bytes)),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read (the
    // connection then closes instead of waiting for gigabytes).
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.config.max_body_bytes as u64) {
        let e = too_large();
        return finish(e.status(), envelope_of(e), None, HeaderMap::new(), &method);
    }
    let read = axum::body::to_bytes(body, state.config.max_body_bytes);
    let bytes = match tokio::time::timeout(state.config.body_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            let e = too_large();
            return finish(e.status(), envelope_of(e), None, HeaderMap::new(), &method);
        }
        Err(_) => {
            let e = ApiError::request_timeout();
            return finish(e.status(), envelope_of(e), None, HeaderMap::new(), &method);
        }
    };

    let ctx = match parse_request(&state, &parts, &bytes, &request_id) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => return finish(e.status(), envelope_of(e), None, HeaderMap::new(), &method),
    };

    // Kazoo stops early, before path and method checks, only for an expired token (and one
    // whose account is gone): 401 with an empty `data` (`cb_token_auth:validate_auth_token`).
    // Garbage and forged tokens go on as if no token had been sent.
    if let (Some(token), None) = (ctx.auth_token.as_deref(), ctx.basic_auth.as_deref()) {
        if state.signer.check(token) == Err(crate::auth::TokenError::Expired) {
            let e = ApiError::invalid_token();
            return finish(
                e.status(),
                envelope_of(e),
                Some(&ctx),
                HeaderMap::new(),
                &method,
            );
        }
    }

    // Verb tunnelling: `verb` in data, query string or envelope replaces the method, but only
    // on a real POST. Kazoo writes only for real PUT/POST/PATCH/DELETE; a GET or HEAD (a link,
    // a prefetcher, a replayed access log) must never change anything, whatever it carries.
    let mut effective = method.clone();
    let tunnel = if method == Method::POST {
        ctx.option("verb")
    } else {
        None
    };
    if let Some(Value::String(verb)) = tunnel {
        match Method::from_bytes(verb.to_ascii_uppercase().as_bytes()) {
            Ok(m) => effective = m,
            Err(_) => {
                let e = ApiError::method_not_allowed();
                return finish(
                    e.status(),
                    envelope_of(e),
                    Some(&ctx),
                    HeaderMap::new(),
                    &method,
                );
            }
        }
    }
    parts.method = effective.clone();
    parts.extensions.insert(ctx.clone());
    let response = next.run(Request::from_parts(parts, Body::empty())).await;

    let (resp_parts, _) = response.into_parts();
    let envelope = match resp_parts.extensions.get::<Envelope>() {
        Some(env) => env.clone(),
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

fn envelope_of(e: ApiError) -> Envelope {
    Envelope {
        body: e.into_answer().envelope(),
        etag: None,
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

fn parse_request(
    state: &AppState,
    parts: &axum::http::request::Parts,
    bytes: &Bytes,
    request_id: &str,
) -> Result<ReqCtx, ApiError> {
    let query_pairs: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    // The form parser skips empty segments and splits each one at its first `=`; a segment
    // without `=` is a bare key.
    let query_bare: Vec<bool> = parts
        .uri
        .query()
        .map(|q| {
            q.split('&')
                .filter(|seg| !seg.is_empty())
                .map(|seg| !seg.contains('='))
                .collect()
        })
        .unwrap_or_default();

    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });

    let (data, envelope) = if bytes.iter().all(u8::is_ascii_whitespace) {
        (json!({}), Map::new())
    } else {
        let json_body = match content_type.as_deref() {
            None | Some("application/json") | Some("application/x-json") => true,
            // curl -d sends JSON as a form; Kazoo notices and decodes it as JSON.
            Some("application/x-www-form-urlencoded") => {
                let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
                matches!(first, Some(b'{') | Some(b'['))
            }
            // Kazoo's default accepted list (`?CONTENT_ACCEPTED`): file-style bodies are
            // taken as uploads, which a callflow ignores, so the request has no `data`.
            Some(
                "multipart/form-data"
                | "multipart/mixed"
                | "application/octet-stream"
                | "text/csv"
                | "text/comma-separated-values",
            ) => false,
            Some(other) => {
                if matches!(parts.method, Method::PUT | Method::POST | Method::PATCH) {
                    return Err(ApiError::unsupported_media_type(other));
                }
                false
            }
        };
        if json_body {
            parse_envelope(bytes, state.config.max_json_depth)?
        } else if content_type.as_deref() == Some("application/x-www-form-urlencoded") {
            let env: Map<String, Value> = url::form_urlencoded::parse(bytes)
                .into_owned()
                .map(|(k, v)| (normalise_key(&k), Value::String(v)))
                .collect();
            (json!({}), env)
        } else {
            (json!({}), Map::new())
        }
    };

    if let Some(e) = nul_in_request(parts, &query_pairs, &data, &envelope) {
        return Err(e);
    }
    let client_ip = client_address(parts, &state.config.trusted_proxies);
    let headers = parts.headers.clone();
    let mut ctx = ReqCtx {
        client_ip,
        basic_auth: None,
        request_id: request_id.to_string(),
        data,
        envelope,
        query_pairs,
        query_bare,
        auth_token: None,
        headers,
        authenticated: AtomicBool::new(false),
    };
    ctx.basic_auth = find_basic(&ctx);
    ctx.auth_token = match &ctx.basic_auth {
        Some(basic) => Some(basic.clone()),
        None => find_token(&ctx),
    };
    Ok(ctx)
}

/// The peer address, or the client a trusted proxy names: the right-most `X-Forwarded-For`
/// entry that is not itself a trusted proxy (entries to its left are client-supplied).
fn client_address(parts: &axum::http::request::Parts, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        // `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`; anything else (`unknown`, an
        // obfuscated name) ends the walk: the proxy itself is then the client.
        let ip = hop
            .parse::<IpAddr>()
            .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
            .map(|ip| ip.to_canonical());
        match ip {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(peer)
}

/// U+0000 cannot be stored (PostgreSQL's text type refuses it) and is never meaningful in a
/// callflow, a name or a query: refused up front, the same way on every store, naming where it
/// was found.
fn nul_in_request(
    parts: &axum::http::request::Parts,
    query: &[(String, String)],
    data: &Value,
    envelope: &Map<String, Value>,
) -> Option<ApiError> {
    let nul = |field: String| {
        Some(ApiError::invalid_field(
            SchemaError::at(&field, "invalid_characters", "NUL (U+0000) is not allowed")
                .with("target", json!("no U+0000")),
        ))
    };
    let path = parts.uri.path();
    if path.contains("%00") || path.contains('\0') {
        return nul("path".to_string());
    }
    for (k, v) in query {
        if k.contains('\0') || v.contains('\0') {
            return nul(k.replace('\0', "\\u0000"));
        }
    }
    if let Some(at) = find_nul(data, "") {
        return nul(at);
    }
    for (k, v) in envelope {
        if k.contains('\0') {
            return nul(k.replace('\0', "\\u0000"));
        }
        if let Some(at) = find_nul(v, k) {
            return nul(at);
        }
    }
    None
}

/// Dotted path of the first string or key holding U+0000.
fn find_nul(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(at.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v, &join(at, &i.to_string()))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join(at, &k.replace('\0', "\\u0000")))
            } else {
                find_nul(v, &join(at, k))
            }
        }),
        _ => None,
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// Token lookup order: `X-Auth-Token`, the `auth_token` option, then `Authorization`.
fn find_token(ctx: &ReqCtx) -> Option<String> {
    if let Some(t) = ctx.header("x-auth-token").filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    if let Some(Value::String(t)) = ctx
        .option("auth_token")
        .filter(|v| v.as_str().map(|s| !s.is_empty()).unwrap_or(false))
    {
        return Some(t);
    }
    let auth = ctx
        .header("authorization")
        .map(str::to_string)
        .or_else(|| {
            ctx.option("authorization")
                .and_then(|v| v.as_str().map(str::to_string))
        })?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .unwrap_or(&auth);
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

/// `Authorization: Basic <base64(ACCOUNT_ID:CREDENTIALS)>` (`cb_basic_auth`), when that is
/// where the token came from (Kazoo's token type `basic`).
fn find_basic(ctx: &ReqCtx) -> Option<String> {
    if ctx.header("x-auth-token").is_some_and(|t| !t.is_empty())
        || ctx
            .option("auth_token")
            .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        return None;
    }
    let auth = ctx
        .header("authorization")
        .map(str::to_string)
        .or_else(|| {
            ctx.option("authorization")
                .and_then(|v| v.as_str().map(str::to_string))
        })?;
    auth.strip_prefix("Basic ")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Top-level envelope keys: ASCII upper-case to lower-case, `-` to `_`.
fn normalise_key(k: &str) -> String {
    k.to_ascii_lowercase().replace('-', "_")
}

fn json_error(message: String) -> ApiError {
    ApiError::invalid_field(
        SchemaError::at("json", "invalid", message).with("target", json!("body")),
    )
}

fn parse_envelope(bytes: &[u8], max_depth: usize) -> Result<(Value, Map<String, Value>), ApiError> {
    if let Some(offset) = too_deep(bytes, max_depth) {
        return Err(json_error(format!(
            "nesting deeper than {max_depth} levels around {offset}"
        )));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let kind = if e.is_eof() {
            "truncated_json"
        } else {
            "invalid_json"
        };
        json_error(format!(
            "{kind} around {}",
            byte_offset(bytes, e.line(), e.column())
        ))
    })?;
    let Value::Object(top) = value else {
        return Err(json_error("All JSON must be valid".to_string()));
    };
    let mut envelope: Map<String, Value> = top
        .into_iter()
        .map(|(k, v)| (normalise_key(&k), v))
        .collect();
    match envelope.remove("data") {
        Some(data @ (Value::Object(_) | Value::Array(_))) => Ok((data, envelope)),
        Some(other) => Err(ApiError::invalid_field(
            SchemaError::at("data", "type", "Value did not match type(s): object, array")
                .with("target", json!(["object", "array"]))
                .with("value", other),
        )),
        None => Err(ApiError::invalid_field(
            SchemaError::at("data", "required", "Field is required but missing")
                .with("value", json!("data")),
        )),
    }
}

/// Byte offset of the first place nesting exceeds `max`, if it does (strings are skipped).
fn too_deep(bytes: &[u8], max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in bytes.split(|b| *b == b'\n').enumerate() {
        if i + 1 == line {
            return offset + column;
        }
        offset += l.len() + 1;
    }
    offset
}

/// The methods a path answers (its `Access-Control-Allow-Methods`, as Kazoo lists each
/// endpoint's `allowed_methods`).
fn allowed_methods(path: &str) -> &'static str {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.split_first() {
        Some((v, rest)) if v.starts_with('v') && v[1..].parse::<u32>().is_ok() => rest,
        _ => &segments[..],
    };
    match rest {
        ["accounts", _] => "OPTIONS, GET, PUT",
        ["accounts", _, "callflows"] => "OPTIONS, GET, PUT",
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
    } = input;
    let mut body = envelope.body;
    body.insert("request_id".into(), json!(request_id));
    if let Some(token) = ctx.and_then(|c| c.auth_token.as_ref()) {
        body.entry("auth_token").or_insert_with(|| json!(token));
    }
    body.insert(
        "timestamp".into(),
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    if ctx
        .map(|c| c.authenticated.load(Ordering::Relaxed))
        .unwrap_or(false)
    {
        body.insert("version".into(), json!(state.config.version));
    }
    body.insert("node".into(), json!(state.config.node));

    let etag = envelope.etag.map(|r| format!("\"{r}\""));
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
        let matches = wanted
            .is_some_and(|w| w.trim() == "*" || w.split(',').any(|t| t.trim() == tag.as_str()));
        if *method == Method::GET && matches {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            *response.headers_mut() = headers;
            return response;
        }
    }

    let pretty = pretty_header || ctx.and_then(|c| c.flag("pretty_print")).unwrap_or(false);
    let value = Value::Object(body);
    let text = if pretty {
        serde_json::to_string_pretty(&value)
    } else {
        serde_json::to_string(&value)
    }
    .unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert_eq!(too_deep(br#"{"a":"[[[[[["}"#, 2), None);
        assert_eq!(too_deep(br#"[[[1]]]"#, 2), Some(2));
    }

    #[test]
    fn json_errors_report_a_byte_offset() {
        let e = parse_envelope(b"{\"data\": {\"a\": }", 64).unwrap_err();
        let msg = e.data().cloned().unwrap()["json"]["invalid"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.starts_with("invalid_json around"), "{msg}");
        let e = parse_envelope(b"{\"data\": {", 64).unwrap_err();
        let msg = e.data().cloned().unwrap()["json"]["invalid"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.starts_with("truncated_json around"), "{msg}");
    }

    #[test]
    fn envelope_keys_are_normalised_and_data_required() {
        let (data, env) = parse_envelope(br#"{"Data": {"x": 1}, "Auth-Token": "t"}"#, 64).unwrap();
        assert_eq!(data, json!({"x": 1}));
        assert_eq!(env["auth_token"], json!("t"));
        let e = parse_envelope(br#"{"x": 1}"#, 64).unwrap_err();
        assert!(e.data().cloned().unwrap()["data"]["required"].is_object());
        let e = parse_envelope(br#"[1]"#, 64).unwrap_err();
        assert_eq!(
            e.data().cloned().unwrap()["json"]["invalid"]["message"],
            "All JSON must be valid"
        );
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
