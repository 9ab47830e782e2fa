//! Building and running the service: store, schemas, signing key, first-start admin account,
//! listener, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::accounts::{new_account, NewAccount};
use crate::api::{self, ApiConfig, AppState};
use crate::auth::throttle::{LoginThrottle, ThrottleConfig};
use crate::auth::{random_hex, TokenSigner};
use crate::config::ServeArgs;
use crate::schema::SchemaSet;
use crate::store::{self, DynStore};

/// Settings key of the shared token signing key.
const SIGNING_KEY: &str = "token_signing_key";

/// What the first start created, to be shown once.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub account_id: String,
    pub password: SecretString,
    pub api_key: SecretString,
}

pub struct App {
    listener: TcpListener,
    /// `--metrics-listen`: `/metrics` on a listener of its own.
    metrics_listener: Option<TcpListener>,
    limits: crate::server::ServerLimits,
    router: api::ApiService,
    pub state: AppState,
    pub bootstrap: Option<Bootstrap>,
}

/// The application state for a store and settings (also used by tests and benches).
pub async fn build_state(store: DynStore, args: &ServeArgs) -> anyhow::Result<AppState> {
    crate::telemetry::metrics_handle();
    // Wrapped even with a budget of 0 (nothing then fits in memory): the wrapper is also what
    // notices writes of other processes on the same file (`callflowd import`, ...), after which
    // route snapshots are dropped too.
    let store: DynStore =
        match store::CachedStore::serving(store.clone(), args.document_cache_bytes) {
            Some(cached) => Arc::new(cached),
            None => store,
        };
    if let Some(workers) = args.hash_workers {
        crate::auth::hasher::configure(workers);
    }
    let schemas = match &args.schemas_dir {
        Some(dir) => SchemaSet::with_overrides(dir)
            .with_context(|| format!("loading schemas from {}", dir.display()))?,
        None => SchemaSet::embedded()?,
    };
    let secret = SecretString::from(store.setting_or_init(SIGNING_KEY, &random_hex(32)).await?);
    let config = ApiConfig {
        max_body_bytes: args.max_body_bytes,
        max_json_depth: args.max_json_depth,
        body_timeout: args.body_timeout,
        max_body_drain_bytes: args
            .max_body_drain_bytes
            .unwrap_or(args.max_body_bytes.saturating_mul(8)),
        request_timeout: args.request_timeout,
        max_page_size: args.max_page_size.max(1),
        max_import_bytes: args.max_import_bytes,
        sip_secret: args.sip_secret.clone(),
        sip_media_uri: args.sip_media_uri.clone(),
        max_listing_rows: args.max_listing_rows.max(1),
        metrics_on_api: args.metrics_listen.is_none(),
        trusted_proxies: args.trusted_proxies.clone(),
        max_numbers_per_callflow: args.max_numbers_per_callflow,
        max_patterns_per_callflow: args.max_patterns_per_callflow,
        max_patterns_per_account: args.max_patterns_per_account,
        ..ApiConfig::default()
    };
    let routes = Arc::new(crate::routing::RouteCache::new(
        store.clone(),
        args.route_cache_bytes,
    ));
    let feed = crate::history::feed::FeedSignal::new();
    if let Some(events) = store.subscribe_changes() {
        tokio::spawn(follow_changes(events, routes.clone(), feed.clone()));
    }
    if args.revisions_keep_days > 0 {
        crate::history::spawn_pruner(store.clone(), args.revisions_keep_days);
    }
    let pipeline = crate::documents::pipeline::Pipeline {
        store: store.clone(),
        schemas: schemas.clone(),
        routes: routes.clone(),
        limits: crate::documents::pipeline::Limits {
            max_numbers_per_callflow: config.max_numbers_per_callflow,
            max_patterns_per_callflow: config.max_patterns_per_callflow,
            max_patterns_per_account: config.max_patterns_per_account,
            max_flow_nodes: args.max_flow_nodes,
            max_pattern_length: args.max_pattern_length,
        },
        history: crate::documents::pipeline::HistoryConfig {
            keep_revisions: (args.revisions_keep > 0).then_some(args.revisions_keep),
            record: !args.bench_history_as_before,
        },
        feed,
    };
    Ok(AppState::new(crate::api::Shared {
        stopping: Arc::new(tokio::sync::watch::channel(false).0),
        imports: Default::default(),
        pipeline,
        routes,
        store,
        replies: Arc::new(crate::api::replies::ReplyCache::new(
            (args.document_cache_bytes / 4).max(1),
        )),
        schemas,
        signer: TokenSigner::new(secret.expose_secret(), args.token_ttl),
        health: Default::default(),
        throttle: Arc::new(LoginThrottle::new(ThrottleConfig {
            size: args.login_bucket_size,
            rate: args.login_bucket_rate,
            cost: args.login_cost,
            failures_per_address: args.login_failures_per_address,
        })),
        limiter: crate::auth::throttle::RequestLimiter::new(
            args.account_bucket_size,
            args.account_bucket_rate,
            args.request_token_cost,
        )
        .map(Arc::new),
        config: Arc::new(config),
    }))
}

