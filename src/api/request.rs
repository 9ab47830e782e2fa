//! The inbound half of Kazoo's envelope: the parsed request every handler sees ([`ReqCtx`]),
//! and how a request becomes one: query pairs, the body by content type, top-level key
//! normalisation, the `data` check, the nesting limit, refusal of U+0000, the client address
//! and where the credentials come from.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method};
use compact_str::CompactString;
use serde_json::{json, Map, Value};

use crate::schema::SchemaError;

use super::error::ApiError;
use super::AppState;

/// The parsed request every handler sees.
#[derive(Debug)]
pub struct ReqCtx {
    pub request_id: String,
    /// The request's `data` (`{}` when the body was empty).
    pub data: Value,
    /// The other top-level envelope keys (normalised).
    pub envelope: Map<String, Value>,
    /// Query parameters in request order (filters are ANDed in this order).
    pub query_pairs: Vec<(CompactString, CompactString)>,
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
    /// The bearer token's signature and expiry, checked once by the envelope layer (`None`:
    /// no token, or Basic credentials). The rate limit, the early stop for expired tokens and
    /// the handlers' account checks all read this.
    pub token_check: Option<Result<std::sync::Arc<crate::auth::Claims>, crate::auth::TokenError>>,
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
        let i = self.query_pairs.iter().rposition(|(k, _)| k == key)?;
        Some(self.query_entry(i))
    }

    /// The `i`th query parameter's value (see [`ReqCtx::query_value`]).
    fn query_entry(&self, i: usize) -> Value {
        if self.query_bare.get(i).copied().unwrap_or(false) {
            Value::Bool(true)
        } else {
            Value::String(self.query_pairs[i].1.to_string())
        }
    }

    /// Every query parameter in request order, valued as [`ReqCtx::query_value`] values it.
    pub fn query_entries(&self) -> impl DoubleEndedIterator<Item = (&str, Value)> + '_ {
        self.query_pairs
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_str(), self.query_entry(i)))
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

pub(super) fn parse_request(
    state: &AppState,
    parts: &axum::http::request::Parts,
    bytes: &Bytes,
    request_id: &str,
) -> Result<ReqCtx, ApiError> {
    parse_request_with(
        parts,
        bytes,
        request_id,
        state.config.max_json_depth,
        &state.config.trusted_proxies,
    )
}

/// Fuzzing entry (`fuzz/fuzz_targets/request_parse.rs`): a request as the envelope layer
/// reads it, without an [`AppState`]. Returns the method after verb tunnelling, or the error
/// the client would get.
#[doc(hidden)]
pub fn fuzz_parse(
    parts: &axum::http::request::Parts,
    body: &[u8],
    max_depth: usize,
) -> Result<(ReqCtx, Method), ApiError> {
    let ctx = parse_request_with(parts, &Bytes::copy_from_slice(body), "fuzz", max_depth, &[])?;
    let method = ctx.tunnelled_method(&parts.method)?;
    Ok((ctx, method))
}

impl ReqCtx {
    /// The method after verb tunnelling: `verb` (in data, query string or envelope) replaces
    /// the method on a real POST only (a GET or HEAD must never write, whatever it carries);
    /// an unknown verb is refused. The envelope layer and the fuzz entry both use it.
    pub fn tunnelled_method(&self, method: &Method) -> Result<Method, ApiError> {
        if *method != Method::POST {
            return Ok(method.clone());
        }
        match self.option("verb") {
            Some(Value::String(verb)) => Method::from_bytes(verb.to_ascii_uppercase().as_bytes())
                .map_err(|_| ApiError::method_not_allowed()),
            _ => Ok(method.clone()),
        }
    }
}

fn parse_request_with(
    parts: &axum::http::request::Parts,
    bytes: &Bytes,
    request_id: &str,
    max_json_depth: usize,
    trusted_proxies: &[IpAddr],
) -> Result<ReqCtx, ApiError> {
    // Short keys and values (nearly all of them) are kept inline, without an allocation.
    let query_pairs: Vec<(CompactString, CompactString)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (CompactString::from(k), CompactString::from(v)))
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
            parse_envelope(bytes, max_json_depth)?
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
    let client_ip = client_address(parts, trusted_proxies);
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
        token_check: None,
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
    query: &[(CompactString, CompactString)],
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
}
