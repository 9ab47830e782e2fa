//! The published contract: an OpenAPI 3.1 document of every route the router serves, served at
//! `GET /v2/openapi.json` (no credentials needed).
//!
//! Owns the catalogue of operations ([`catalogue`]) and its rendering with `utoipa`'s OpenAPI
//! model. The per-document-type routes are generated from [`crate::documents::TYPES`], exactly
//! as `documents.rs` and `history.rs` generate them, so a new type is documented without an edit
//! here. Request bodies are linked to the Kazoo schema the server validates them with (as served
//! by `/v2/schemas/{name}`), never copied. Must not change what a route does: the tests in
//! `tests/api/openapi.rs` check the document against the real router in both directions.

use std::sync::OnceLock;

use axum::http::Method;
use serde_json::{json, Value};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::external_docs::ExternalDocsBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
};

use axum::extract::State;

use crate::documents::{DocType, ENTRY, TYPES};
use crate::schema::SchemaSet;

use super::AppState;

/// What a successful answer carries in `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// One document (`data` is an object; `revision` and `ETag` when it is stored).
    Document,
    /// A listing (`data` is an array; paging keys beside it).
    List,
    /// Any JSON value in `data` (reports, summaries).
    Any,
    /// Not an envelope: the body is the document itself or text (`/metrics`, `/docs`).
    Raw(&'static str),
}

/// What a request body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// `data` is checked against this Kazoo schema (served at `/v2/schemas/{name}`).
    Kazoo(&'static str),
    /// `data` is an object in callflowd's own terms (described in the summary).
    Object,
    /// Not an envelope: a dump (callflowd's NDJSON export or Kazoo's `_all_docs` JSON).
    Dump,
}

/// A query-string parameter.
#[derive(Debug, Clone)]
pub struct Query {
    pub name: &'static str,
    pub kind: Type,
    pub required: bool,
    pub description: &'static str,
}

const fn req(name: &'static str, kind: Type, description: &'static str) -> Query {
    Query {
        name,
        kind,
        required: true,
        description,
    }
}

const fn q(name: &'static str, kind: Type, description: &'static str) -> Query {
    Query {
        name,
        kind,
        required: false,
        description,
    }
}

/// One operation the router serves.
#[derive(Debug, Clone)]
pub struct Op {
    pub method: Method,
    /// The route template, as the router spells it (`/v2/accounts/{account_id}/callflows`).
    pub path: String,
    pub id: String,
    pub tag: &'static str,
    pub summary: String,
    pub body: Body,
    /// The success status (`200`, or `201` for creations and logins).
    pub status: u16,
    /// A second success status some calls answer (a publish that creates: 201).
    pub also: Option<u16>,
    pub answer: Answer,
    pub query: Vec<Query>,
    /// Served without credentials.
    pub public: bool,
    /// Authenticated by the switch's shared secret (`Authorization: Bearer`), not a token.
    pub switch: bool,
    /// For a creation: the operation ids its new document can be fetched, changed and deleted
    /// with (`data.id` becomes the id parameter named here).
    pub links: Option<(&'static str, Vec<String>)>,
}

impl Op {
    fn new(
        method: Method,
        path: impl Into<String>,
        id: impl Into<String>,
        tag: &'static str,
    ) -> Self {
        Self {
            method,
            path: path.into(),
            id: id.into(),
            tag,
            summary: String::new(),
            body: Body::None,
            status: 200,
            also: None,
            answer: Answer::Document,
            query: Vec::new(),
            public: false,
            switch: false,
            links: None,
        }
    }

    fn summary(mut self, text: impl Into<String>) -> Self {
        self.summary = text.into();
        self
    }

    fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    fn created(mut self) -> Self {
        self.status = 201;
        self
    }

    fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }

    fn query(mut self, query: impl IntoIterator<Item = Query>) -> Self {
        self.query.extend(query);
        self
    }

    fn public(mut self) -> Self {
        self.public = true;
        self
    }

    fn switch(mut self) -> Self {
        self.switch = true;
        self
    }
}

const PAGING: [Query; 3] = [
    q("page_size", Type::Integer, "Rows per page (at least 1)."),
    q(
        "start_key",
        Type::String,
        "Where the page starts: a previous answer's `next_start_key`.",
    ),
    q(
        "paginate",
        Type::Boolean,
        "`false` answers every row at once.",
    ),
];

const ACCOUNT: &str = "/v2/accounts/{account_id}";

