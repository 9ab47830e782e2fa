//! `/v2/accounts/{A}/imports[/{JOB}]` and `/v2/accounts/{A}/export`: imports run as jobs
//! (the dump is streamed to a temporary file, then imported in the background), followed by
//! polling or server-sent events; the export streams NDJSON. Handlers parse and reply; the
//! work is in [`crate::transfer`].

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::schema::SchemaError;
use crate::transfer::import::{OnConflict, Options};
use crate::transfer::jobs::{progress_event, Status};

use super::error::{ApiError, ApiResult};
use super::extract::AccountScope;
use super::reply::{raw, Reply};
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/accounts/{account_id}/imports",
            get(list_jobs).put(start),
        )
        .route("/v2/accounts/{account_id}/imports/{job_id}", get(job))
        .route("/v2/accounts/{account_id}/export", get(export))
}

/// Whether a path is an import upload (its body is streamed by the handler, not read by the
/// envelope layer).
pub fn is_import_upload(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let mut segments = path.split('/');
    matches!(
        (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next()
        ),
        (
            Some(""),
            Some("v2"),
            Some("accounts"),
            Some(_),
            Some("imports"),
            None
        )
    )
}

/// The request body of an import, handed over by the envelope layer.
#[derive(Clone)]
pub struct Upload(Arc<Mutex<Option<Body>>>);

impl Upload {
    pub fn new(body: Body) -> Self {
        Self(Arc::new(Mutex::new(Some(body))))
    }

    fn take(&self) -> Option<Body> {
        self.0.lock().ok()?.take()
    }
}

fn bad_value(field: &str, message: &str, value: &str) -> ApiError {
    ApiError::invalid_field(SchemaError::at(field, "enum", message).with("value", json!(value)))
}

/// `PUT /v2/accounts/{A}/imports`: the body is a dump (callflowd's NDJSON, or Kazoo's
/// `_all_docs?include_docs=true` JSON); every document goes into account A. Query:
/// `dry_run=true`, `on_conflict=fail|skip|replace`, `commit_message`. Answers 202 with the
/// job, and `Location` naming it.
#[tracing::instrument(skip_all, fields(account_id = %scope.account.id))]
async fn start(
    State(state): State<AppState>,
    scope: AccountScope,
    upload: Option<Extension<Upload>>,
) -> ApiResult<Response> {
    let on_conflict = match scope.ctx.query("on_conflict") {
        None => OnConflict::Fail,
        Some(text) => text
            .parse::<OnConflict>()
            .map_err(|message| bad_value("on_conflict", &message, text))?,
    };
    let writer = scope.writer()?;
    let Some(body) = upload.and_then(|Extension(u)| u.take()) else {
        return Err(ApiError::faulty_request(
            "the request has no body to import",
        ));
    };
    let cap = state.config.max_import_bytes;
    // Spooled to a file: the job reads it at its own pace, and memory stays flat.
    let file = tempfile::NamedTempFile::new().map_err(ApiError::internal)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(ApiError::internal)?);
    let mut size: u64 = 0;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(json!({"message": "the request body could not be read"})),
            )
        })?;
        if let Ok(chunk) = frame.into_data() {
            size += chunk.len() as u64;
            if size > cap {
                let error = SchemaError::at(
                    "file",
                    "maxSize",
                    format!("Payload or Files must not be more than {cap} bytes"),
                )
                .with("target", json!(cap));
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "validation error",
                    Some(crate::schema::SchemaErrors::single(error).to_json()),
                ));
            }
            out.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
    }
    out.flush().await.map_err(ApiError::internal)?;
    drop(out);
    if size == 0 {
        return Err(ApiError::faulty_request(
            "the request has no body to import",
        ));
    }
    let opts = Options {
        account: Some(scope.account.id.clone()),
        create_accounts: false,
        dry_run: writer.dry_run,
        on_conflict,
        message: writer.message.clone().unwrap_or_else(|| "import".into()),
        request_id: writer.request_id.clone(),
        auth_account_id: Some(writer.auth_account_id.clone()),
        auth_user_id: writer.auth_user_id.clone(),
        ..Options::default()
    };
    let job = state
        .imports
        .start(state.pipeline.clone(), file, size, opts);
    let view = job.view();
    let location = format!("/v2/accounts/{}/imports/{}", view.account_id, view.id);
    Ok(
        Reply::ok(serde_json::to_value(&view).map_err(ApiError::internal)?)
            .with_status(StatusCode::ACCEPTED)
            .with_header(header::LOCATION, location)
            .into_response(),
    )
}

