//! Envelope, headers and request-parsing behaviour shared by every endpoint.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn success_envelope_has_kazoo_keys_and_request_id_header() {
    let app = TestApp::spawn().await;
    let req = Request::get(TestApp::callflows(&app.admin_account))
        .header("X-Auth-Token", &app.admin_token)
        .header("X-Request-ID", "my-request-1")
        .body(Body::empty())
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), Some("my-request-1"));
    assert_eq!(r.body["request_id"], "my-request-1");
    assert_eq!(r.body["status"], "success");
    assert_eq!(r.body["auth_token"], app.admin_token.as_str());
    for key in ["timestamp", "node", "version"] {
        assert!(r.body.get(key).is_some(), "missing {key}: {}", r.text);
    }
    assert!(r.body.get("error").is_none());
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn generated_request_ids_are_32_hex() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/v2/schemas", None, None).await;
    let id = r.header("x-request-id").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
}

#[tokio::test]
async fn cors_preflight_skips_auth_and_returns_headers() {
    let app = TestApp::spawn().await;
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri(TestApp::callflows(&app.admin_account))
        .header("Origin", "https://ui.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .body(Body::empty())
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text, "");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("x-auth-token"));
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
}

#[tokio::test]
async fn plain_options_is_method_not_allowed() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::OPTIONS,
            &TestApp::callflows(&app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["message"], "invalid_method");
    assert_eq!(r.data()["message"], "method not allowed");
    assert_eq!(r.body["error"], "405");
}

#[tokio::test]
async fn errors_always_carry_cors_headers() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::GET,
            &TestApp::callflows(&app.admin_account),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn api_v1_is_gone() {
    let app = TestApp::spawn().await;
    let r = app
        .call(Method::GET, "/v1/accounts/x/callflows", None, None)
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(r.body["message"], "gone");
    assert_eq!(
        r.body["data"],
        "API version 1 is not supported. Please upgrade your code to use version 2."
    );
}

#[tokio::test]
async fn malformed_json_names_the_offset() {
    let app = TestApp::spawn().await;
    let req = Request::put(TestApp::callflows(&app.admin_account))
        .header("X-Auth-Token", &app.admin_token)
        .header("content-type", "application/json")
        .body(Body::from("{\"data\": {\"numbers\": [}"))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["message"], "validation error");
    let msg = r.data()["json"]["invalid"]["message"].as_str().unwrap();
    assert!(msg.starts_with("invalid_json around "), "{msg}");
    assert_eq!(r.data()["json"]["invalid"]["target"], "body");
}

#[tokio::test]
async fn envelope_without_data_or_non_object_json_is_rejected() {
    let app = TestApp::spawn().await;
    let path = TestApp::callflows(&app.admin_account);
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin_token),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.data()["data"]["required"]["message"],
        "Field is required but missing"
    );
    let r = app
        .call(Method::PUT, &path, Some(&app.admin_token), Some(json!([1])))
        .await;
    assert_eq!(
        r.data()["json"]["invalid"]["message"],
        "All JSON must be valid"
    );
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin_token),
            Some(json!({"data": "text"})),
        )
        .await;
    assert_eq!(
        r.data()["data"]["type"]["message"],
        "Value did not match type(s): object, array"
    );
}