/// List, create, fetch, replace, patch and delete of one document collection.
fn crud(
    ops: &mut Vec<Op>,
    collection: &str,
    id_param: &'static str,
    name: &str,
    tag: &'static str,
    schema: &'static str,
    delete_all: bool,
) {
    let item = format!("{collection}/{{{id_param}}}");
    let ids = ["fetch", "replace", "patch", "delete"].map(|a| format!("{name}_{a}"));
    ops.push(
        Op::new(Method::GET, collection, format!("{name}_list"), tag)
            .summary(format!("List the {name} of the account"))
            .answer(Answer::List)
            .query(PAGING),
    );
    let mut create = Op::new(Method::PUT, collection, format!("{name}_create"), tag)
        .summary(format!("Create one of the {name}"))
        .body(Body::Kazoo(schema))
        .created();
    create.links = Some((id_param, ids.to_vec()));
    ops.push(create);
    if delete_all {
        ops.push(
            Op::new(
                Method::DELETE,
                collection,
                format!("{name}_delete_all"),
                tag,
            )
            .summary(format!("Delete all the {name}"))
            .answer(Answer::Any),
        );
    }
    let [fetch, replace, patch, delete] = ids;
    ops.push(Op::new(Method::GET, &item, fetch, tag).summary(format!("Fetch one of the {name}")));
    ops.push(
        Op::new(Method::POST, &item, replace, tag)
            .summary(format!("Replace one of the {name}"))
            .body(Body::Kazoo(schema)),
    );
    ops.push(
        Op::new(Method::PATCH, &item, patch, tag)
            .summary(format!("Merge fields into one of the {name}"))
            .body(Body::Kazoo(schema)),
    );
    ops.push(
        Op::new(Method::DELETE, &item, delete, tag)
            .summary(format!(
                "Delete one of the {name} (soft unless should_soft_delete=false)"
            ))
            .query([q(
                "should_soft_delete",
                Type::Boolean,
                "`false` removes the document and its history for good.",
            )]),
    );
}

/// The revision routes of one document path (`history.rs`'s `document_routes`).
fn revisions(ops: &mut Vec<Op>, base: &str, name: &str) {
    ops.push(
        Op::new(
            Method::GET,
            format!("{base}/revisions"),
            format!("{name}_revisions"),
            "history",
        )
        .summary(format!("List the revisions of one of the {name}"))
        .answer(Answer::List)
        .query([PAGING[0].clone(), PAGING[1].clone()]),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{base}/revisions/{{rev}}"),
            format!("{name}_revision"),
            "history",
        )
        .summary(format!("Fetch one revision of one of the {name}")),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{base}/revisions/{{rev}}/diff"),
            format!("{name}_revision_diff"),
            "history",
        )
        .summary(format!(
            "What one revision of one of the {name} changed (JSON, or text/plain)"
        ))
        .answer(Answer::Any),
    );
    ops.push(
        Op::new(
            Method::PUT,
            format!("{base}/rollback"),
            format!("{name}_rollback"),
            "history",
        )
        .summary(format!(
            "Make an old revision of one of the {name} current again"
        ))
        .body(Body::Object),
    );
}

/// Every operation the router serves, in the order of `api::router`.
pub fn catalogue() -> &'static [Op] {
    static OPS: OnceLock<Vec<Op>> = OnceLock::new();
    OPS.get_or_init(build_catalogue)
}

