//! The one mapping from failures to Kazoo's error envelope.
//!
//! Every error response carries `status: "error"`, `error` (the HTTP code as a string),
//! `message` (Kazoo's short label) and, when Kazoo has detail, `data`. The request-wide keys
//! (`request_id`, `timestamp`, ...) are added by the envelope layer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::schema::{SchemaError, SchemaErrors};
use crate::store::{KeyKind, StoreError};

use super::reply::Envelope;

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// An answer in Kazoo's terms: the client's mistake, or a condition the client can act on.
    Kazoo(KazooError),
    /// Our own failure. Logged once, with its whole cause chain, where it becomes a response;
    /// the client sees only 500 `datastore_fault`.
    Internal(anyhow::Error),
}

/// An error response as Kazoo shapes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KazooError {
    pub status: StatusCode,
    /// Kazoo's label (`validation error`, `bad_identifier`, `invalid_credentials`, ...).
    pub message: String,
    pub data: Option<Value>,
    /// Seconds to send in `Retry-After` (429).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What the client sees of an internal failure.
fn internal_answer() -> KazooError {
    KazooError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: "datastore_fault".into(),
        data: Some(json!({"message": "unknown failure"})),
        retry_after: None,
    }
}

impl ApiError {
    pub fn new(status: StatusCode, message: &str, data: Option<Value>) -> Self {
        Self::Kazoo(KazooError {
            status,
            message: message.to_string(),
            data,
            retry_after: None,
        })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Kazoo(e) => e.status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Kazoo's label.
    pub fn message(&self) -> &str {
        match self {
            Self::Kazoo(e) => &e.message,
            Self::Internal(_) => "datastore_fault",
        }
    }

    /// The `data` of the error envelope (an internal failure shows none of its detail).
    pub fn data(&self) -> Option<&Value> {
        match self {
            Self::Kazoo(e) => e.data.as_ref(),
            Self::Internal(_) => None,
        }
    }

    /// The one place an error becomes what the client sees: an internal failure is logged
    /// here, with its cause chain, and answered without detail.
    pub fn into_answer(self) -> KazooError {
        match self {
            Self::Kazoo(e) => e,
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                internal_answer()
            }
        }
    }

    /// 400 with Kazoo's per-field error map.
    pub fn validation(errors: SchemaErrors) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "validation error",
            Some(errors.to_json()),
        )
    }

    /// 400 for one field and rule.
    pub fn invalid_field(error: SchemaError) -> Self {
        Self::validation(SchemaErrors::single(error))
    }

    /// 404 for an unknown or deleted document.
    pub fn bad_identifier(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "bad_identifier",
            Some(json!({"cause": id, "message": "bad identifier"})),
        )
    }

    /// 404 for an account id of the wrong length (Kazoo's label has a space here).
    pub fn invalid_account_id(id: &str) -> Self {
        let message = if id.is_empty() {
            "missing account_id".to_string()
        } else {
            format!("invalid account_id '{id}'")
        };
        Self::new(
            StatusCode::NOT_FOUND,
            "bad identifier",
            Some(json!({ "message": message })),
        )
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            Some(json!({"message": "not found"})),
        )
    }

    /// 404 Kazoo uses for bad paging parameters.
    pub fn faulty_request(message: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "faulty_request",
            Some(json!({ "message": message })),
        )
    }

    /// 401: no credentials, or wrong ones.
    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            Some(json!({"message": "invalid credentials"})),
        )
    }

    /// 401: a token that is unknown, forged or expired.
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid credentials",
            Some(json!({})),
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            Some(json!({"message": "forbidden"})),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_method",
            Some(json!({"message": "method not allowed"})),
        )
    }

    pub fn conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "datastore_conflict",
            Some(json!({"message": "conflicting documents"})),
        )
    }

    pub fn gone_v1() -> Self {
        Self::new(
            StatusCode::GONE,
            "gone",
            Some(json!(
                "API version 1 is not supported. Please upgrade your code to use version 2."
            )),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some(
                json!({"message": format!("content type {content_type} is not accepted; send application/json")}),
            ),
        )
    }

    /// 406: the `Accept` header allows nothing callflowd can send.
    pub fn not_acceptable() -> Self {
        Self::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            Some(json!({"message": "only application/json (or JSONP) can be sent"})),
        )
    }

    /// 412: `If-Match` names a revision that is not the current one.
    pub fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            Some(json!({"message": "the revision in If-Match is not the current one"})),
        )
    }

    /// 408: the request body did not arrive in time.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            Some(json!({"message": "the request body was not received in time"})),
        )
    }

    /// 429: a token bucket is empty; `retry_after` seconds until it holds enough again.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::Kazoo(KazooError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "too_many_requests".into(),
            data: Some(json!({"message": "too many requests"})),
            retry_after: Some(retry_after_secs.max(1)),
        })
    }

    /// 500 for a missing schema (Kazoo's text, including the trailing dot).
    pub fn schema_missing(name: &str) -> Self {
        let message = format!("schema {name} not found.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            &message,
            Some(json!({ "message": message })),
        )
    }

    /// 500 for our own failures: logged in full where answered, reported without detail.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::Error::msg(error.to_string()))
    }

    /// 503 when the store cannot be reached.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "datastore_unreachable",
            Some(json!({"message": "datastore timeout"})),
        )
    }
}

