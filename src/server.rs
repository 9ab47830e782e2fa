//! The HTTP server loop: connections accepted within a budget, idle and slow clients timed out,
//! and a stop that finishes in bounded time.
//!
//! Owns: the accept loop, one task per connection (hyper, HTTP/1.1 and HTTP/2), the registry
//! of open connections and the sweeper that closes the ones that hold a descriptor without
//! using it. Must not know about the API: it serves whatever `Router` it is given, adding the
//! peer address as axum's `ConnectInfo`.
//!
//! The rules, each configurable (see `callflowd serve --help`):
//! - a request head must arrive within the header timeout once its first byte has (slowloris);
//! - a connection with no request in progress is closed after the idle timeout;
//! - at most `max_connections` are open (kept below the descriptor limit). When the budget is
//!   full, a new connection replaces the one that has served nothing for the longest time (not
//!   one serving a request), so a flood of idle or half-open sockets cannot lock out a client
//!   that is using its connection;
//! - on shutdown, no new connection is accepted, idle ones close at once, busy ones get the
//!   grace period to finish, then are dropped.
//!
//! A request is in progress from its head until its response body has been sent, so a
//! streamed response (the change feed's server-sent events) is never taken for an idle
//! connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// The body (JSON) of an error answered before a request reached the router: a malformed
/// request line or headers (400), oversized headers (431), a URI too long (414).
pub type ErrorPage = Arc<dyn Fn(axum::http::StatusCode) -> String + Send + Sync>;

/// Connection limits and timeouts.
#[derive(Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// Time allowed for a request head, from its first byte.
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Time in-flight requests get to finish after a stop is requested.
    pub shutdown_grace: Duration,
    /// What hyper's own bodiless error answers are replaced with (`None`: left as they are).
    pub error_page: Option<ErrorPage>,
}

impl std::fmt::Debug for ServerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLimits")
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("error_page", &self.error_page.is_some())
            .finish()
    }
}

/// How often the sweeper looks for connections to close.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// One open connection, as the sweeper and the accept loop see it.
struct ConnState {
    /// Requests being served on it now.
    busy: AtomicUsize,
    /// When the last request ended (or the connection opened), in ms since the server started.
    last_active: AtomicU64,
    /// When bytes of a request head started arriving while nothing was in progress (ms since
    /// start, plus one so zero means none).
    head_started: AtomicU64,
    /// Requests handed to the service, and final (non-1xx) response heads written: equal when
    /// no request is waiting for its answer, so a head written then is hyper's own answer to
    /// a request it could not parse.
    requests: AtomicU64,
    heads_written: AtomicU64,
    close: Notify,
}

struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    epoch: Instant,
    error_page: Option<ErrorPage>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Closes the open connection that has served nothing for the longest time (a socket
    /// opened and left idle or half-sent counts from when it opened; a client between requests
    /// from its last answer). `false` when every one is busy.
    fn evict_one(&self) -> bool {
        let mut conns = self.lock();
        let victim = conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| c.last_active.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        match victim.and_then(|id| conns.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                metrics::counter!("callflowd_connections_closed_total", "reason" => "evicted")
                    .increment(1);
                true
            }
            None => false,
        }
    }

    /// Closes connections past their header or idle timeout.
    fn sweep(&self, limits: &ServerLimits) {
        let now = self.now_ms();
        let header = limits.header_timeout.as_millis() as u64;
        let idle = limits.idle_timeout.as_millis() as u64;
        let mut conns = self.lock();
        conns.retain(|_, c| {
            if c.busy.load(Ordering::Acquire) > 0 {
                return true;
            }
            let head = c.head_started.load(Ordering::Acquire);
            let (expired, reason) = if head > 0 {
                (now.saturating_sub(head - 1) > header, "header_timeout")
            } else {
                (
                    now.saturating_sub(c.last_active.load(Ordering::Acquire)) > idle,
                    "idle_timeout",
                )
            };
            if expired {
                c.close.notify_one();
                metrics::counter!("callflowd_connections_closed_total", "reason" => reason)
                    .increment(1);
            }
            !expired
        });
    }
}