fn build_catalogue() -> Vec<Op> {
    let mut ops = vec![
        Op::new(Method::GET, "/healthz", "healthz", "service")
            .summary("Whether the store answers (503 datastore_unreachable otherwise)")
            .answer(Answer::Any)
            .public(),
        Op::new(Method::PUT, "/v2/user_auth", "user_auth", "auth")
            .summary("Log in with md5(user:password) credentials and an account name or realm")
            .body(Body::Kazoo("user_auth"))
            .created()
            .public(),
        Op::new(Method::PUT, "/v2/api_auth", "api_auth", "auth")
            .summary("Log in with an account API key")
            .body(Body::Kazoo("api_auth"))
            .created()
            .public(),
        Op::new(Method::GET, "/v2/token_auth", "token_info", "auth")
            .summary("What the token the request carries stands for"),
        Op::new(
            Method::GET,
            "/v2/user_auth/{token}",
            "user_auth_token",
            "auth",
        )
        .summary("The login data again, for the token the request itself carries"),
        Op::new(Method::GET, ACCOUNT, "account_fetch", "accounts").summary("Fetch an account"),
        Op::new(Method::PUT, ACCOUNT, "account_create_child", "accounts")
            .summary("Create a sub-account under this account")
            .body(Body::Kazoo("accounts"))
            .created(),
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/children"),
            "account_children",
            "accounts",
        )
        .summary("The accounts directly below this one")
        .answer(Answer::List),
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/descendants"),
            "account_descendants",
            "accounts",
        )
        .summary("Every account below this one")
        .answer(Answer::List),
    ];
    let callflows = format!("{ACCOUNT}/callflows");
    crud(
        &mut ops,
        &callflows,
        "callflow_id",
        "callflows",
        "callflows",
        "callflows",
        false,
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/search"),
            "search",
            "callflows",
        )
        .summary("Search documents by name or number prefix")
        .answer(Answer::List)
        .query([
            Query {
                required: true,
                ..q("t", Type::String, "The document type (`callflow`).")
            },
            q("q", Type::String, "The view: `name` or `number`."),
            q("v", Type::String, "The prefix to search for."),
        ]),
    );
    // Drafts (drafts.rs).
    ops.push(
        Op::new(
            Method::GET,
            format!("{callflows}/drafts"),
            "drafts_list",
            "drafts",
        )
        .summary("List the callflow drafts of the account")
        .answer(Answer::List),
    );
    let draft = format!("{callflows}/{{callflow_id}}/draft");
    ops.push(
        Op::new(
            Method::PUT,
            format!("{callflows}/drafts"),
            "draft_create",
            "drafts",
        )
        .summary("Start a draft of a callflow that does not exist yet")
        .body(Body::Kazoo("callflows"))
        .created(),
    );
    for (method, id, summary, body) in [
        (
            Method::GET,
            "draft_fetch",
            "Fetch the draft of a callflow",
            Body::None,
        ),
        (
            Method::POST,
            "draft_save",
            "Save the draft of a callflow",
            Body::Kazoo("callflows"),
        ),
        (
            Method::PATCH,
            "draft_patch",
            "Merge fields into the draft of a callflow",
            Body::Kazoo("callflows"),
        ),
        (
            Method::DELETE,
            "draft_discard",
            "Discard the draft of a callflow",
            Body::None,
        ),
    ] {
        let mut op = Op::new(method, &draft, id, "drafts")
            .summary(summary)
            .body(body);
        if id == "draft_save" {
            op.also = Some(201);
        }
        ops.push(op);
    }
    let mut publish = Op::new(
        Method::PUT,
        format!("{draft}/publish"),
        "draft_publish",
        "drafts",
    )
    .summary("Publish the draft: it becomes the live callflow (201 when that creates it)");
    publish.also = Some(201);
    ops.push(publish);
    // History (history.rs).
    ops.push(
        Op::new(Method::GET, format!("{ACCOUNT}/audit"), "audit", "history")
            .summary("Who changed what, newest first")
            .answer(Answer::List)
            .query([
                q("type", Type::String, "Only this document type."),
                q("id", Type::String, "Only this document."),
                q("user_id", Type::String, "Only writes by this user."),
                q(
                    "from",
                    Type::Integer,
                    "Written at or after (Gregorian seconds).",
                ),
                q(
                    "to",
                    Type::Integer,
                    "Written at or before (Gregorian seconds).",
                ),
                q(
                    "start_key",
                    Type::Integer,
                    "A previous answer's `next_start_key`.",
                ),
                q("page_size", Type::Integer, "Rows per page."),
            ]),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/changes"),
            "changes",
            "history",
        )
        .summary("The change feed after a position (JSON, or text/event-stream)")
        .answer(Answer::List)
        .query([
            q("since", Type::Integer, "The feed position to read after."),
            q("limit", Type::Integer, "Changes per answer."),
        ]),
    );
    revisions(&mut ops, &format!("{callflows}/{{doc_id}}"), "callflows");
    for ty in TYPES {
        revisions(
            &mut ops,
            &format!("{ACCOUNT}/{}/{{doc_id}}", ty.segment),
            ty.segment,
        );
    }
    revisions(
        &mut ops,
        &format!("{ACCOUNT}/lists/{{list_id}}/entries/{{doc_id}}"),
        "entries",
    );
    // Account documents (documents.rs).
    for ty in TYPES {
        doc_type(&mut ops, ty);
    }
    crud(
        &mut ops,
        &format!("{ACCOUNT}/lists/{{list_id}}/entries"),
        "entry_id",
        "entries",
        "lists",
        ENTRY.schema,
        true,
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/users/{{user_id}}/devices"),
            "user_devices",
            "users",
        )
        .summary("The devices a user owns or is hot-desked into")
        .answer(Answer::List),
    );
    ops.push(
        Op::new(
            Method::PUT,
            format!("{ACCOUNT}/simulations"),
            "simulate",
            "simulations",
        )
        .summary("What a call would do, step by step (nothing is stored)")
        .body(Body::Object)
        .answer(Answer::Any),
    );
    // Lint and call tests (lint.rs).
    ops.push(
        Op::new(
            Method::GET,
            format!("{callflows}/{{callflow_id}}/lint"),
            "lint_callflow",
            "lint",
        )
        .summary("Lint findings for one stored callflow")
        .answer(Answer::Any),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/lint"),
            "lint_account",
            "lint",
        )
        .summary("Lint findings for every callflow of the account")
        .answer(Answer::Any),
    );
    ops.push(
        Op::new(Method::PUT, format!("{ACCOUNT}/lint"), "lint_draft", "lint")
            .summary("Lint findings for a callflow that is not saved")
            .body(Body::Kazoo("callflows"))
            .answer(Answer::Any),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/routing/analysis"),
            "routing_analysis",
            "lint",
        )
        .summary("Shadowed, overlapping and unreachable routes of the account")
        .answer(Answer::List),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/routing/explain"),
            "routing_explain",
            "lint",
        )
        .summary("Why a dialled number reaches the callflow it reaches")
        .answer(Answer::Any)
        .query([
            Query {
                required: true,
                ..q("number", Type::String, "The dialled number.")
            },
            q("on_net", Type::Boolean, "Play an on-net caller."),
        ]),
    );
    ops.push(
        Op::new(
            Method::PUT,
            format!("{ACCOUNT}/callflow_tests/run"),
            "callflow_tests_run",
            "lint",
        )
        .summary("Run the saved call tests (all, or those `data.tests` names)")
        .body(Body::Object)
        .answer(Answer::Any),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/lookup"),
            "lookup",
            "routing",
        )
        .summary("The callflow a dialled number reaches")
        .answer(Answer::Any)
        .query([
            Query {
                required: true,
                ..q("number", Type::String, "The dialled number.")
            },
            q(
                "allow_no_match",
                Type::Boolean,
                "Whether a `no_match` callflow may answer.",
            ),
        ]),
    );
    ops.push(
        Op::new(Method::GET, "/metrics", "metrics", "service")
            .summary("Prometheus metrics (text exposition format)")
            .answer(Answer::Raw("text/plain"))
            .public(),
    );
    ops.push(
        Op::new(Method::GET, "/v2/schemas", "schemas_list", "schemas")
            .summary("The names of the schemas request bodies are validated with")
            .answer(Answer::List)
            .query([q(
                "internals",
                Type::Boolean,
                "Include internal message schemas.",
            )])
            .public(),
    );
    ops.push(
        Op::new(Method::GET, "/v2/schemas/{name}", "schema_fetch", "schemas")
            .summary("One schema (JSON Schema draft 4, Kazoo's dialect)")
            .public(),
    );
    ops.push(
        Op::new(
            Method::PUT,
            "/v2/schemas/{name}/validation",
            "schema_validate",
            "schemas",
        )
        .summary("Validate `data` against the named schema without saving it")
        .body(Body::Object)
        .created(),
    );
    // Imports and exports (transfer.rs).
    let mut start = Op::new(
        Method::PUT,
        format!("{ACCOUNT}/imports"),
        "import_start",
        "transfer",
    )
    .summary("Start an import job of a dump into the account (answers 202 with the job)")
    .body(Body::Dump)
    .query([
        q("dry_run", Type::Boolean, "Check everything, write nothing."),
        q(
            "on_conflict",
            Type::String,
            "fail, skip or replace: what happens to a document whose id holds a different one.",
        ),
        q(
            "commit_message",
            Type::String,
            "Recorded with every revision the import writes.",
        ),
    ]);
    start.status = 202;
    ops.push(start);
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/imports"),
            "import_list",
            "transfer",
        )
        .summary("This node's import jobs of the account, newest first")
        .answer(Answer::List),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/imports/{{job_id}}"),
            "import_fetch",
            "transfer",
        )
        .summary("An import job: state, counts, per-document problems (or text/event-stream)")
        .answer(Answer::Any),
    );
    ops.push(
        Op::new(
            Method::GET,
            format!("{ACCOUNT}/export"),
            "export",
            "transfer",
        )
        .summary("The account's documents as NDJSON, accounts first")
        .answer(Answer::Raw("application/x-ndjson"))
        .query([
            q(
                "type",
                Type::String,
                "Only these document types (comma-separated pvt_types).",
            ),
            q(
                "include_deleted",
                Type::Boolean,
                "Soft-deleted documents too.",
            ),
        ]),
    );
    ops.push(
        Op::new(Method::GET, "/v2/sip/route", "sip_route", "sip")
            .summary("Where a new call goes: a Kamailio rtjson document (or a reply to send)")
            .answer(Answer::Raw("application/json"))
            .switch()
            .query([
                req("ruser", Type::String, "The request URI's user: the number dialled."),
                req(
                    "rdomain",
                    Type::String,
                    "The request URI's domain: the account's realm.",
                ),
                q("fuser", Type::String, "The From user (the caller's number)."),
                q("fdomain", Type::String, "The From domain."),
                q("src_ip", Type::String, "The address the INVITE came from (carriers are known by it)."),
                q("call_id", Type::String, "The call's Call-ID, for the logs."),
                q(
                    "auth_user",
                    Type::String,
                    "The SIP username the switch authenticated the caller as (digest).",
                ),
                q(
                    "failures",
                    Type::String,
                    "How the bridges of this call ended so far, in order: SIP codes, `timeout` or `unregistered`, comma-separated.",
                ),
                q("node", Type::String, "The node the last failure came from (`callflow_id:path`)."),
            ]),
    );
    ops.push(
        Op::new(Method::GET, "/v2/sip/credentials", "sip_credentials", "sip")
            .summary("A device's digest HA1 (never its password) for the switch to check REGISTER and INVITE")
            .answer(Answer::Raw("application/json"))
            .switch()
            .query([
                req("username", Type::String, "The device's SIP username."),
                req("realm", Type::String, "The account's realm."),
            ]),
    );
    for (path, id, summary, kind) in [
        (
            "/ui",
            "ui_page_bare",
            "The browser editor (the same page as /ui/)",
            "text/html",
        ),
        (
            "/ui/",
            "ui_page",
            "The browser editor (docs/ui.md)",
            "text/html",
        ),
        (
            "/ui/app.js",
            "ui_script",
            "The browser editor's script",
            "text/javascript",
        ),
        (
            "/ui/style.css",
            "ui_style",
            "The browser editor's stylesheet",
            "text/css",
        ),
    ] {
        ops.push(
            Op::new(Method::GET, path, id, "service")
                .summary(summary)
                .answer(Answer::Raw(kind))
                .public(),
        );
    }
    ops.push(
        Op::new(Method::GET, "/v2/openapi.json", "openapi", "service")
            .summary("This document")
            .answer(Answer::Raw("application/json"))
            .public(),
    );
    ops.push(
        Op::new(Method::GET, "/docs", "docs_page", "service")
            .summary("The reference page rendered from this document")
            .answer(Answer::Raw("text/html"))
            .public(),
    );
    ops.push(
        Op::new(Method::GET, "/docs/style.css", "docs_style", "service")
            .summary("The reference page's stylesheet")
            .answer(Answer::Raw("text/css"))
            .public(),
    );
    ops
}

