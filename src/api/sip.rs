//! The switch's endpoints (`/v2/sip/*`): Kamailio asks where a new call goes
//! (`GET /v2/sip/route`, answered as an rtjson document) and for a device's digest HA1
//! (`GET /v2/sip/credentials`). Both need the switch's shared secret (`--sip-secret`) as
//! `Authorization: Bearer ...` (401 without it); with no secret configured they answer 404
//! `sip_disabled`.
//! docs/sip.md describes the parameters and the Kamailio side.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::sip::{self, Decision, Failure, RouteQuery, SipSettings};

use super::error::{ApiError, ApiResult};
use super::reply::raw;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/sip/route", get(route))
        .route("/v2/sip/credentials", get(credentials))
}

/// The switch's secret, compared in constant time; 404 when SIP routing is not configured.
fn check_switch(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    use subtle::ConstantTimeEq;
    let Some(secret) = state.config.sip_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "sip_disabled",
            Some(json!({"message": "SIP routing is off: start callflowd with --sip-secret"})),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        metrics::counter!("callflowd_sip_refused_total").increment(1);
        Err(ApiError::invalid_credentials())
    }
}

fn json_response(status: StatusCode, body: Value, explain: Option<&str>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(explain) = explain {
        // Header values must be visible ASCII: anything else is replaced.
        let clean: String = explain
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .take(512)
            .collect();
        if let Ok(v) = HeaderValue::from_str(&clean) {
            response.headers_mut().insert("x-callflowd-explain", v);
        }
    }
    raw(response)
}

fn param(params: &HashMap<String, String>, key: &str) -> Option<String> {
    params
        .get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `GET /v2/sip/route?ruser=&rdomain=&fuser=&fdomain=&src_ip=&call_id=&auth_user=&failures=&node=`
async fn route(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    check_switch(&state, &headers)?;
    let started = Instant::now();
    let (Some(ruser), Some(rdomain)) = (param(&params, "ruser"), param(&params, "rdomain")) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request",
            Some(json!({"message": "ruser and rdomain are required"})),
        ));
    };
    let mut failures = Vec::new();
    for item in param(&params, "failures")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
    {
        match Failure::parse(item) {
            Some(f) => failures.push(f),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid request",
                    Some(json!({"message": format!(
                        "failures: '{item}' is neither a SIP code from 300 to 699 nor 'timeout' or 'unregistered'"
                    )})),
                ))
            }
        }
    }
    let query = RouteQuery {
        ruser,
        rdomain,
        fuser: param(&params, "fuser"),
        fdomain: param(&params, "fdomain"),
        src_ip: param(&params, "src_ip").and_then(|ip| ip.parse().ok()),
        call_id: param(&params, "call_id"),
        auth_user: param(&params, "auth_user"),
        failures,
        node: param(&params, "node"),
        now: None,
    };
    let settings = SipSettings {
        media_uri: state.config.sip_media_uri.clone(),
    };
    let answer = sip::route(&state.pipeline, &settings, &query).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let result = answer.result();
    metrics::counter!("callflowd_sip_route_decisions_total", "result" => result).increment(1);
    metrics::histogram!("callflowd_sip_route_duration_seconds").record(elapsed);
    tracing::info!(
        call_id = query.call_id.as_deref().unwrap_or(""),
        ruser = %query.ruser,
        rdomain = %query.rdomain,
        retry = query.failures.len(),
        failed_node = query.node.as_deref().unwrap_or(""),
        result,
        explain = %answer.explain,
        "sip route"
    );
    let mut body = serde_json::Map::new();
    body.insert("version".into(), json!("1.0"));
    let status = match &answer.decision {
        Decision::Route { routing, routes } => {
            body.insert("action".into(), json!("route"));
            body.insert("routing".into(), json!(routing));
            body.insert("routes".into(), json!(routes));
            StatusCode::OK
        }
        Decision::Reply { code, reason } => {
            body.insert("action".into(), json!("reply"));
            body.insert("code".into(), json!(code));
            body.insert("reason".into(), json!(reason));
            StatusCode::OK
        }
        Decision::Challenge => {
            body.insert("action".into(), json!("challenge"));
            StatusCode::OK
        }
        Decision::NotFound => {
            body.insert("action".into(), json!("reply"));
            body.insert("code".into(), json!(404));
            body.insert("reason".into(), json!("Not Found"));
            StatusCode::NOT_FOUND
        }
    };
    if let Some(id) = &answer.account_id {
        body.insert("account_id".into(), json!(id));
    }
    if let Some(id) = &answer.callflow_id {
        body.insert("callflow_id".into(), json!(id));
    }
    if let Some(exit) = &answer.exit {
        body.insert("module".into(), json!(exit.module));
        body.insert(
            "node".into(),
            json!(format!("{}:{}", exit.callflow_id, exit.path)),
        );
    }
    body.insert("on_net".into(), json!(answer.on_net));
    body.insert("explain".into(), json!(answer.explain));
    Ok(json_response(
        status,
        Value::Object(body),
        Some(&answer.explain),
    ))
}

/// `GET /v2/sip/credentials?username=&realm=`: the device's HA1 for digest checks.
async fn credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    check_switch(&state, &headers)?;
    let (Some(username), Some(realm)) = (param(&params, "username"), param(&params, "realm"))
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request",
            Some(json!({"message": "username and realm are required"})),
        ));
    };
    let found = sip::credentials(&state.pipeline, &username, &realm).await?;
    let result = if found.is_some() { "found" } else { "unknown" };
    metrics::counter!("callflowd_sip_credentials_total", "result" => result).increment(1);
    Ok(match found {
        Some(c) => json_response(
            StatusCode::OK,
            json!({"ha1": c.ha1, "device_id": c.device_id, "account_id": c.account_id,
                   "owner_id": c.owner_id}),
            None,
        ),
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown", "message": "no enabled device of that realm has that SIP username and a password"}),
            None,
        ),
    })
}