/// Applies other nodes' writes to this node's routing snapshots, and wakes this node's
/// change-feed followers (a resync wakes them too: they read from their last position, so a
/// lost notification costs at most a poll tick).
async fn follow_changes(
    mut events: tokio::sync::mpsc::UnboundedReceiver<store::ChangeEvent>,
    routes: Arc<crate::routing::RouteCache>,
    feed: crate::history::feed::FeedSignal,
) {
    while let Some(event) = events.recv().await {
        feed.ring();
        match event {
            store::ChangeEvent::Changed {
                account_id,
                callflow_id,
            } => {
                if let Err(error) = routes.refresh(&account_id, &callflow_id).await {
                    tracing::warn!(%error, %account_id, "refresh after a remote write failed; snapshot dropped");
                    routes.invalidate(&account_id);
                }
            }
            // Routing reads only callflows; no other document is cached on a node yet.
            store::ChangeEvent::Document { .. } => {}
            store::ChangeEvent::Resync => routes.invalidate_all(),
        }
    }
}

/// Creates the admin account when the store has no account at all.
pub async fn bootstrap_admin(
    store: &DynStore,
    password: Option<SecretString>,
) -> anyhow::Result<Option<Bootstrap>> {
    if store.account_count().await? > 0 {
        return Ok(None);
    }
    let password = password
        .map(|p| p.expose_secret().to_string())
        .unwrap_or_else(crate::auth::new_password);
    let created = new_account(
        store.as_ref(),
        NewAccount {
            name: "admin".into(),
            realm: Some("localhost".into()),
            parent: None,
            tree: Vec::new(),
            doc: Default::default(),
            admin: Some(("admin".into(), password.clone())),
        },
    )
    .await;
    match created {
        Ok(c) => Ok(Some(Bootstrap {
            account_id: c.account.id,
            password: password.into(),
            api_key: c.api_key.into(),
        })),
        // Another process created the first account at the same moment.
        Err(store::StoreError::Conflict | store::StoreError::Taken(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl App {
    pub async fn build(args: &ServeArgs) -> anyhow::Result<Self> {
        let store = store::open(&args.store.database_url)
            .await
            .with_context(|| format!("opening {}", args.store.redacted()))?;
        let state = build_state(store, args).await?;
        let bootstrap = bootstrap_admin(&state.store, args.admin_password.clone()).await?;
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let metrics_listener = match args.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?,
            ),
            None => None,
        };
        let config = state.config.clone();
        let limits = crate::server::ServerLimits {
            max_connections: crate::server::connection_budget(args.max_connections),
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            shutdown_grace: args.shutdown_grace,
            error_page: Some(Arc::new(move |status| {
                api::connection_error_body(&config, status)
            })),
        };
        Ok(Self {
            listener,
            metrics_listener,
            limits,
            router: api::ApiService::new(state.clone()),
            state,
            bootstrap,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the metrics listener, when `--metrics-listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for at most the
    /// grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Long-lived responses (change-feed streams) end when the stop begins, so the grace
        // period goes to requests that can finish.
        let stopping = self.state.stopping.clone();
        if let Some(listener) = self.metrics_listener {
            // Scrapes are short; the listener goes with the process.
            let mut stopped = stopping.subscribe();
            tokio::spawn(async move {
                let served = axum::serve(listener, api::metrics_router())
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "the metrics listener failed");
                }
            });
        }
        let shutdown = async move {
            shutdown.await;
            stopping.send_replace(true);
        };
        crate::server::serve(self.listener, self.router, self.limits, shutdown).await
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested, finishing in-flight requests");
}