fn doc_type(ops: &mut Vec<Op>, ty: &'static DocType) {
    let collection = format!("{ACCOUNT}/{}", ty.segment);
    crud(
        ops,
        &collection,
        "doc_id",
        ty.segment,
        ty.segment,
        ty.schema,
        false,
    );
}

/// The document, built once per process from the schemas the server validates with (they are
/// fixed at start-up: the built-in set, or `--schemas-dir`).
pub fn document(schemas: &SchemaSet) -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| build_document(catalogue(), schemas))
}

/// The document as served.
pub fn document_json(schemas: &SchemaSet) -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut value = serde_json::to_value(document(schemas)).unwrap_or(Value::Null);
        fix_links(&mut value);
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| "{}".into())
    })
}

/// utoipa 5 serialises a Link Object's keys in snake case (`operation_id`); OpenAPI spells
/// them `operationId`, `operationRef` and `requestBody`.
fn fix_links(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    let responses = operations
        .filter_map(|op| op.get_mut("responses").and_then(Value::as_object_mut))
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else {
            continue;
        };
        for link in links.values_mut().filter_map(Value::as_object_mut) {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(from) {
                    link.insert(to.into(), v);
                }
            }
        }
    }
}

/// `GET /v2/openapi.json`.
pub async fn serve(State(state): State<AppState>) -> axum::response::Response {
    super::reply::raw((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document_json(&state.schemas),
    ))
}

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::PUT => HttpMethod::Put,
        Method::POST => HttpMethod::Post,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn typed(kind: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::new(kind))
}