impl KazooError {
    /// The envelope fields this error contributes.
    pub fn envelope(&self) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(data) = &self.data {
            body.insert("data".into(), data.clone());
        }
        body.insert("status".into(), json!("error"));
        body.insert("error".into(), json!(self.status.as_u16().to_string()));
        body.insert("message".into(), json!(self.message));
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let answer = self.into_answer();
        let mut response = answer.status.into_response();
        if let Some(secs) = answer.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response.extensions_mut().insert(Envelope {
            body: answer.envelope().into(),
            ..Envelope::default()
        });
        response
    }
}

impl From<crate::documents::pipeline::Error> for ApiError {
    fn from(error: crate::documents::pipeline::Error) -> Self {
        use crate::documents::pipeline::Error;
        match error {
            Error::Invalid(errors) => Self::validation(errors),
            Error::NotFound(id) => Self::bad_identifier(&id),
            Error::Stale => Self::precondition_failed(),
            Error::SchemaMissing(name) => Self::schema_missing(name),
            Error::Busy => Self::too_many_requests(1),
            Error::TestsFailed(data) => {
                Self::new(StatusCode::BAD_REQUEST, "callflow_tests_failed", Some(data))
            }
            Error::NoRevision(n) => Self::new(
                StatusCode::NOT_FOUND,
                "bad_identifier",
                Some(json!({"cause": n, "message": "revision not found"})),
            ),
            Error::WrongType(n) => Self::invalid_field(
                SchemaError::at(
                    "revision",
                    "enum",
                    "the revision is of another document type",
                )
                .with("cause", json!(n)),
            ),
            Error::Store(e) => e.into(),
            Error::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<SchemaErrors> for ApiError {
    fn from(errors: SchemaErrors) -> Self {
        Self::validation(errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found(),
            StoreError::Conflict => Self::conflict(),
            StoreError::Unique(conflicts) => {
                // Kazoo reports one conflict per field: the last row its view returned.
                let last = |kind| conflicts.iter().rev().find(|c| c.kind == kind).cloned();
                let errors = [last(KeyKind::Number), last(KeyKind::Pattern)]
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let (field, what) = match c.kind {
                            KeyKind::Number => ("numbers", "Number"),
                            KeyKind::Pattern => ("patterns", "Pattern"),
                        };
                        let message = format!(
                            "{what} {} exists in callflow {} {}",
                            c.value, c.callflow_id, c.name
                        );
                        SchemaError::at(field, "unique", message).with("cause", json!(c.value))
                    })
                    .collect();
                Self::validation(SchemaErrors(errors))
            }
            StoreError::Taken(taken) => Self::validation(SchemaErrors(
                taken
                    .into_iter()
                    .map(|(field, value)| {
                        let what = if field == "realm" { "realm" } else { "name" };
                        SchemaError::at(field, "unique", format!("Account {what} already in use"))
                            .with("cause", json!(value))
                    })
                    .collect(),
            )),
            StoreError::KeyTaken(conflicts) => Self::validation(SchemaErrors(
                conflicts
                    .into_iter()
                    .map(|c| {
                        SchemaError::at(
                            &c.kind,
                            "unique",
                            format!("{} is already used by {}", c.value, c.doc_id),
                        )
                        .with("cause", json!(c.value))
                    })
                    .collect(),
            )),
            StoreError::TooManyPatterns { limit } => Self::invalid_field(
                SchemaError::at(
                    "patterns",
                    "maxItems",
                    format!("The account may hold at most {limit} patterns"),
                )
                .with("target", json!(limit)),
            ),
            StoreError::Unavailable(e) => {
                tracing::error!(error = %e, "store unreachable");
                Self::unavailable()
            }
            StoreError::UniqueViolation(e) | StoreError::Other(e) => Self::Internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_failure_is_answered_without_its_detail() {
        let cause = anyhow::anyhow!("disk on fire").context("saving callflow 123");
        let e = ApiError::Internal(cause);
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let answer = e.into_answer();
        let body = serde_json::to_string(&answer.envelope()).unwrap();
        assert!(!body.contains("fire") && !body.contains("123"), "{body}");
        assert_eq!(answer.message, "datastore_fault");
    }

    #[test]
    fn store_failures_become_internal_and_outages_503() {
        let e = ApiError::from(StoreError::Other(anyhow::anyhow!("boom")));
        assert!(matches!(e, ApiError::Internal(_)));
        let e = ApiError::from(StoreError::Unavailable(anyhow::anyhow!("gone")));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.message(), "datastore_unreachable");
    }
}
