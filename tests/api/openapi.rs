//! The published contract (`/v2/openapi.json`, `/docs`) against the real router: every
//! documented operation is routed, every route is documented, and the page stands alone.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

const METHODS: [Method; 5] = [
    Method::GET,
    Method::PUT,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
];

async fn document(app: &TestApp) -> Value {
    let r = app.call(Method::GET, "/v2/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.body
}

/// A concrete URL for a route template.
fn concrete(app: &TestApp, template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{account_id}" => app.admin_account.clone(),
            "{token}" => app.admin_token.clone(),
            "{name}" => "callflows".into(),
            "{rev}" => "1".into(),
            s if s.starts_with('{') => "0123456789abcdef0123456789abcdef".into(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_unique_operations_and_sound_links() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    let mut links = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
            for status in [
                "400", "401", "403", "404", "405", "409", "413", "415", "429", "500", "503",
            ] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path} does not document {status}"
                );
            }
            for response in op["responses"].as_object().expect("responses").values() {
                if let Some(l) = response["links"].as_object() {
                    links.extend(l.values().cloned());
                }
            }
        }
    }
    assert!(!links.is_empty(), "creations link to their documents");
    for link in links {
        let target = link["operationId"].as_str().expect("link by operationId");
        assert!(ids.contains(target), "link to unknown operation {target}");
    }
    // Request bodies name the Kazoo schema they are validated with, and it is served.
    let put = &doc["paths"]["/v2/accounts/{account_id}/callflows"]["put"];
    assert_eq!(put["externalDocs"]["url"], "/v2/schemas/callflows");
    let r = app
        .call(Method::GET, "/v2/schemas/callflows", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    println!("openapi: {} operations", ids.len());
}

/// Both directions at once, per path: a documented method is answered by a route (never 405),
/// an undocumented one is 405 (the path is routed, so the router's 404 fallback did not answer).
#[tokio::test]
async fn every_documented_path_is_routed_with_exactly_the_documented_methods() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        let url = concrete(&app, template);
        let documented: BTreeSet<String> = item
            .as_object()
            .expect("path item")
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        assert!(
            documented.len() < METHODS.len(),
            "{template}: every method documented, nothing proves the path is routed"
        );
        for method in METHODS {
            let body = matches!(method, Method::PUT | Method::POST | Method::PATCH)
                .then(|| json!({"data": {}}));
            let r = app
                .call(method.clone(), &url, Some(&app.admin_token), body)
                .await;
            if documented.contains(method.as_str()) {
                assert_ne!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template}"
                );
                assert!(
                    !(r.status == StatusCode::NOT_FOUND && r.body["message"] == "not_found"),
                    "{method} {template} fell through to the router's fallback: {}",
                    r.text
                );
                assert!(r.status.as_u16() < 500, "{method} {template}: {}", r.text);
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is not documented but answered: {}",
                    r.text
                );
            }
            checked += 1;
        }
    }
    println!("openapi: {checked} (path, method) pairs probed against the router");
}

/// Routes the sources spell out literally (`.route("/v2/...", ...)`) are all documented; the
/// per-type routes are generated from the DocType registry on both sides.
#[tokio::test]
async fn every_literal_route_in_the_sources_is_documented() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().expect("paths");
    let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)""#).expect("regex");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("src/api") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("source");
        for caps in route.captures_iter(&source) {
            let template = &caps[1];
            assert!(
                paths.contains_key(template),
                "{template} ({}) is routed but not documented",
                path.display()
            );
            seen += 1;
        }
    }
    for ty in callflowd::documents::TYPES {
        let collection = format!("/v2/accounts/{{account_id}}/{}", ty.segment);
        for suffix in ["", "/{doc_id}", "/{doc_id}/revisions", "/{doc_id}/rollback"] {
            let p = format!("{collection}{suffix}");
            assert!(paths.contains_key(&p), "{p} is routed but not documented");
        }
    }
    assert!(seen > 20, "the route scan found only {seen} routes");
}

#[tokio::test]
async fn the_reference_page_stands_alone() {
    let app = TestApp::spawn().await;
    let r = app
        .send(
            Request::builder()
                .uri("/docs")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("style-src 'self'"));
    let page = &r.text;
    assert!(!page.contains("<script"), "no script on the page");
    for needle in ["http://", "https://", "//cdn"] {
        assert!(
            !page.contains(needle),
            "the page refers elsewhere: {needle}"
        );
    }
    assert!(page.contains("href=\"/docs/style.css\""));
    assert!(page.contains("/v2/accounts/{account_id}/callflows"));
    assert!(page.contains("/v2/schemas/callflows"));
    let css = app
        .send(
            Request::builder()
                .uri("/docs/style.css")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/css")));
}