fn string() -> ObjectBuilder {
    typed(Type::String)
}

fn any() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::any())
}

/// The error statuses callflowd answers, with Kazoo's labels (`src/api/error.rs`).
const ERRORS: &[(u16, &str)] = &[
    (400, "`validation error`: `data` maps each field to the rule it broke (`{field: {rule: {message, target?, value?, cause?}}}`); also `callflow_tests_failed`."),
    (401, "`invalid_credentials`: no token, a wrong one, or an expired one."),
    (403, "`forbidden`: the token's account may not reach this account."),
    (404, "`bad_identifier` (no such document or account), `not_found` (no such route) or `faulty_request` (bad paging)."),
    (405, "`invalid_method`: the path does not answer this method."),
    (406, "`not_acceptable`: `Accept` allows nothing callflowd sends."),
    (408, "`request_timeout`: the body did not arrive in time."),
    (409, "`datastore_conflict`: a concurrent write won."),
    (410, "`gone`: API version 1 is not served."),
    (412, "`precondition_failed`: `If-Match` names a revision that is not current."),
    (413, "A body over the size limit (`--max-body-bytes`): the validation map with `file.maxSize` and the limit as `target`. Kazoo answers 400 with the same map."),
    (414, "`uri_too_long`: the request target is longer than the HTTP layer accepts."),
    (415, "`unsupported_media_type`: the body is not JSON."),
    (429, "`too_many_requests`: a token bucket is empty (the account's request bucket, or the login throttle); `Retry-After` says when to come back."),
    (431, "`request_header_fields_too_large`: the request head is larger than the HTTP layer accepts."),
    (500, "`datastore_fault` (details logged, never sent) or a missing schema."),
    (503, "`datastore_unreachable`: the store does not answer; or `request_timeout`: the request took longer than `--request-timeout` (a write already started still completes)."),
];

