//! The HTTP API: every route, the fallback and the layer stack, in one place.
//!
//! Handlers are thin: extract, call the domain/store, wrap in the envelope. The envelope layer
//! ([`envelope::around`]) runs around the whole router so it can rewrite the method (verb
//! tunnelling) and the path before routing.

pub mod accounts;
pub mod auth;
pub mod basic;
pub mod callflows;
pub mod direct;
pub mod docs_page;
pub mod documents;
pub mod drafts;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod history;
pub mod lint;
pub mod listing;
pub mod lookup;
pub mod openapi;
pub mod replies;
pub mod reply;
pub mod request;
pub mod schemas;
mod simulations;
pub mod sip;
pub mod transfer;
pub mod ui;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::auth::TokenSigner;
use crate::schema::SchemaSet;
use crate::store::DynStore;

use self::error::{ApiError, ApiResult};
use self::reply::Reply;

/// Settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    /// Time allowed to read a request body.
    pub body_timeout: std::time::Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Bytes of an oversized body read and discarded before the 413 is sent.
    pub max_body_drain_bytes: usize,
    /// Time allowed to produce a response once the request has been read.
    pub request_timeout: std::time::Duration,
    /// Largest `page_size` served.
    pub max_page_size: usize,
    /// Largest import dump accepted over HTTP.
    pub max_import_bytes: u64,
    /// The switch's shared secret for `/v2/sip/*` (`None`: those endpoints are off).
    pub sip_secret: Option<String>,
    /// The media server calls are sent to when a node needs media.
    pub sip_media_uri: Option<String>,
    /// Most rows a `paginate=false` listing answers.
    pub max_listing_rows: usize,
    /// `/metrics` is served on the API listener (no `--metrics-listen`).
    pub metrics_on_api: bool,
    pub max_numbers_per_callflow: usize,
    pub max_patterns_per_callflow: usize,
    pub max_patterns_per_account: usize,
    /// Kazoo's `node` envelope key: base64url(md5(node name)).
    pub node: String,
    pub version: String,
    /// The hottest reads are dispatched by the envelope layer without the router
    /// (`direct.rs`); off only to compare both ways in tests.
    pub direct_reads: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_json_depth: 64,
            body_timeout: std::time::Duration::from_secs(30),
            max_body_drain_bytes: 8 * 1024 * 1024,
            request_timeout: std::time::Duration::from_secs(30),
            max_page_size: 1_000,
            max_import_bytes: 4 * 1024 * 1024 * 1024,
            sip_secret: None,
            sip_media_uri: None,
            max_listing_rows: 10_000,
            metrics_on_api: true,
            trusted_proxies: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv6Addr::LOCALHOST.into(),
            ],
            max_numbers_per_callflow: 10_000,
            max_patterns_per_callflow: 1_000,
            max_patterns_per_account: 2_000,
            node: node_id(&format!("callflowd@{}", hostname())),
            version: format!("callflowd-{}", env!("CARGO_PKG_VERSION")),
            direct_reads: true,
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
}

/// base64url(md5(name)), 22 characters, as Kazoo renders its node name.
pub fn node_id(name: &str) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(md5::Md5::digest(name.as_bytes()))
}

/// The state every handler shares: one pointer, so the clone each extractor takes costs one
/// reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// The same state with other settings (tests).
    pub fn with_config(&self, config: ApiConfig) -> Self {
        let mut shared = (*self.0).clone();
        shared.config = Arc::new(config);
        Self::new(shared)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Clone)]
pub struct Shared {
    pub store: DynStore,
    /// Read replies kept while their account is unchanged.
    pub replies: Arc<replies::ReplyCache>,
    /// The one save path for every document type.
    pub pipeline: crate::documents::pipeline::Pipeline,
    pub routes: Arc<crate::routing::RouteCache>,
    pub schemas: SchemaSet,
    pub signer: TokenSigner,
    pub config: Arc<ApiConfig>,
    pub throttle: Arc<crate::auth::throttle::LoginThrottle>,
    /// The per-account request rate (`None`: off).
    pub limiter: Option<Arc<crate::auth::throttle::RequestLimiter>>,
    /// The last health probe: when, and whether the store was usable.
    pub health: Arc<tokio::sync::Mutex<Option<(std::time::Instant, bool)>>>,
    /// Import jobs started over HTTP.
    pub imports: Arc<crate::transfer::jobs::Jobs>,
    /// Set when the server begins to stop: long-lived responses (change-feed streams) end.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// The complete HTTP service, as an axum router (what tests drive; the server runs the same
/// [`ApiService`] without the router around it).
pub fn router(state: AppState) -> Router {
    Router::new().fallback_service(ApiService::new(state))
}

/// Every route, without the envelope layer.
fn routes(state: &AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .merge(auth::router())
        .merge(accounts::router())
        .merge(callflows::router())
        .merge(drafts::router())
        .merge(history::router())
        .merge(documents::router())
        .merge(documents::entries_router())
        .merge(documents::owner_router())
        .merge(simulations::router())
        .merge(lint::router())
        .merge(lint::tests_router())
        .merge(lookup::router())
        .merge(transfer::router())
        .merge(sip::router())
        .merge(ui::router())
        .merge(schemas::router())
        .route("/v2/openapi.json", get(openapi::serve))
        .route("/docs", get(docs_page::page))
        .route("/docs/style.css", get(docs_page::style));
    let routes = if state.config.metrics_on_api {
        routes.route("/metrics", get(metrics))
    } else {
        routes
    };
    routes
        .route_layer(axum::middleware::from_fn(envelope::record_route))
        .fallback(not_found)
        .with_state(state.clone())
}

/// The complete HTTP service as the server runs it: the envelope layer ([`envelope::around`])
/// around the routes, and a panic answered 500 in Kazoo's shape. [`router`] is the same as an
/// axum router; the server calls it directly, without a router around it.
#[derive(Clone)]
pub struct ApiService {
    state: AppState,
    routes: Router,
}

impl ApiService {
    pub fn new(state: AppState) -> Self {
        let routes = routes(&state);
        Self { state, routes }
    }