#[tokio::test]
async fn oversized_body_gets_413_with_kazoo_max_size_error_and_server_survives() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(1024 * 1024 + 10);
    let body = json!({"data": {"numbers": ["1000"], "name": huge}});
    let r = app
        .call(
            Method::PUT,
            &TestApp::callflows(&app.admin_account),
            Some(&app.admin_token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["error"], "413");
    assert_eq!(r.body["message"], "validation error");
    assert_eq!(r.data()["file"]["maxSize"]["target"], 1024 * 1024);
    assert_eq!(
        r.data()["file"]["maxSize"]["message"],
        "Payload or Files must not be more than 1048576 bytes"
    );
    let r = app.list(&app.admin_token, &app.admin_account, "").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn deeply_nested_body_is_rejected_before_parsing() {
    let app = TestApp::spawn().await;
    let deep = format!(
        "{{\"data\": {{\"numbers\": [\"1\"], \"x\": {}{}}}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let req = Request::put(TestApp::callflows(&app.admin_account))
        .header("X-Auth-Token", &app.admin_token)
        .header("content-type", "application/json")
        .body(Body::from(deep))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.data()["json"]["invalid"]["message"]
        .as_str()
        .unwrap()
        .starts_with("nesting deeper than 64 levels"));
}

#[tokio::test]
async fn pretty_print_and_jsonp() {
    let app = TestApp::spawn().await;
    let r = app
        .call(Method::GET, "/v2/schemas?pretty_print=true", None, None)
        .await;
    assert!(r.text.contains("\n  "), "pretty output expected");
    let req = Request::get("/v2/schemas")
        .header("X-Pretty-Print", "true")
        .body(Body::empty())
        .unwrap();
    assert!(app.send(req).await.text.contains("\n  "));
    let r = app
        .call(Method::GET, "/v2/schemas?jsonp=cb", None, None)
        .await;
    assert!(
        r.text.starts_with("cb({") && r.text.ends_with(");"),
        "{}",
        &r.text[..20]
    );
    assert_eq!(r.header("content-type"), Some("application/javascript"));
}

#[tokio::test]
async fn unknown_paths_and_extra_segments_are_not_found() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::GET,
            &format!("{}/abc/extra", TestApp::callflows(&app.admin_account)),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "not_found");
    assert_eq!(r.data()["message"], "not found");
}

#[tokio::test]
async fn trailing_slash_and_other_versions_route_like_v2() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::GET,
            &format!("{}/", TestApp::callflows(&app.admin_account)),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let path = TestApp::callflows(&app.admin_account).replacen("/v2/", "/v3/", 1);
    let r = app
        .call(Method::GET, &path, Some(&app.admin_token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn curl_form_content_type_with_json_body_is_decoded() {
    let app = TestApp::spawn().await;
    let req = Request::put(TestApp::callflows(&app.admin_account))
        .header("X-Auth-Token", &app.admin_token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(
            json!({"data": {"numbers": ["1000"]}}).to_string(),
        ))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn unsupported_content_type_is_415_with_envelope() {
    let app = TestApp::spawn().await;
    let req = Request::put(TestApp::callflows(&app.admin_account))
        .header("X-Auth-Token", &app.admin_token)
        .header("content-type", "text/xml")
        .body(Body::from("<data/>"))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.body["error"], "415");
}

#[tokio::test]
async fn healthz_reports_the_store() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.data()["store"], "ok");
}

#[tokio::test]
async fn schemas_endpoints_list_fetch_and_validate() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/v2/schemas", None, None).await;
    let names: Vec<&str> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(names.contains(&"callflows.user") && names.contains(&"metaflows.hold"));
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    let r = app
        .call(Method::GET, "/v2/schemas/callflows.user", None, None)
        .await;
    assert_eq!(r.data()["id"], "callflows.user");
    assert_eq!(r.data()["properties"]["timeout"]["default"], 20);
    let r = app.call(Method::GET, "/v2/schemas/nope", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.data()["cause"], "nope");

    let body = json!({"data": {"numbers": ["1000"], "flow": {"module": "nope", "data": {}}}});
    let r = app
        .call(
            Method::PUT,
            "/v2/schemas/callflows/validation",
            Some(&app.admin_token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.data()["flow.module"]["error"]["message"],
        "unable to find callflow schema for module nope"
    );
    let body = json!({"data": {"id": "u1"}});
    let r = app
        .call(
            Method::PUT,
            "/v2/schemas/callflows.user/validation",
            Some(&app.admin_token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.data()["timeout"], 20);
    let r = app
        .call(
            Method::PUT,
            "/v2/schemas/callflows.user/validation",
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(
            Method::PUT,
            "/v2/schemas/missing/validation",
            Some(&app.admin_token),
            Some(body),
        )
        .await;
    // Kazoo answers 500 here; an unknown name is the client's mistake (docs/compatibility.md).
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "bad_identifier");
    assert_eq!(r.data()["cause"], "missing");
}

#[tokio::test]
async fn an_unreachable_store_gives_503_and_the_server_stays_up() {
    let app = TestApp::spawn().await;
    app.state.store.close().await;
    let r = app.list(&app.admin_token, &app.admin_account, "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.body["message"], "datastore_unreachable");
    assert_eq!(r.data()["message"], "datastore timeout");
    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // Requests that need no store still work.
    assert_eq!(
        app.call(Method::GET, "/v2/schemas", None, None)
            .await
            .status,
        StatusCode::OK
    );
}