fn build_document(ops: &[Op], schemas: &SchemaSet) -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut by_path: Vec<(String, Vec<&Op>)> = Vec::new();
    for op in ops {
        match by_path.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, list)) => list.push(op),
            None => by_path.push((op.path.clone(), vec![op])),
        }
    }
    for (path, list) in &by_path {
        let mut item: Option<PathItem> = None;
        for op in list {
            let operation = operation(op, schemas);
            item = Some(match item {
                None => PathItem::new(http_method(&op.method), operation),
                Some(mut item) => {
                    item.merge_operations(PathItem::new(http_method(&op.method), operation));
                    item
                }
            });
        }
        if let Some(item) = item {
            paths = paths.path(path.clone(), item);
        }
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "auth_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "The `auth_token` a login (`PUT /v2/user_auth` or `/v2/api_auth`) answered.",
            ))),
        )
        .security_scheme(
            "switch_secret",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                    .description(Some(
                        "The SIP switch's shared secret (`--sip-secret`); see docs/sip.md.",
                    ))
                    .build(),
            ),
        )
        .schema("SuccessEnvelope", success_envelope())
        .schema(
            "DocumentEnvelope",
            AllOfBuilder::new()
                .item(schema_ref("SuccessEnvelope"))
                .item(ObjectBuilder::new().property("data", typed(Type::Object))),
        )
        .schema(
            "ListEnvelope",
            AllOfBuilder::new()
                .item(schema_ref("SuccessEnvelope"))
                .item(
                    ObjectBuilder::new()
                        .property("data", ArrayBuilder::new().items(any()))
                        .property("page_size", typed(Type::Integer))
                        .property("start_key", any())
                        .property("next_start_key", any()),
                ),
        )
        .schema("ErrorEnvelope", error_envelope())
        .schema("ValidationErrors", validation_errors())
        .schema(
            "ValidationErrorEnvelope",
            AllOfBuilder::new().item(schema_ref("ErrorEnvelope")).item(
                ObjectBuilder::new().property(
                    "data",
                    AnyOfBuilder::new()
                        .item(schema_ref("ValidationErrors"))
                        .item(typed(Type::Object).description(Some(
                            "`callflow_tests_failed`: the call tests the write broke.",
                        ))),
                ),
            ),
        );
    for (status, description) in ERRORS {
        let schema = if *status == 400 || *status == 413 {
            "ValidationErrorEnvelope"
        } else {
            "ErrorEnvelope"
        };
        let mut response = ResponseBuilder::new().description(*description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema_ref(schema)))
                .build(),
        );
        if *status == 429 {
            response = response.header(
                "Retry-After",
                utoipa::openapi::HeaderBuilder::new()
                    .schema(typed(Type::Integer))
                    .description(Some("Seconds to wait."))
                    .build(),
            );
        }
        components = components.response(status.to_string(), response.build());
    }
    let tags = [
        ("auth", "Logins and tokens."),
        ("accounts", "Accounts."),
        ("callflows", "Callflows and the number search."),
        ("drafts", "Unpublished callflow drafts."),
        (
            "history",
            "Revisions, diffs, rollbacks, the audit trail and the change feed.",
        ),
        ("routing", "Number lookups."),
        ("lint", "Lint, routing analysis and call tests."),
        ("simulations", "Call simulations."),
        (
            "transfer",
            "Imports (Kazoo dumps, NDJSON) as jobs, and the NDJSON export.",
        ),
        ("schemas", "The schemas request bodies are validated with."),
        (
            "sip",
            "The SIP switch's routing decisions and device credentials (docs/sip.md).",
        ),
        ("service", "Health, metrics and this contract."),
    ]
    .into_iter()
    .map(|(name, text)| TagBuilder::new().name(name).description(Some(text)).build())
    .chain(TYPES.iter().map(|ty| {
        TagBuilder::new()
            .name(ty.segment)
            .description(Some(format!(
                "Account `{}` documents (schema `{}`).",
                ty.pvt_type, ty.schema
            )))
            .build()
    }))
    .chain(std::iter::once(
        TagBuilder::new()
            .name("lists")
            .description(Some("The entries of a list."))
            .build(),
    ))
    .chain(std::iter::once(
        TagBuilder::new()
            .name("users")
            .description(Some("What users own."))
            .build(),
    ));
    let mut seen = Vec::new();
    let tags: Vec<_> = tags
        .filter(|t| {
            let fresh = !seen.contains(&t.name);
            seen.push(t.name.clone());
            fresh
        })
        .collect();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("callflowd")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Kazoo's crossbar callflows API (v2) and its neighbours, plus history, lint, \
                     simulations and routing lookups. Every JSON answer is Kazoo's envelope: \
                     `data`, `status`, `request_id`, `timestamp`, `node` (and `auth_token`, \
                     `revision`, `version` when they apply); errors add `error` (the HTTP status \
                     as a string) and `message` (Kazoo's label). Request bodies are envelopes too: \
                     `{\"data\": {...}}`, with `data` validated against the Kazoo schema each \
                     operation links (`/v2/schemas/{name}`).",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .security(Some([SecurityRequirement::new(
            "auth_token",
            Vec::<String>::new(),
        )]))
        .tags(Some(tags))
        .build()
}

