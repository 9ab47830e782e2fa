//! Logins, tokens, and who may touch which account.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, ADMIN_PASSWORD};

#[tokio::test]
async fn user_auth_by_realm_or_name_returns_a_token() {
    let app = TestApp::spawn().await;
    let creds = callflowd::auth::md5_credentials("admin", ADMIN_PASSWORD);
    let r = app
        .call(
            Method::PUT,
            "/v2/user_auth",
            None,
            Some(json!({"data": {"credentials": creds, "account_name": "Admin"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.data()["account_id"], app.admin_account.as_str());
    assert!(r.data()["owner_id"].is_string());
    let token = r.body["auth_token"].as_str().unwrap();
    let who = app
        .call(Method::GET, "/v2/token_auth", Some(token), None)
        .await;
    assert_eq!(who.status, StatusCode::OK);
    assert_eq!(who.data()["account_id"], app.admin_account.as_str());
    assert_eq!(who.data()["method"], "cb_user_auth");
}

#[tokio::test]
async fn sha1_credentials_work_too() {
    let app = TestApp::spawn().await;
    let creds = callflowd::auth::sha1_credentials("admin", ADMIN_PASSWORD);
    let body =
        json!({"data": {"credentials": creds, "account_realm": "localhost", "method": "sha"}});
    let r = app
        .call(Method::PUT, "/v2/user_auth", None, Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn wrong_credentials_get_kazoo_401() {
    let app = TestApp::spawn().await;
    let creds = callflowd::auth::md5_credentials("admin", "wrong");
    let r = app
        .call(
            Method::PUT,
            "/v2/user_auth",
            None,
            Some(json!({"data": {"credentials": creds, "account_realm": "localhost"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "invalid_credentials");
    assert_eq!(r.data(), &json!({"message": "invalid credentials"}));
    let r = app
        .call(
            Method::PUT,
            "/v2/user_auth",
            None,
            Some(json!({"data": {"credentials": creds, "account_realm": "nowhere.example"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_auth_validates_its_body() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::PUT,
            "/v2/user_auth",
            None,
            Some(json!({"data": {"account_realm": "localhost"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.data()["credentials"]["required"]["message"],
        "Field is required but missing"
    );
}

#[tokio::test]
async fn api_auth_with_a_new_key_and_unknown_key_shape() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}", app.admin_account),
            Some(&app.admin_token),
            Some(json!({"data": {"name": "Child"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let key = r.data()["api_key"].as_str().unwrap().to_string();
    let child = r.data()["id"].as_str().unwrap().to_string();
    let r = app.api_login(&key).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.data()["account_id"], child.as_str());
    assert!(r.data().get("owner_id").is_none());

    let unknown = "0".repeat(64);
    let r = app.api_login(&unknown).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "bad identifier");
    assert_eq!(r.data(), &json!([unknown]));

    let r = app.api_login("short").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.data()["api_key"]["minLength"]["target"], 64);
}

#[tokio::test]
async fn missing_and_invalid_tokens_have_their_two_shapes() {
    let app = TestApp::spawn().await;
    let path = TestApp::callflows(&app.admin_account);
    let r = app.call(Method::GET, &path, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "invalid_credentials");
    assert_eq!(r.data()["message"], "invalid credentials");

    // A garbage or forged token takes the late path (`cb_token_auth:validate_auth_token`
    // returns false for `invalid_jwt`; `api_util:is_authentic` then answers): 401
    // `invalid_credentials` with its message on an existing account...
    let forged = {
        let other = callflowd::auth::TokenSigner::new("another key", 3600);
        other
            .issue(&app.admin_account, None, "cb_api_auth")
            .unwrap()
            .0
    };
    for token in ["not-a-token", forged.as_str()] {
        let r = app.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(r.body["message"], "invalid_credentials");
        assert_eq!(r.data()["message"], "invalid credentials");
    }
    // ...and 404 on an account that does not exist (`malformed_request` runs first).
    let r = app
        .call(
            Method::GET,
            &TestApp::callflows(&"0".repeat(32)),
            Some("not-a-token"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.body["message"], "bad_identifier");
}

#[tokio::test]
async fn token_in_envelope_query_or_bearer_header_is_accepted() {
    let app = TestApp::spawn().await;
    let path = TestApp::callflows(&app.admin_account);
    let r = app
        .call(
            Method::GET,
            &format!("{path}?auth_token={}", app.admin_token),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let req = Request::get(&path)
        .header("Authorization", format!("Bearer {}", app.admin_token))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::OK);
    let body = json!({"data": {"numbers": ["2001"]}, "auth_token": app.admin_token});
    let r = app.call(Method::PUT, &path, None, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn expired_tokens_are_rejected() {
    let app = TestApp::spawn_with(|a| a.token_ttl = 1).await;
    let token = app.admin_token.clone();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = app
        .call(
            Method::GET,
            &TestApp::callflows(&app.admin_account),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "invalid credentials");
    assert_eq!(r.data(), &json!({}));
    // Only an expired token stops early, before path and method checks
    // (`cb_token_auth:validate_auth_token` -> `token_expired`): an unknown path, an unknown
    // account and a wrong method all answer the same 401.
    for (method, path) in [
        (Method::GET, "/v2/no_such_endpoint".to_string()),
        (Method::GET, TestApp::callflows(&"0".repeat(32))),
        (Method::PATCH, TestApp::callflows(&app.admin_account)),
    ] {
        let r = app.call(method, &path, Some(&token), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text);
        assert_eq!(r.data(), &json!({}));
    }
}

#[tokio::test]
async fn account_ids_are_checked_before_the_token_is_required() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::GET,
            "/v2/accounts/abc/callflows",
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "bad identifier");
    assert_eq!(r.data()["message"], "invalid account_id 'abc'");
    let missing = "f".repeat(32);
    let r = app
        .call(Method::GET, &TestApp::callflows(&missing), None, None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "missing account wins over missing token"
    );
    assert_eq!(r.body["message"], "bad_identifier");
    assert_eq!(r.data()["cause"], missing.as_str());
}

#[tokio::test]
async fn tokens_only_reach_their_own_tree() {
    let app = TestApp::spawn().await;
    let (acme, acme_token) = app.top_level_account("acme").await;
    let (globex, globex_token) = app.top_level_account("globex").await;

    // A sub-account of acme, with its own API key.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{acme}"),
            Some(&acme_token),
            Some(json!({"data": {"name": "Acme East", "realm": "east.acme.example.com"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let east = r.data()["id"].as_str().unwrap().to_string();
    let east_token = app
        .api_login(r.data()["api_key"].as_str().unwrap())
        .await
        .body["auth_token"]
        .as_str()
        .unwrap()
        .to_string();

    let acme_cf = app
        .create(&acme_token, &acme, json!({"numbers": ["1000"]}))
        .await;
    assert_eq!(acme_cf.status, StatusCode::CREATED);
    let acme_cf = acme_cf.data()["id"].as_str().unwrap().to_string();
    let east_cf = app
        .create(&east_token, &east, json!({"numbers": ["1000"]}))
        .await;
    assert_eq!(
        east_cf.status,
        StatusCode::CREATED,
        "same number in another account is fine"
    );
    let east_cf = east_cf.data()["id"].as_str().unwrap().to_string();

    // Another top-level account can neither read nor write acme's callflows.
    let r = app.fetch(&globex_token, &acme, &acme_cf).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["message"], "forbidden");
    assert_eq!(r.data(), &json!({"message": "forbidden"}));
    assert_eq!(
        app.list(&globex_token, &acme, "").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.create(&globex_token, &acme, json!({"numbers": ["1001"]}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("{}/{acme_cf}", TestApp::callflows(&acme)),
            Some(&globex_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.fetch(&acme_token, &acme, &acme_cf).await.status,
        StatusCode::OK,
        "nothing was deleted"
    );
    assert_eq!(
        app.list(&globex_token, &east, "").await.status,
        StatusCode::FORBIDDEN
    );

    // The parent manages its descendant; the child cannot climb up.
    assert_eq!(
        app.fetch(&acme_token, &east, &east_cf).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.fetch(&east_token, &acme, &acme_cf).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.list(&east_token, &globex, "").await.status,
        StatusCode::FORBIDDEN
    );

    // The superduper admin reaches everything.
    assert_eq!(
        app.fetch(&app.admin_token, &east, &east_cf).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.list(&app.admin_token, &globex, "").await.status,
        StatusCode::OK
    );

    // Account documents follow the same rule.
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{east}"),
            Some(&acme_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.data()["name"], "Acme East");
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{acme}"),
            Some(&globex_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sub_account_creation_validates_name() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}", app.admin_account),
            Some(&app.admin_token),
            Some(json!({"data": {"realm": "x.example"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.data()["name"]["required"]["message"],
        "Field is required but missing"
    );
}

/// `children` lists the accounts right below, `descendants` every account below, and a
/// sub-account's token reaches neither listing of its parent.
#[tokio::test]
async fn children_and_descendants_list_the_accounts_below() {
    let app = TestApp::spawn().await;
    let create = |parent: String, name: &'static str| {
        let app = &app;
        async move {
            let r = app
                .call(
                    Method::PUT,
                    &format!("/v2/accounts/{parent}"),
                    Some(&app.admin_token),
                    Some(json!({"data": {"name": name}})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            (
                r.data()["id"].as_str().unwrap().to_string(),
                r.data()["api_key"].as_str().unwrap().to_string(),
            )
        }
    };
    let (east, east_key) = create(app.admin_account.clone(), "East").await;
    let (west, _) = create(app.admin_account.clone(), "west").await;
    let (shop, _) = create(east.clone(), "Shop").await;
    let names = |r: &crate::helpers::Resp| -> Vec<String> {
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let list = |path: String| {
        let app = &app;
        async move {
            app.call(Method::GET, &path, Some(&app.admin_token), None)
                .await
        }
    };
    let r = list(format!("/v2/accounts/{}/children", app.admin_account)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(names(&r), ["East", "west"]);
    assert_eq!(r.data()[1]["id"], west.as_str());
    let r = list(format!("/v2/accounts/{}/descendants", app.admin_account)).await;
    assert_eq!(names(&r), ["East", "Shop", "west"]);
    let r = list(format!("/v2/accounts/{east}/children")).await;
    assert_eq!(names(&r), ["Shop"]);
    assert_eq!(r.data()[0]["id"], shop.as_str());
    let r = list(format!("/v2/accounts/{shop}/descendants")).await;
    assert_eq!(names(&r), Vec::<String>::new());

    // East's own key reaches East's listings, not its parent's.
    let token = app.api_login(&east_key).await.body["auth_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{east}/descendants"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(names(&r), ["Shop"]);
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/children", app.admin_account),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}
