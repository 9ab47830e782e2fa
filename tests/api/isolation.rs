//! The tenant-isolation matrix: every account-scoped endpoint and method of the published
//! contract, called on a victim account with the credentials of someone who must not reach it.
//!
//! | credentials                                   | answer |
//! |-----------------------------------------------|--------|
//! | none                                          | 401    |
//! | a token of another top-level account          | 403    |
//! | a token of a sub-account, reaching up         | 403    |
//! | an expired token of the victim's own user     | 401    |
//! | a token of a user who has since been deleted  | 401    |
//! | a forged token (`alg: none`, the victim's id) | 401    |
//!
//! Every answer is checked for the victim's data: none of the marker strings stored in the
//! victim's documents may appear in any response, whatever its status.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// Marks every victim document; no response to an intruder may contain it.
const MARKER: &str = "victim-marker-7f3a";
const VICTIM_NUMBER: &str = "+15557770001";

struct Victim {
    account: String,
    token: String,
    callflow: String,
    user: String,
    device: String,
    list: String,
    entry: String,
}

async fn created(app: &TestApp, token: &str, path: &str, data: Value) -> String {
    let r = app
        .call(
            Method::PUT,
            path,
            Some(token),
            Some(json!({ "data": data })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "PUT {path}: {}", r.text);
    r.data()["id"].as_str().expect("id").to_string()
}

async fn victim(app: &TestApp) -> Victim {
    let (account, token) = app.top_level_account("victim").await;
    let base = format!("/v2/accounts/{account}");
    let user = created(
        app,
        &token,
        &format!("{base}/users"),
        json!({"first_name": MARKER, "last_name": "User", "username": "vuser",
               "password": "victim-user-pass", "email": format!("{MARKER}@example.com")}),
    )
    .await;
    let device = created(
        app,
        &token,
        &format!("{base}/devices"),
        json!({"name": format!("{MARKER} phone"), "owner_id": user,
               "sip": {"username": MARKER, "password": "victim-sip-pass"}}),
    )
    .await;
    let callflow = created(
        app,
        &token,
        &format!("{base}/callflows"),
        json!({"name": format!("{MARKER} main"), "numbers": [VICTIM_NUMBER],
               "flow": {"module": "user", "data": {"id": user}, "children": {}}}),
    )
    .await;
    let list = created(
        app,
        &token,
        &format!("{base}/lists"),
        json!({"name": format!("{MARKER} list")}),
    )
    .await;
    let entry = created(
        app,
        &token,
        &format!("{base}/lists/{list}/entries"),
        json!({"number": "5557770002", "displayname": MARKER}),
    )
    .await;
    // A draft and a saved call test, so their endpoints have something to leak.
    let r = app
        .call(
            Method::POST,
            &format!("{base}/callflows/{callflow}/draft"),
            Some(&token),
            Some(json!({"data": {"name": format!("{MARKER} draft"), "numbers": [VICTIM_NUMBER],
                                  "flow": {"module": "user", "data": {"id": user}, "children": {}}}})),
        )
        .await;
    assert!(r.status.is_success(), "draft: {}", r.text);
    Victim {
        account,
        token,
        callflow,
        user,
        device,
        list,
        entry,
    }
}

/// Every account-scoped (method, path) of the published contract (`/v2/openapi.json`), with
/// the victim's ids filled in: a new endpoint joins the matrix by being documented, and the
/// contract tests make sure every route is.
async fn endpoints(app: &TestApp, v: &Victim) -> Vec<(Method, String)> {
    let doc = app.call(Method::GET, "/v2/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let some_id = "0123456789abcdef0123456789abcdef";
    let mut out = Vec::new();
    for (template, item) in doc.body["paths"].as_object().expect("paths") {
        if !template.starts_with("/v2/accounts/{account_id}") {
            continue;
        }
        // The document id of a path: the victim's own where it has one of that type.
        let segment = template.split('/').nth(4).unwrap_or_default();
        let doc_id = match segment {
            "callflows" => v.callflow.as_str(),
            "users" => v.user.as_str(),
            "devices" => v.device.as_str(),
            "lists" if template.contains("/entries/") => v.entry.as_str(),
            "lists" => v.list.as_str(),
            _ => some_id,
        };
        let path = template
            .replace("{account_id}", &v.account)
            .replace("{callflow_id}", &v.callflow)
            .replace("{user_id}", &v.user)
            .replace("{list_id}", &v.list)
            .replace("{entry_id}", &v.entry)
            .replace("{doc_id}", doc_id)
            .replace("{job_id}", some_id)
            .replace("{rev}", "1");
        assert!(!path.contains('{'), "unfilled parameter in {template}");
        let query = match template.rsplit('/').next() {
            Some("search") => format!("?t=callflow&q=name&v={MARKER}"),
            Some("explain") | Some("lookup") => format!("?number={VICTIM_NUMBER}"),
            _ => String::new(),
        };
        for method in item.as_object().expect("path item").keys() {
            let method = match method.as_str() {
                "get" => Method::GET,
                "put" => Method::PUT,
                "post" => Method::POST,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                _ => continue,
            };
            out.push((method, format!("{path}{query}")));
        }
    }
    out
}

/// A plausible body for a write, so a refusal is about who asks, not about the body.
fn body_for(method: &Method, path: &str) -> Option<Value> {
    match *method {
        Method::GET | Method::DELETE => None,
        _ if path.ends_with("/simulations") => Some(json!({"data": {"number": VICTIM_NUMBER}})),
        _ if path.ends_with("/rollback") => Some(json!({"data": {"revision": 1}})),
        _ => Some(
            json!({"data": {"name": "intruder", "numbers": ["+15550000000"],
                                   "flow": {"module": "hangup", "data": {}, "children": {}}}}),
        ),
    }
}

/// `alg: none` with the victim's claims, unsigned.
fn forged_token(account: &str, owner: &str) -> String {
    use base64::Engine;
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(
            json!({"account_id": account, "owner_id": owner, "method": "cb_user_auth",
                   "exp": 4_102_444_800u64, "iat": 1_700_000_000u64})
        )
    )
}

#[tokio::test]
async fn no_credential_from_outside_an_account_reaches_it() {
    let app = TestApp::spawn().await;
    let v = victim(&app).await;

    // Another top-level account.
    let (_, other) = app.top_level_account("intruder").await;
    // A sub-account of the victim, with its own user, reaching up.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}", v.account),
            Some(&v.token),
            Some(json!({"data": {"name": "victim child", "realm": "child.victim.example.com"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "child account: {}", r.text);
    let child = r.data()["id"].as_str().expect("child id").to_string();
    created(
        &app,
        &v.token,
        &format!("/v2/accounts/{child}/users"),
        json!({"first_name": "Child", "last_name": "Admin", "username": "childadmin",
               "password": "child-pass", "priv_level": "admin"}),
    )
    .await;
    let child_token = app
        .login("childadmin", "child.victim.example.com", "child-pass")
        .await;
    // The victim's own user, but expired.
    let mut expired_signer = app.state.signer.clone();
    expired_signer.ttl_secs = 0;
    let (expired, _) = expired_signer
        .issue(&v.account, Some(&v.user), "cb_user_auth")
        .expect("token");
    // A user of the victim who logged in and was then deleted.
    let doomed = created(
        &app,
        &v.token,
        &format!("/v2/accounts/{}/users", v.account),
        json!({"first_name": "Doomed", "last_name": "User", "username": "doomed",
               "password": "doomed-pass"}),
    )
    .await;
    let doomed_token = app
        .login("doomed", "victim.example.com", "doomed-pass")
        .await;
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/callflows", v.account),
            Some(&doomed_token),
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the user's token works before: {}",
        r.text
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/accounts/{}/users/{doomed}", v.account),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "delete user: {}", r.text);
    let forged = forged_token(&v.account, &v.user);

    let intruders: [(&str, Option<&str>, StatusCode); 6] = [
        ("no credentials", None, StatusCode::UNAUTHORIZED),
        (
            "another top-level account",
            Some(&other),
            StatusCode::FORBIDDEN,
        ),
        (
            "a sub-account reaching up",
            Some(&child_token),
            StatusCode::FORBIDDEN,
        ),
        (
            "an expired session",
            Some(&expired),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a deleted user",
            Some(&doomed_token),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a forged alg:none token",
            Some(&forged),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    let endpoints = endpoints(&app, &v).await;
    assert!(
        endpoints.len() > 150,
        "the contract lists {} account endpoints",
        endpoints.len()
    );
    let mut checked = 0;
    for (who, token, expected) in intruders {
        for (method, path) in &endpoints {
            let r = app
                .call(method.clone(), path, token, body_for(method, path))
                .await;
            assert_eq!(
                r.status, expected,
                "{who}: {method} {path} answered {}: {}",
                r.status, r.text
            );
            assert_eq!(
                r.body["status"], "error",
                "{who}: {method} {path}: {}",
                r.text
            );
            for secret in [MARKER, VICTIM_NUMBER, "5557770002"] {
                assert!(
                    !r.text.contains(secret),
                    "{who}: {method} {path} leaked {secret}: {}",
                    r.text
                );
            }
            checked += 1;
        }
    }
    // Nothing an intruder sent changed the victim's data.
    let r = app.fetch(&v.token, &v.account, &v.callflow).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["name"], format!("{MARKER} main"));
    let r = app.list(&v.token, &v.account, "").await;
    assert_eq!(r.data().as_array().map(Vec::len), Some(1), "{}", r.text);
    for path in [
        format!("/v2/accounts/{}/users/{}", v.account, v.user),
        format!("/v2/accounts/{}/devices/{}", v.account, v.device),
        format!(
            "/v2/accounts/{}/lists/{}/entries/{}",
            v.account, v.list, v.entry
        ),
        format!("/v2/accounts/{}/callflows/{}/draft", v.account, v.callflow),
    ] {
        let r = app.call(Method::GET, &path, Some(&v.token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
    // The token-bound endpoints: another account's token cannot read the victim's session.
    let r = app
        .call(
            Method::GET,
            &format!("/v2/user_auth/{}", v.token),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(!r.text.contains(&v.account), "{}", r.text);
    for (who, token) in [("expired", &expired), ("deleted user", &doomed_token)] {
        let r = app
            .call(Method::GET, "/v2/token_auth", Some(token), None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{who}: {}", r.text);
    }
    println!(
        "tenant isolation: {checked} requests ({} endpoints x 6 credentials), 0 reached the victim",
        endpoints.len()
    );
}