/// Kazoo's `tokens` envelope key.
fn tokens() -> ObjectBuilder {
    typed(Type::Object)
        .description(Some(
            "Kazoo's `tokens`: what the request took from the account's request bucket and what \
             is left (absent when rate limiting is off).",
        ))
        .property("consumed", typed(Type::Number))
        .property("remaining", typed(Type::Number))
}

fn success_envelope() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some("Kazoo's success envelope."))
        .property("data", any())
        .property("status", string().enum_values(Some(["success"])))
        .property("request_id", string())
        .property("timestamp", string())
        .property("node", string())
        .property("auth_token", string())
        .property("version", string())
        .property("revision", string())
        .property("tokens", tokens())
        .required("data")
        .required("status")
        .required("request_id")
        .required("timestamp")
        .required("node")
}

fn error_envelope() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some("Kazoo's error envelope."))
        .property("data", any())
        .property("status", string().enum_values(Some(["error"])))
        .property(
            "error",
            string()
                .pattern(Some("^[0-9]{3}$"))
                .description(Some("The HTTP status, as a string.")),
        )
        .property("message", string().description(Some("Kazoo's label.")))
        .property("request_id", string())
        .property("timestamp", string())
        .property("node", string())
        .property("auth_token", string())
        .property("version", string())
        .property("tokens", tokens())
        .required("status")
        .required("error")
        .required("message")
        .required("request_id")
        .required("timestamp")
        .required("node")
}

fn validation_errors() -> ObjectBuilder {
    let detail = typed(Type::Object)
        .property("message", string())
        .property("target", any())
        .property("value", any())
        .property("cause", any())
        .required("message");
    let rules = typed(Type::Object)
        .description(Some(
            "The rules the field broke (`type`, `required`, `unique`, ...).",
        ))
        .additional_properties(Some(detail));
    typed(Type::Object)
        .description(Some("Field (dotted path) -> rule -> detail."))
        .additional_properties(Some(rules))
}

fn operation(op: &Op, schemas: &SchemaSet) -> utoipa::openapi::path::Operation {
    let mut builder = OperationBuilder::new()
        .operation_id(Some(op.id.clone()))
        .tag(op.tag)
        .summary(Some(op.summary.clone()));
    for name in path_params(&op.path) {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(string().min_length(Some(1)))),
        );
    }
    for query in &op.query {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(query.name)
                .parameter_in(ParameterIn::Query)
                .required(if query.required {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(query.description))
                .schema(Some(typed(query.kind.clone()))),
        );
    }
    if let Some(body) = request_body(op, schemas) {
        builder = builder.request_body(Some(body));
    }
    for status in std::iter::once(op.status).chain(op.also) {
        builder = builder.response(status.to_string(), success_response(op, status));
    }
    if op.method == Method::GET
        && matches!(op.answer, Answer::Document | Answer::List | Answer::Any)
    {
        builder = builder.response(
            "304",
            ResponseBuilder::new().description("`If-None-Match` names the current revision."),
        );
    }
    for (status, _) in ERRORS {
        builder = builder.response(
            status.to_string(),
            RefOr::Ref(Ref::from_response_name(status.to_string())),
        );
    }
    if op.public {
        builder = builder.securities(Some([SecurityRequirement::default()]));
    }
    if op.switch {
        builder = builder.securities(Some([SecurityRequirement::new(
            "switch_secret",
            Vec::<String>::new(),
        )]));
    }
    let mut operation = builder.build();
    if let Body::Kazoo(schema) = op.body {
        operation.external_docs = Some(
            ExternalDocsBuilder::new()
                .url(format!("/v2/schemas/{schema}"))
                .description(Some(format!(
                    "The Kazoo schema `data` is validated with: {schema}"
                )))
                .build(),
        );
    }
    operation
}

/// `data` as far as the generator needs it: an object with the Kazoo schema's required
/// top-level fields and their plain constraints (type, length, enum). The schema itself stays
/// the one served at `/v2/schemas/{name}` (draft 4, Kazoo's dialect), linked, not copied.
fn required_fields(schemas: &SchemaSet, name: &str) -> ObjectBuilder {
    let mut data = typed(Type::Object);
    let Some(schema) = schemas.get(name) else {
        return data;
    };
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    for field in required.iter().filter_map(Value::as_str) {
        let prop = &schema["properties"][field];
        let mut b = match prop["type"].as_str() {
            Some("string") => string(),
            Some("integer") => typed(Type::Integer),
            Some("number") => typed(Type::Number),
            Some("boolean") => typed(Type::Boolean),
            Some("object") => typed(Type::Object),
            Some("array") => typed(Type::Array),
            _ => any(),
        };
        let size = |key: &str| prop[key].as_u64().and_then(|n| usize::try_from(n).ok());
        b = b
            .min_length(size("minLength"))
            .max_length(size("maxLength"));
        if let Some(values) = prop["enum"].as_array() {
            b = b.enum_values(Some(values.clone()));
        }
        data = data.property(field, b).required(field);
    }
    data
}

