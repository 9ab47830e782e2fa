//! `GET /docs`: a readable reference page rendered on the server from the OpenAPI document
//! ([`super::openapi`]), and `GET /docs/style.css`, its stylesheet (compiled into the binary).
//!
//! No script, no font, nothing fetched from elsewhere: the page sends a Content-Security-Policy
//! that allows only our own stylesheet. Must not describe anything the document does not say.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::AppState;

const STYLE: &str = include_str!("../../assets/docs.css");
const CSP: &str = "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// `GET /docs`.
pub async fn page(State(state): State<AppState>) -> axum::response::Response {
    static PAGE: OnceLock<String> = OnceLock::new();
    let body = PAGE.get_or_init(|| {
        let json = super::openapi::document_json(&state.schemas);
        let doc = serde_json::from_str(json).unwrap_or(Value::Null);
        render(&doc).into_string()
    });
    super::reply::raw((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.as_str(),
    ))
}

/// `GET /docs/style.css`.
pub async fn style() -> axum::response::Response {
    super::reply::raw((
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        STYLE,
    ))
}

/// Prose with `backticked` spans set as code.
fn prose(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

/// A path as the table of contents shows it: the account prefix shortened.
fn short_path(path: &str) -> String {
    match path.strip_prefix("/v2/accounts/{account_id}") {
        Some(rest) if !rest.is_empty() => format!("…{rest}"),
        _ => path.to_string(),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// An anchor for one operation.
fn anchor(op: &Value, method: &str, path: &str) -> String {
    match op.get("operationId").and_then(Value::as_str) {
        Some(id) => format!("op-{id}"),
        None => format!("op-{method}-{}", path.replace(['/', '{', '}', '.'], "-")),
    }
}

/// `#/components/schemas/Name` -> `Name`.
fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
}

/// One operation: method (lower case), path template, the operation object.
type Entry = (String, String, Value);

/// The operations under one tag.
struct Group {
    tag: String,
    description: String,
    ops: Vec<Entry>,
}

/// The operations grouped by their first tag, in the order the tags are declared.
fn by_tag(doc: &Value) -> Vec<Group> {
    let mut groups: Vec<Group> = doc["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| Group {
                    tag: text(t, "name").to_string(),
                    description: text(t, "description").to_string(),
                    ops: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                let entry = (method.to_string(), path.clone(), op.clone());
                match groups.iter_mut().find(|g| g.tag == tag) {
                    Some(group) => group.ops.push(entry),
                    None => groups.push(Group {
                        tag,
                        description: String::new(),
                        ops: vec![entry],
                    }),
                }
            }
        }
    }
    groups.retain(|g| !g.ops.is_empty());
    groups
}

fn render(doc: &Value) -> Markup {
    let title = text(&doc["info"], "title");
    let version = text(&doc["info"], "version");
    let groups = by_tag(doc);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " API reference" }
                link rel="stylesheet" href="/docs/style.css";
            }
            body {
                nav class="toc" {
                    h2 { "Contents" }
                    ul {
                        li { a href="#overview" { "Overview" } }
                        li { a href="#errors" { "Errors" } }
                        @for group in &groups {
                            li {
                                a href={ "#tag-" (group.tag) } { (group.tag) }
                                ul {
                                    @for (method, path, op) in &group.ops {
                                        li {
                                            a href={ "#" (anchor(op, method, path)) } {
                                                span class={ "method " (method) } { (method.to_uppercase()) }
                                                " " code { (short_path(path)) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) " " small { (version) } }
                    section id="overview" {
                        h2 { "Overview" }
                        p { (prose(text(&doc["info"], "description"))) }
                        p {
                            "The machine-readable contract is "
                            a href="/v2/openapi.json" { code { "/v2/openapi.json" } }
                            " (OpenAPI " (text(doc, "openapi")) "). Operations marked "
                            span class="badge" { "public" }
                            " need no credentials; every other one needs the "
                            code { "X-Auth-Token" } " header a login answered."
                        }
                    }
                    section id="errors" {
                        h2 { "Errors" }
                        p { "Any operation may answer these, each as Kazoo's error envelope." }
                        table {
                            thead { tr { th { "Status" } th { "Meaning" } } }
                            tbody {
                                @if let Some(responses) = doc["components"]["responses"].as_object() {
                                    @for (status, response) in responses {
                                        tr { td { code { (status) } } td { (prose(text(response, "description"))) } }
                                    }
                                }
                            }
                        }
                    }
                    @for group in &groups {
                        section id={ "tag-" (group.tag) } {
                            h2 { (group.tag) }
                            @if !group.description.is_empty() { p { (prose(&group.description)) } }
                            @for (method, path, op) in &group.ops {
                                (operation(method, path, op))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn operation(method: &str, path: &str, op: &Value) -> Markup {
    let public = op["security"].as_array().is_some_and(|s| {
        s.iter()
            .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
    });
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    let data = &body["properties"]["data"];
    html! {
        article class="op" id=(anchor(op, method, path)) {
            h3 {
                span class={ "method " (method) } { (method.to_uppercase()) }
                " " code { (path) }
                @if public { " " span class="badge" { "public" } }
            }
            p { (prose(text(op, "summary"))) }
            @if !params.is_empty() {
                h4 { "Parameters" }
                table {
                    thead { tr { th { "Name" } th { "In" } th { "Type" } th { "Required" } th { "Description" } } }
                    tbody {
                        @for p in &params {
                            tr {
                                td { code { (text(p, "name")) } }
                                td { (text(p, "in")) }
                                td { (text(&p["schema"], "type")) }
                                td { @if p["required"].as_bool().unwrap_or(false) { "yes" } @else { "no" } }
                                td { (prose(text(p, "description"))) }
                            }
                        }
                    }
                }
            }
            @if !body.is_null() {
                h4 { "Request body" }
                p {
                    "A JSON envelope: " code { "{\"data\": {...}}" } ". "
                    (prose(text(data, "description")))
                    @if let Some(url) = op["externalDocs"]["url"].as_str() {
                        " Schema: " a href=(url) { code { (url) } }
                    }
                }
            }
            h4 { "Responses" }
            table class="responses" {
                thead { tr { th { "Status" } th { "Content" } th { "Description" } } }
                tbody {
                    @if let Some(responses) = op["responses"].as_object() {
                        @for (status, response) in responses {
                            @if response.get("$ref").is_none() {
                                tr {
                                    td { code { (status) } }
                                    td { (content_summary(response)) }
                                    td {
                                        (prose(text(response, "description")))
                                        @if let Some(links) = response["links"].as_object() {
                                            " Links: "
                                            @for (name, _) in links {
                                                a href={ "#op-" (name) } { code { (name) } } " "
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    tr { td { a href="#errors" { "4xx, 5xx" } } td { "ErrorEnvelope" } td { "See Errors." } }
                }
            }
        }
    }
}

fn content_summary(response: &Value) -> Markup {
    let content = response["content"].as_object().cloned().unwrap_or_default();
    html! {
        @for (kind, media) in &content {
            code { (kind) }
            @if let Some(name) = ref_name(&media["schema"]) { " " (name) }
            br;
        }
    }
}
