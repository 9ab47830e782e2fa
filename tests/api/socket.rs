//! The real binary path: `App::build` on 127.0.0.1:0, driven with an HTTP client over TCP.

use serde_json::{json, Value};

use crate::helpers::{database_url, serve_args, ADMIN_PASSWORD};

#[tokio::test]
async fn server_answers_over_a_real_socket_and_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let args = serve_args(database_url(&dir));
    let app = callflowd::startup::App::build(&args).await.expect("build");
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().get("x-request-id").is_some());

    let creds = callflowd::auth::md5_credentials("admin", ADMIN_PASSWORD);
    let login: Value = client
        .put(format!("{base}/v2/user_auth"))
        .body(json!({"data": {"credentials": creds, "account_name": "admin"}}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["auth_token"].as_str().expect("token").to_string();
    let account = login["data"]["account_id"].as_str().unwrap().to_string();

    let created = client
        .put(format!("{base}/v2/accounts/{account}/callflows"))
        .header("X-Auth-Token", &token)
        .header("content-type", "application/json")
        .body(json!({"data": {"numbers": ["1000"]}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = created.json().await.unwrap();
    assert!(location.ends_with(body["data"]["id"].as_str().unwrap()));

    let listed: Value = client
        .get(format!("{base}/v2/accounts/{account}/callflows"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["numbers"], json!(["1000"]));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