/// `GET /v2/accounts/{A}/imports`: this process's import jobs of the account, newest first
/// (without their problem lists).
async fn list_jobs(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Reply> {
    let rows: Vec<Value> = state
        .imports
        .of_account(&scope.account.id)
        .iter()
        .map(progress_event)
        .collect();
    Ok(Reply::ok(Value::Array(rows)))
}

/// `GET /v2/accounts/{A}/imports/{JOB}`: the job's state, counts and per-document problems;
/// with `Accept: text/event-stream` (or `feed=sse`), its progress as server-sent events
/// (`progress` after each batch, then one `done` with the whole job) until it ends.
async fn job(
    State(state): State<AppState>,
    Path((_, job_id)): Path<(String, String)>,
    scope: AccountScope,
) -> ApiResult<Response> {
    let Some(job) = state.imports.get(&scope.account.id, &job_id) else {
        return Err(ApiError::bad_identifier(&job_id));
    };
    if !super::reply::wants_event_stream(&scope.ctx) {
        return Ok(
            Reply::ok(serde_json::to_value(job.view()).map_err(ApiError::internal)?)
                .into_response(),
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(16);
    let mut changed = job.subscribe();
    let mut stopping = state.stopping.subscribe();
    tokio::spawn(async move {
        loop {
            let view = job.view();
            let done = view.status != Status::Running;
            let event = if done {
                Event::default()
                    .event("done")
                    .data(serde_json::to_string(&view).unwrap_or_default())
            } else {
                Event::default()
                    .event("progress")
                    .data(progress_event(&view).to_string())
            };
            if tx.send(Ok(event)).await.is_err() || done {
                return;
            }
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => return,
                _ = tx.closed() => return,
                r = changed.changed() => if r.is_err() { return },
            }
            // At most a few events a second, whatever the batch rate.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    Ok(super::reply::event_stream(rx))
}

/// `GET /v2/accounts/{A}/export`: the account's documents as NDJSON (`application/x-ndjson`),
/// streamed; `type` (repeatable or comma-separated) and `include_deleted=true` as the command
/// line's `--type` and `--include-deleted`.
async fn export(State(state): State<AppState>, scope: AccountScope) -> ApiResult<Response> {
    let types: Vec<String> = scope
        .ctx
        .query_pairs
        .iter()
        .filter(|(k, _)| k == "type")
        .flat_map(|(_, v)| v.split(',').map(str::trim).map(str::to_string))
        .filter(|t| !t.is_empty())
        .collect();
    crate::transfer::export::check_types(&types)
        .map_err(|message| bad_value("type", &message, &types.join(",")))?;
    let opts = crate::transfer::export::ExportOptions {
        account: Some(scope.account.id.clone()),
        types,
        include_deleted: scope.ctx.flag("include_deleted") == Some(true),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let store = state.store.clone();
    tokio::spawn(async move {
        if let Err(error) = crate::transfer::export::export(&store, &opts, tx).await {
            tracing::warn!(%error, "export stream ended early");
        }
    });
    let lines = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        |mut line| {
            line.push('\n');
            Ok::<_, Infallible>(bytes::Bytes::from(line))
        },
    );
    let mut response = Body::from_stream(lines).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"export.ndjson\""),
    );
    Ok(raw(response))
}
