//! The outbound half of Kazoo's envelope as handlers produce it: a [`Reply`] (status, the
//! handler's part of the body, extra headers), carried to the envelope layer as an
//! [`Envelope`] extension. A response marked [`Raw`] (a text diff, an event stream) keeps its
//! own body and content type.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// A handler's part of the response body (`data`, `status`, `revision`, paging keys...).
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// Shared, so a reply kept in memory is served without copying it.
    pub body: Arc<Map<String, Value>>,
    /// The `ETag` header's value: the revision, quoted.
    pub etag: Option<Arc<str>>,
    /// `data` already serialised (then `body` has no `data`): written into the response as it
    /// is, so a listing is serialised once, and a cached one never again.
    pub data_text: Option<Arc<str>>,
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
            envelope: Envelope {
                body: Arc::new(body),
                ..Envelope::default()
            },
            headers: Vec::new(),
        }
    }

    /// 200 with `data` given as JSON text (see [`Envelope::data_text`]).
    pub fn ok_serialised(data: Arc<str>) -> Self {
        let mut body = Map::new();
        body.insert("status".into(), json!("success"));
        Self {
            status: StatusCode::OK,
            envelope: Envelope {
                body: Arc::new(body),
                etag: None,
                data_text: Some(data),
            },
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
        Arc::make_mut(&mut self.envelope.body).insert("revision".into(), json!(revision));
        self.envelope.etag = Some(format!("\"{revision}\"").into());
        self
    }

    pub fn with_field(mut self, key: &str, value: Value) -> Self {
        Arc::make_mut(&mut self.envelope.body).insert(key.into(), value);
        self
    }

    /// The call tests a write ran, under an envelope key Kazoo clients ignore.
    pub fn with_call_tests(self, tests: Option<Value>) -> Self {
        match tests {
            Some(t) => self.with_field("callflow_tests", t),
            None => self,
        }
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

/// Marks a response whose body is not an envelope (text, an event stream): the envelope layer
/// passes it through, adding only the request-wide headers.
#[derive(Debug, Clone, Copy)]
pub struct Raw;

/// A response sent as it is (see [`Raw`]).
pub fn raw(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(Raw);
    response
}

/// Server-sent events from `events` until it closes: a comment every 15 s keeps proxies from
/// closing the stream, and nothing caches or buffers it. Sent as it is (see [`Raw`]).
pub fn event_stream(
    events: tokio::sync::mpsc::Receiver<
        Result<axum::response::sse::Event, std::convert::Infallible>,
    >,
) -> Response {
    use axum::response::sse::{KeepAlive, Sse};
    let stream = Sse::new(tokio_stream::wrappers::ReceiverStream::new(events))
        .keep_alive(KeepAlive::default());
    let mut response = stream.into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    // nginx: pass events through as they come instead of buffering the response.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    raw(response)
}

/// Whether the request asks for server-sent events (`feed=sse`, or `Accept:
/// text/event-stream`).
pub fn wants_event_stream(ctx: &super::request::ReqCtx) -> bool {
    ctx.query("feed") == Some("sse")
        || ctx
            .header("accept")
            .is_some_and(|a| a.contains("text/event-stream"))
}