/// `{name}` segments of a route template, in order.
pub fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

/// A `data` the server accepts, for the operations that create or change documents (the
/// contract test's examples start from these).
fn example_data(op: &Op) -> Option<Value> {
    let noop = json!({"module": "noop", "data": {}});
    Some(match (op.body, op.id.as_str()) {
        (Body::Kazoo("callflows"), _) => json!({"name": "Main", "numbers": ["1000"], "flow": noop}),
        (Body::Kazoo("users"), _) => json!({"first_name": "Ada", "last_name": "Lovelace"}),
        (Body::Kazoo("vmboxes"), _) => json!({"name": "Reception", "mailbox": "1001"}),
        (Body::Kazoo("temporal_rules"), _) => {
            json!({"name": "Weekdays", "cycle": "weekly", "wdays": ["monday", "friday"]})
        }
        (Body::Kazoo("resources"), _) => {
            json!({"name": "Carrier", "gateways": [{"server": "gw.example.com"}]})
        }
        (Body::Kazoo("callflow_tests"), _) => {
            json!({"name": "Main answers", "simulation": {"number": "1000"}, "expect": {}})
        }
        (Body::Kazoo("list_entries"), _) => json!({"number": "5551234"}),
        (Body::Kazoo("accounts"), _) => json!({"name": "Branch office"}),
        (Body::Kazoo("user_auth"), _) => {
            json!({"credentials": "0123456789abcdef0123456789abcdef", "account_name": "admin"})
        }
        (Body::Kazoo("api_auth"), _) => json!({"api_key": "0123456789abcdef"}),
        (Body::Kazoo(_), _) => json!({"name": "Example"}),
        (Body::Object, "simulate") => json!({"number": "1000"}),
        (Body::Object, "callflow_tests_run") => json!({}),
        (Body::Object, id) if id.ends_with("_rollback") => json!({"revision": 1}),
        (Body::Object, "schema_validate") => json!({"name": "Example"}),
        _ => return None,
    })
}

fn request_body(
    op: &Op,
    schemas: &SchemaSet,
) -> Option<utoipa::openapi::request_body::RequestBody> {
    let body = op.body;
    let data = match body {
        Body::None => return None,
        Body::Kazoo(schema) => required_fields(schemas, schema)
            .description(Some(format!(
                "Validated against the Kazoo schema `{schema}`; its required fields are shown."
            )))
            .extensions(Some(
                ExtensionsBuilder::new()
                    .add("x-kazoo-schema", format!("/v2/schemas/{schema}"))
                    .build(),
            )),
        Body::Object => typed(Type::Object),
        Body::Dump => {
            let text = || ContentBuilder::new().schema(Some(string())).build();
            return Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .description(Some(
                        "A dump: callflowd's NDJSON export (one record per line), or Kazoo's \
                         CouchDB `_all_docs?include_docs=true` JSON.",
                    ))
                    .content("application/x-ndjson", text())
                    .content("application/json", text())
                    .build(),
            );
        }
    };
    let envelope = typed(Type::Object)
        .description(Some("Kazoo's request envelope."))
        .property("data", data)
        .property(
            "verb",
            string().description(Some("Verb tunnelling (POST only).")),
        )
        .required("data");
    Some(
        RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(envelope))
                    .example(example_data(op).map(|data| json!({ "data": data })))
                    .build(),
            )
            .build(),
    )
}

fn success_response(op: &Op, status: u16) -> utoipa::openapi::Response {
    let description = match status {
        201 => "Created.",
        _ => "Success.",
    };
    let mut response = ResponseBuilder::new().description(description);
    match op.answer {
        Answer::Raw(kind) => {
            let schema = if kind == "application/json" {
                typed(Type::Object)
            } else {
                string()
            };
            response = response.content(kind, ContentBuilder::new().schema(Some(schema)).build());
        }
        answer => {
            let schema = match answer {
                Answer::Document => "DocumentEnvelope",
                Answer::List => "ListEnvelope",
                _ => "SuccessEnvelope",
            };
            response = response.content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(schema_ref(schema)))
                    .build(),
            );
            if op.id.ends_with("_revision_diff") {
                response = response.content(
                    "text/plain",
                    ContentBuilder::new().schema(Some(string())).build(),
                );
            }
            if op.id == "changes" || op.id == "import_fetch" {
                response = response.content(
                    "text/event-stream",
                    ContentBuilder::new().schema(Some(string())).build(),
                );
            }
        }
    }
    if let Some((param, targets)) = &op.links {
        let mut parameters = vec![(param.to_string(), json!("$response.body#/data/id"))];
        for name in path_params(&op.path) {
            parameters.push((name.clone(), Value::String(format!("$request.path.{name}"))));
        }
        for target in targets {
            let mut link = LinkBuilder::new().operation_id(target.clone());
            for (name, value) in &parameters {
                link = link.parameter(name.clone(), value.clone());
            }
            response = response.link(target.clone(), link.build());
        }
    }
    response.build()
}