/// A socket that notes when a new request head starts arriving, and replaces hyper's bare
/// answer to an unparsable request with an envelope.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    error_page: Option<ErrorPage>,
    /// Bytes still to send in place of what hyper wrote (and was told was sent).
    replacement: Option<(Vec<u8>, usize)>,
}

impl Tracked {
    /// Looks at bytes hyper is about to write: `Some(replacement)` when they are hyper's own
    /// error answer (a 4xx head while no request awaits an answer).
    fn inspect(&self, buf: &[u8]) -> Option<Vec<u8>> {
        let status = final_head_status(buf)?;
        let answered = self.state.heads_written.load(Ordering::Acquire);
        let awaiting = self.state.requests.load(Ordering::Acquire) > answered;
        if awaiting || !(400..500).contains(&status) {
            return None;
        }
        let page = self.error_page.as_ref()?;
        let status = axum::http::StatusCode::from_u16(status).ok()?;
        metrics::counter!("callflowd_unparsable_requests_total", "status" => status.as_str().to_string())
            .increment(1);
        let body = page(status);
        Some(
            format!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                body.len(),
                body
            )
            .into_bytes(),
        )
    }

    /// Sends what is left of a replacement; ready once it is all out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.replacement {
            if *sent >= bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The status of a final (not 1xx) response head at the start of `buf`.
fn final_head_status(buf: &[u8]) -> Option<u16> {
    head_status(buf).filter(|s| *s >= 200)
}

