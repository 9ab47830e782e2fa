//! Kazoo fidelity, round two: behaviours checked in Kazoo's source (each test names the
//! function it follows).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use serde_json::json;

use crate::helpers::{TestApp, ADMIN_PASSWORD};

/// `cb_callflows:validate_unique_patterns` compares with *other* callflows only and the
/// schema has no `uniqueItems` on `patterns`: a pattern repeated inside one callflow is stored
/// as sent, on create, replace and patch.
#[tokio::test]
async fn a_pattern_repeated_inside_one_callflow_is_stored_as_sent() {
    let app = TestApp::spawn().await;
    let path = TestApp::callflows(&app.admin_account);
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"patterns": ["^a$", "^a$"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.data()["patterns"], json!(["^a$", "^a$"]));
    let id = r.data()["id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::POST,
            &format!("{path}/{id}"),
            Some(&app.admin_token),
            Some(json!({"data": {"patterns": ["^b$", "^b$", "^c$"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .call(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(&app.admin_token),
            Some(json!({"data": {"patterns": ["^d$", "^d$"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        app.fetch(&app.admin_token, &app.admin_account, &id)
            .await
            .data()["patterns"],
        json!(["^d$", "^d$"])
    );
    // Another callflow still cannot take it.
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"patterns": ["^d$"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.data()["patterns"]["unique"].is_object());
}

/// `cb_basic_auth:authenticate`: `Authorization: Basic base64(ACCOUNT_ID:md5(user:pass))`
/// authenticates as that user; wrong credentials are a missing token.
#[tokio::test]
async fn basic_auth_authenticates_with_account_id_and_md5_credentials() {
    let app = TestApp::spawn().await;
    let path = TestApp::callflows(&app.admin_account);
    let basic = |account: &str, creds: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{account}:{creds}"))
        )
    };
    let good = basic(
        &app.admin_account,
        &callflowd::auth::md5_credentials("admin", ADMIN_PASSWORD),
    );
    for _ in 0..2 {
        // The second time comes from the verified-credentials cache, as Kazoo's does.
        let req = Request::get(&path)
            .header("Authorization", &good)
            .body(Body::empty())
            .unwrap();
        let r = app.send(req).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // It writes as that user.
    let req = Request::put(&path)
        .header("Authorization", &good)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"data": {"numbers": ["4242"]}}).to_string(),
        ))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let bad = basic(
        &app.admin_account,
        &callflowd::auth::md5_credentials("admin", "wrong"),
    );
    let req = Request::get(&path)
        .header("Authorization", &bad)
        .body(Body::empty())
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.body["message"], "invalid_credentials");
    let req = Request::get(&path)
        .header("Authorization", "Basic !!!not-base64")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::UNAUTHORIZED);
}

/// `kapps_util:get_account_by_realm` and `kzd_accounts:is_unique_realm` lower-case realms;
/// `kzd_accounts:validate_account_name_is_unique` compares normalised names.
#[tokio::test]
async fn realms_are_case_insensitive_and_account_names_unique_after_normalisation() {
    let app = TestApp::spawn().await;
    // Login with the realm in another case.
    let creds = callflowd::auth::md5_credentials("admin", ADMIN_PASSWORD);
    let r = app
        .call(
            Method::PUT,
            "/v2/user_auth",
            None,
            Some(json!({"data": {"credentials": creds, "account_realm": "LocalHost"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let parent = format!("/v2/accounts/{}", app.admin_account);
    let create = |name: &str, realm: &str| {
        app.call(
            Method::PUT,
            &parent,
            Some(&app.admin_token),
            Some(json!({"data": {"name": name, "realm": realm}})),
        )
    };
    let r = create("Acme East", "east.acme.example").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = create("Other", "EAST.Acme.example").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(
        r.data()["realm"]["unique"]["message"],
        "Account realm already in use"
    );
    assert_eq!(r.data()["realm"]["unique"]["cause"], "EAST.Acme.example");
    let r = create("acme-east!", "west.acme.example").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(
        r.data()["name"]["unique"]["message"],
        "Account name already in use"
    );
    assert_eq!(r.data()["name"]["unique"]["cause"], "acme-east!");
    let r = create("Acme West", "west.acme.example").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// `cb_callflows:create_metadata` copies `name`, `numbers` and `pvt_type` only when present,
/// and `open_cache_doc` finds soft-deleted documents too.
#[tokio::test]
async fn metadata_omits_missing_names_and_includes_deleted_documents() {
    let app = TestApp::spawn().await;
    let unnamed = app
        .create_ok(&app.admin_account, json!({"numbers": ["2001"]}))
        .await;
    let deleted = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Gone", "numbers": ["2002"]}),
        )
        .await;
    let r = app
        .call(
            Method::DELETE,
            &format!("{}/{deleted}", TestApp::callflows(&app.admin_account)),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["2003"], "flow": {"module": "callflow", "data": {"id": unnamed},
                "children": {"_": {"module": "callflow", "data": {"id": deleted}}}}}),
        )
        .await;
    let r = app.fetch(&app.admin_token, &app.admin_account, &id).await;
    let meta = &r.data()["metadata"];
    assert_eq!(
        meta[&unnamed],
        json!({"numbers": ["2001"], "pvt_type": "callflow"})
    );
    assert_eq!(meta[&deleted]["name"], "Gone");
}

/// One CouchDB database per account: an id used by another document of the account (the
/// account itself, a user) cannot be a new callflow's id (`datastore_conflict`).
#[tokio::test]
async fn an_id_used_by_another_document_of_the_account_is_a_conflict() {
    let app = TestApp::spawn().await;
    let r = app
        .call(Method::GET, "/v2/token_auth", Some(&app.admin_token), None)
        .await;
    let user_id = r.data()["owner_id"].as_str().unwrap().to_string();
    for id in [user_id.as_str(), app.admin_account.as_str()] {
        let r = app
            .create(
                &app.admin_token,
                &app.admin_account,
                json!({"id": id, "numbers": ["3000"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(r.body["message"], "datastore_conflict");
    }
}

/// cowboy_rest: `If-Match` on a PUT to a missing resource fails the precondition (412).
#[tokio::test]
async fn if_match_on_create_is_412() {
    let app = TestApp::spawn().await;
    let req = Request::put(TestApp::callflows(&app.admin_account))
        .header("X-Auth-Token", &app.admin_token)
        .header("If-Match", "\"1-abc\"")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"data": {"numbers": ["5000"]}}).to_string(),
        ))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert_eq!(r.body["status"], "error");
}

/// `?CONTENT_ACCEPTED` (crossbar.hrl) and `api_util:get_req_data`: Kazoo's accepted types are
/// taken (file-style bodies carry no `data`, so the callflow fails validation, not 415); any
/// other type is 415.
#[tokio::test]
async fn callflow_writes_accept_kazoos_content_types() {
    let app = TestApp::spawn().await;
    let path = TestApp::callflows(&app.admin_account);
    let send = |ct: &'static str, body: String| {
        let req = Request::put(&path)
            .header("X-Auth-Token", &app.admin_token)
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap();
        app.send(req)
    };
    let json_body = json!({"data": {"numbers": ["6000"]}}).to_string();
    assert_eq!(
        send("application/x-json", json_body.clone()).await.status,
        StatusCode::CREATED
    );
    for ct in [
        "multipart/form-data",
        "multipart/mixed",
        "application/octet-stream",
        "text/csv",
        "text/comma-separated-values",
    ] {
        let r = send(ct, "a,b,c".into()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{ct}: {}", r.text);
        assert!(
            r.data()["numbers"]["required"].is_object(),
            "{ct}: {}",
            r.text
        );
    }
    let r = send("application/xml", "<x/>".into()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// HTTP-layer details of Kazoo's cowboy_rest flow: HEAD is not an allowed method (405), an
/// `Accept` we cannot serve is 406, `If-None-Match: *` is 304 on an existing document, a write
/// without `Content-Type` gets `X-RFC2616`, GET responses carry Kazoo's `Expires`, and CORS
/// lists the path's own methods (`api_util:get_cors_headers` with `allowed_methods`).
#[tokio::test]
async fn http_layer_details_follow_cowboy_rest() {
    let app = TestApp::spawn().await;
    let path = TestApp::callflows(&app.admin_account);
    let id = app
        .create_ok(&app.admin_account, json!({"numbers": ["7000"]}))
        .await;
    let item = format!("{path}/{id}");
    let req = |method: Method, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("X-Auth-Token", &app.admin_token)
    };
    let r = app
        .send(req(Method::HEAD, &item).body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = app
        .send(
            req(Method::GET, &item)
                .header("accept", "text/html")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{}", r.text);
    let r = app
        .send(
            req(Method::GET, &item)
                .header("accept", "text/html, application/json;q=0.9")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("expires"), Some("Fri, 01 Jan 1999 00:00:00 GMT"));
    let r = app
        .send(
            req(Method::GET, &item)
                .header("if-none-match", "*")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = app
        .send(
            req(Method::PUT, &path)
                .body(Body::from(
                    json!({"data": {"numbers": ["7001"]}}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.header("x-rfc2616"),
        Some("Section 14.17 (Try it, you'll like it)")
    );
    for (uri, methods) in [
        (path.as_str(), "OPTIONS, GET, PUT"),
        (item.as_str(), "OPTIONS, GET, POST, PATCH, DELETE"),
    ] {
        let r = app
            .send(
                Request::builder()
                    .method(Method::OPTIONS)
                    .uri(uri)
                    .header("origin", "https://monster.example")
                    .header("access-control-request-method", "GET")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("access-control-allow-methods"), Some(methods));
    }
}

/// `cb_user_auth:maybe_get_auth_token`: `GET /v2/user_auth/{TOKEN}` with that same token
/// answers the login data; another token in the path is 401.
#[tokio::test]
async fn get_user_auth_with_the_requests_own_token() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::GET,
            &format!("/v2/user_auth/{}", app.admin_token),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["account_id"], app.admin_account.as_str());
    assert!(r.data()["owner_id"].is_string());
    let r = app
        .call(
            Method::GET,
            "/v2/user_auth/another",
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}