    /// The envelope layer around other routes (tests: a route that panics).
    #[doc(hidden)]
    pub fn with_routes(state: AppState, routes: Router) -> Self {
        Self { state, routes }
    }
}

impl tower::Service<axum::extract::Request> for ApiService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        let state = self.state.clone();
        let routes = self.routes.clone();
        Box::pin(async move {
            use futures_util::FutureExt;
            let inner = move |req| async move {
                match tower::ServiceExt::oneshot(routes, req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            };
            let answered = std::panic::AssertUnwindSafe(envelope::around(state, req, inner))
                .catch_unwind()
                .await;
            Ok(answered.unwrap_or_else(|_| panicked()))
        })
    }
}

/// The answer to a request whose handler panicked.
fn panicked() -> axum::response::Response {
    let answer = ApiError::internal("handler panicked").into_answer();
    axum::response::IntoResponse::into_response((
        answer.status,
        json!(answer.envelope()).to_string(),
    ))
}

/// The router of the separate metrics listener (`--metrics-listen`): `/metrics` only.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(metrics))
}

/// The JSON envelope of an error the HTTP layer answers before any request reached the router
/// (a malformed request line, oversized headers): Kazoo's shape, with a fresh request id.
pub fn connection_error_body(config: &ApiConfig, status: axum::http::StatusCode) -> String {
    let e = match status {
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::new(
            status,
            "request_header_fields_too_large",
            Some(json!({"message": "the request head is too large"})),
        ),
        axum::http::StatusCode::URI_TOO_LONG => ApiError::new(
            status,
            "uri_too_long",
            Some(json!({"message": "the request URI is too long"})),
        ),
        _ => ApiError::new(
            status,
            "bad_request",
            Some(json!({"message": "malformed HTTP request"})),
        ),
    };
    let mut body = e.into_answer().envelope();
    body.insert("request_id".into(), json!(crate::domain::new_id()));
    body.insert(
        "timestamp".into(),
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    body.insert("node".into(), json!(config.node));
    serde_json::Value::Object(body).to_string()
}

/// Prometheus text exposition of the process metrics.
async fn metrics() -> axum::response::Response {
    let body = crate::telemetry::metrics_handle().render();
    axum::response::IntoResponse::into_response((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    ))
}

/// A request's `data` checked against one of our schemas (defaults applied), as an object.
/// Runs off the async workers (see [`offload`]).
pub(crate) async fn validated_data(
    state: &AppState,
    schema: &'static str,
    data: &serde_json::Value,
) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    let (schemas, mut value) = (state.schemas.clone(), data.clone());
    let value = offload(move || schemas.validate(schema, &mut value).map(|()| value)).await??;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(ApiError::internal(format!(
            "schema {schema} accepted a non-object"
        ))),
    }
}

/// [`crate::cpu::offload`], failing as an internal error.
pub(crate) async fn offload<T, F>(f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    crate::cpu::offload(f).await.map_err(ApiError::Internal)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// Healthy only when requests can really be served: the store answers, its schema is
/// present, and a write transaction can be opened. Otherwise 503 `datastore_unreachable`.
async fn healthz(State(state): State<AppState>) -> ApiResult<Reply> {
    // One probe at a time, its answer reused for a second: `/healthz` needs no credentials and
    // must not become a way to queue work on the writer.
    let mut last = state.health.lock().await;
    let healthy = match *last {
        Some((at, healthy)) if at.elapsed() < std::time::Duration::from_secs(1) => healthy,
        _ => {
            let healthy = match state.store.health().await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "health probe failed");
                    false
                }
            };
            *last = Some((std::time::Instant::now(), healthy));
            healthy
        }
    };
    if healthy {
        Ok(Reply::ok(json!({"store": "ok"})))
    } else {
        Err(ApiError::unavailable())
    }
}