/// The status of an HTTP/1 response head at the start of `buf`.
fn head_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let state = &this.state;
            if state.busy.load(Ordering::Acquire) == 0
                && state.head_started.load(Ordering::Acquire) == 0
            {
                state
                    .head_started
                    .store(this.registry.now_ms() + 1, Ordering::Release);
            }
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_replacement(cx))?;
        if let Some(bytes) = this.inspect(buf) {
            this.state.heads_written.fetch_add(1, Ordering::AcqRel);
            this.replacement = Some((bytes, 0));
            // hyper's bytes count as written; the envelope goes out instead.
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) && final_head_status(buf).is_some() {
            this.state.heads_written.fetch_add(1, Ordering::AcqRel);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_replacement(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(bytes) = this.inspect(first) {
                this.state.heads_written.fetch_add(1, Ordering::AcqRel);
                this.replacement = Some((bytes, 0));
                let _ = this.poll_replacement(cx)?;
                return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
            }
        }
        let head = bufs
            .iter()
            .find(|b| !b.is_empty())
            .is_some_and(|b| final_head_status(b).is_some());
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if head && matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.state.heads_written.fetch_add(1, Ordering::AcqRel);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks a request in progress for as long as it lives (dropped futures included).
struct BusyGuard {
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl BusyGuard {
    fn new(state: Arc<ConnState>, registry: Arc<Registry>) -> Self {
        state.busy.fetch_add(1, Ordering::AcqRel);
        state.head_started.store(0, Ordering::Release);
        Self { state, registry }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.state
            .last_active
            .store(self.registry.now_ms(), Ordering::Release);
        self.state.head_started.store(0, Ordering::Release);
        self.state.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request marked busy until it has been sent or dropped.
struct GuardedBody {
    inner: axum::body::Body,
    _guard: BusyGuard,
}

impl http_body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What the server runs for each request: the API ([`crate::api::ApiService`]) or any axum
/// router.
pub trait HttpService:
    tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops within the grace period.
pub async fn serve<R: HttpService>(
    listener: TcpListener,
    router: R,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = Arc::new(Registry {
        conns: Mutex::new(BTreeMap::new()),
        epoch: Instant::now(),
        error_page: limits.error_page.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = {
        let (registry, limits) = (registry.clone(), limits.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                registry.sweep(&limits);
                metrics::gauge!("callflowd_connections_open").set(registry.len() as f64);
            }
        })
    };
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset while queued: back
                // off instead of spinning; the sweeper frees descriptors.
                tracing::warn!(%error, "accept failed");
                metrics::counter!("callflowd_accept_errors_total").increment(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if registry.len() >= limits.max_connections && !registry.evict_one() {
            // Every connection is serving a request: refuse this one rather than run out of
            // descriptors.
            metrics::counter!("callflowd_connections_refused_total").increment(1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let state = Arc::new(ConnState {
            busy: AtomicUsize::new(0),
            last_active: AtomicU64::new(registry.now_ms()),
            head_started: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            heads_written: AtomicU64::new(0),
            close: Notify::new(),
        });
        registry.lock().insert(next_id, state.clone());
        tokio::spawn(serve_connection(
            next_id,
            stream,
            peer,
            state,
            registry.clone(),
            router.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    tracing::info!(
        open = registry.len(),
        grace = ?limits.shutdown_grace,
        "no longer accepting connections; letting in-flight requests finish"
    );
    let _ = stop_tx.send(true);
    // Connections get most of the grace period; the rest is for closing the store.
    let deadline = Instant::now() + limits.shutdown_grace.mul_f64(0.8);
    while registry.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sweeper.abort();
    let left = registry.len();
    if left > 0 {
        tracing::warn!(
            connections = left,
            "grace period over; dropping connections still open"
        );
        for (_, c) in std::mem::take(&mut *registry.lock()) {
            c.close.notify_one();
        }
    }
    Ok(())
}

async fn serve_connection<R: HttpService>(
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    router: R,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Tracked {
        inner: stream,
        state: state.clone(),
        registry: registry.clone(),
        error_page: registry.error_page.clone(),
        replacement: None,
    });
    let service = {
        let (state, registry) = (state.clone(), registry.clone());
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            state.requests.fetch_add(1, Ordering::AcqRel);
            let guard = BusyGuard::new(state.clone(), registry.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(req.map(axum::body::Body::new)).await;
                // The request stays in progress until its body is sent: a long-lived body
                // (a change-feed stream) is not an idle connection.
                response.map(|r| {
                    r.map(|body| {
                        axum::body::Body::new(GuardedBody {
                            inner: body,
                            _guard: guard,
                        })
                    })
                })
            }
        })
    };
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                break;
            }
            _ = state.close.notified() => {
                // A request may have started between the decision and now: let it finish
                // and close after it instead of cutting it.
                if state.busy.load(Ordering::Acquire) == 0 {
                    break;
                }
                if !stopping {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    registry.lock().remove(&id);
}

/// Raises the soft limit on open descriptors to the hard limit and returns the connection
/// budget it leaves: `wanted`, capped below the limit with room for the database, logs and
/// the process's own files.
pub fn connection_budget(wanted: usize) -> usize {
    const RESERVED: u64 = 128;
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-files limit");
            return wanted;
        }
    };
    let budget = soft.saturating_sub(RESERVED).max(16);
    let budget = usize::try_from(budget).unwrap_or(usize::MAX).min(wanted);
    if budget < wanted {
        tracing::info!(
            open_files_limit = soft,
            max_connections = budget,
            "connection budget lowered to fit the open-files limit"
        );
    }
    budget
}

#[cfg(test)]
mod tests {
    use super::head_status;

    #[test]
    fn response_heads_are_recognised() {
        assert_eq!(
            head_status(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            Some(431)
        );
        assert_eq!(head_status(b"HTTP/1.0 400 Bad Request\r\n"), Some(400));
        assert_eq!(head_status(b"HTTP/1.1 100 Continue\r\n"), Some(100));
        assert_eq!(head_status(b"{\"data\":1}"), None);
        assert_eq!(head_status(b"HTTP/1.1"), None);
    }
}
