//! Requests that must never change anything: writes tunnelled through GET or HEAD
//! (issue: reliability defect 9), and NUL characters on their way to the store (defect 7).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// Everything a write could touch, read back through the API.
async fn snapshot(app: &TestApp, id: &str) -> Value {
    let list = app
        .list(&app.admin_token, &app.admin_account, "?paginate=false")
        .await;
    let one = app.fetch(&app.admin_token, &app.admin_account, id).await;
    let accounts = app.state.store.account_count().await.expect("count");
    json!({"list": list.body["data"], "one": one.body["data"], "rev": one.body["revision"], "accounts": accounts})
}

/// Kazoo renders on a real GET (`api_resource:to_json`) and writes only for real PUT, POST,
/// PATCH and DELETE (`api_util:execute_request`): a `verb` carried by a GET or HEAD, in the
/// query string or in a body, changes nothing.
#[tokio::test]
async fn writes_tunnelled_through_get_or_head_change_nothing() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Keep", "numbers": ["1000"], "flow": {"module": "user", "data": {}}}),
        )
        .await;
    let before = snapshot(&app, &id).await;
    let collection = TestApp::callflows(&app.admin_account);
    let one = format!("{collection}/{id}");
    let account = format!("/v2/accounts/{}", app.admin_account);
    let body = json!({"data": {"name": "Changed", "numbers": ["2000"], "flow": {"module": "user", "data": {}}}});
    // (path, tunnelled verb) for every endpoint that writes.
    let targets = [
        (collection.as_str(), "PUT"),
        (collection.as_str(), "POST"),
        (one.as_str(), "POST"),
        (one.as_str(), "PATCH"),
        (one.as_str(), "DELETE"),
        (account.as_str(), "PUT"),
    ];
    for method in [Method::GET, Method::HEAD] {
        for (path, verb) in targets {
            for in_body in [false, true] {
                let sep = if path.contains('?') { '&' } else { '?' };
                let uri = if in_body {
                    format!("{path}{sep}should_soft_delete=false")
                } else {
                    format!("{path}{sep}verb={verb}&should_soft_delete=false")
                };
                let mut envelope = body.clone();
                if in_body {
                    envelope["verb"] = json!(verb);
                }
                let req = Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .header("x-auth-token", &app.admin_token)
                    .header("content-type", "application/json")
                    .body(Body::from(envelope.to_string()))
                    .expect("request");
                let r = app.send(req).await;
                assert!(
                    !matches!(r.status, StatusCode::CREATED),
                    "{method} {uri} (verb {verb}, in body: {in_body}) created something: {}",
                    r.text
                );
                assert_eq!(
                    snapshot(&app, &id).await,
                    before,
                    "{method} {uri} (verb {verb}, in body: {in_body}) changed the store"
                );
            }
        }
    }
    // A real POST still tunnels (Kazoo's verb tunnelling for clients that cannot send DELETE).
    let r = app
        .call(
            Method::POST,
            &format!("{one}?verb=DELETE"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["_read_only"]["deleted"], true);
}
