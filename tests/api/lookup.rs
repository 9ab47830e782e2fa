//! Routing through HTTP: lookups follow writes at once, stay inside the account, and move
//! the metrics.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

fn lookup_path(account: &str, number: &str) -> String {
    format!(
        "/v2/accounts/{account}/lookup?number={}",
        number.replace('+', "%2B").replace('*', "%2A")
    )
}

#[tokio::test]
async fn lookup_follows_create_change_and_delete() {
    let app = TestApp::spawn().await;
    let acc = app.admin_account.clone();
    let t = app.admin_token.clone();

    let r = app
        .call(Method::GET, &lookup_path(&acc, "1000"), Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "bad_identifier");
    assert_eq!(r.data()["cause"], "1000");

    let id = app
        .create_ok(
            &acc,
            json!({"name": "Main", "numbers": ["1000"], "patterns": ["^\\*7([0-9]{2,})$"]}),
        )
        .await;
    let r = app
        .call(Method::GET, &lookup_path(&acc, "1000"), Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["callflow_id"], id.as_str());
    assert_eq!(
        r.data()["match"],
        json!({"type": "number", "value": "1000"})
    );
    assert_eq!(r.data()["callflow"]["name"], "Main");

    let r = app
        .call(Method::GET, &lookup_path(&acc, "*7101"), Some(&t), None)
        .await;
    assert_eq!(
        r.data()["match"],
        json!({"type": "pattern", "value": "^\\*7([0-9]{2,})$"})
    );
    assert_eq!(r.data()["capture_group"], "101");
    assert_eq!(r.data()["explain"]["matched_patterns"][0]["capture"], "101");

    // Change: the old number stops routing at once, the new one starts.
    let r = app
        .call(
            Method::POST,
            &format!("{}/{id}", TestApp::callflows(&acc)),
            Some(&t),
            Some(json!({"data": {"name": "Main", "numbers": ["2000"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.call(Method::GET, &lookup_path(&acc, "1000"), Some(&t), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::GET, &lookup_path(&acc, "*7101"), Some(&t), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::GET, &lookup_path(&acc, "2000"), Some(&t), None)
            .await
            .data()["callflow_id"],
        id.as_str()
    );

    // Patch adds a pattern; delete removes everything.
    let r = app
        .call(
            Method::PATCH,
            &format!("{}/{id}", TestApp::callflows(&acc)),
            Some(&t),
            Some(json!({"data": {"patterns": ["^(?<ext>3\\d{3})$"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .call(Method::GET, &lookup_path(&acc, "3123"), Some(&t), None)
        .await;
    assert_eq!(r.data()["capture_groups"], json!({"ext": "3123"}));
    app.call(
        Method::DELETE,
        &format!("{}/{id}", TestApp::callflows(&acc)),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(
        app.call(Method::GET, &lookup_path(&acc, "2000"), Some(&t), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::GET, &lookup_path(&acc, "3123"), Some(&t), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn no_match_only_for_digit_numbers_and_allowed_callers() {
    let app = TestApp::spawn().await;
    let acc = app.admin_account.clone();
    let t = app.admin_token.clone();
    let id = app.create_ok(&acc, json!({"numbers": ["no_match"]})).await;
    let r = app
        .call(Method::GET, &lookup_path(&acc, "+15551234"), Some(&t), None)
        .await;
    assert_eq!(r.data()["match"]["type"], "no_match");
    assert_eq!(r.data()["callflow_id"], id.as_str());
    let r = app
        .call(
            Method::GET,
            &format!("{}&allow_no_match=false", lookup_path(&acc, "5551234")),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call(Method::GET, &lookup_path(&acc, "*99"), Some(&t), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn another_accounts_numbers_are_never_returned() {
    let app = TestApp::spawn().await;
    let (acme, acme_token) = app.top_level_account("acme").await;
    let (globex, globex_token) = app.top_level_account("globex").await;
    let acme_cf = app
        .create(
            &acme_token,
            &acme,
            json!({"numbers": ["1000"], "patterns": ["^9(\\d+)$"]}),
        )
        .await;
    assert_eq!(acme_cf.status, StatusCode::CREATED);
    for n in ["1000", "9123"] {
        let r = app
            .call(
                Method::GET,
                &lookup_path(&globex, n),
                Some(&globex_token),
                None,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{n} must not route in globex"
        );
    }
    let r = app
        .call(
            Method::GET,
            &lookup_path(&acme, "1000"),
            Some(&globex_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(
            Method::GET,
            &lookup_path(&acme, "1000"),
            Some(&acme_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{acme}/lookup"),
            Some(&acme_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.data()["number"]["required"].is_object());
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_move_with_lookups_and_rebuilds() {
    let app = TestApp::spawn().await;
    let acc = app.admin_account.clone();
    let t = app.admin_token.clone();
    app.create_ok(&acc, json!({"numbers": ["1000"]})).await;
    let before = app.call(Method::GET, "/metrics", None, None).await.text;
    app.call(Method::GET, &lookup_path(&acc, "1000"), Some(&t), None)
        .await;
    app.call(Method::GET, &lookup_path(&acc, "4444"), Some(&t), None)
        .await;
    app.create_ok(&acc, json!({"numbers": ["1001"]})).await;
    let r = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let after = r.text;
    let c = |text: &str, k: &str| metric(text, k);
    assert!(
        c(&after, "callflowd_lookups_total{result=\"number\"}")
            >= c(&before, "callflowd_lookups_total{result=\"number\"}") + 1.0
    );
    assert!(
        c(&after, "callflowd_lookups_total{result=\"not_found\"}")
            >= c(&before, "callflowd_lookups_total{result=\"not_found\"}") + 1.0
    );
    assert!(
        c(&after, "callflowd_lookup_duration_seconds_count")
            >= c(&before, "callflowd_lookup_duration_seconds_count") + 2.0
    );
    assert!(c(&after, "callflowd_route_rebuilds_total{kind=\"load\"}") >= 1.0);
    assert!(c(&after, "callflowd_route_rebuilds_total{kind=\"update\"}") >= 1.0);
    assert!(after.contains("callflowd_route_rebuild_duration_seconds_bucket"));
    assert!(after.contains("callflowd_route_cache_accounts"));
}

#[tokio::test]
async fn snapshots_are_evicted_under_the_memory_budget_and_reload() {
    let app = TestApp::spawn().await;
    let mut accounts = Vec::new();
    for name in ["alpha", "beta", "gamma", "delta"] {
        let (acc, token) = app.top_level_account(name).await;
        let r = app
            .create(&token, &acc, json!({"numbers": ["1000", "1001"]}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        accounts.push((acc, r.data()["id"].as_str().unwrap().to_string()));
    }
    // A budget that holds about two small snapshots.
    let one = app
        .state
        .routes
        .table(&accounts[0].0)
        .await
        .unwrap()
        .weight();
    let cache = callflowd::routing::RouteCache::new(app.state.store.clone(), one * 2 + one / 2);
    for _ in 0..3 {
        for (acc, id) in &accounts {
            let table = cache.table(acc).await.unwrap();
            assert_eq!(
                table.lookup("1000", true, false).unwrap().callflow_id,
                id.as_str()
            );
        }
    }
    assert!(
        cache.cached_accounts() <= 2,
        "cached {}",
        cache.cached_accounts()
    );
    assert!(cache.cached_accounts() >= 1);
}

#[tokio::test]
async fn cli_lookup_prints_the_same_data() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Ext", "patterns": ["^(?<ext>2\\d{3})$"]}),
        )
        .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callflowd"))
        .args([
            "lookup",
            "--account",
            &app.admin_account,
            "2001",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .expect("run callflowd lookup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let http = app
        .call(
            Method::GET,
            &lookup_path(&app.admin_account, "2001"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(&data, http.data());
    assert_eq!(data["callflow_id"], id.as_str());
    assert_eq!(data["capture_groups"], json!({"ext": "2001"}));
    let miss = std::process::Command::new(env!("CARGO_BIN_EXE_callflowd"))
        .args([
            "lookup",
            "--account",
            &app.admin_account,
            "*99",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .unwrap();
    assert_eq!(miss.status.code(), Some(1));
    assert!(miss.stdout.is_empty());
}

#[tokio::test]
async fn cli_create_account_prints_one_json_object() {
    let app = TestApp::spawn().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callflowd"))
        .args([
            "create-account",
            "--name",
            "Acme",
            "--realm",
            "acme.example",
            "--username",
            "alice",
            "--password",
            "pw",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .expect("run create-account");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("only JSON on stdout");
    assert_eq!(v["account_id"].as_str().unwrap().len(), 32);
    assert_eq!(v["api_key"].as_str().unwrap().len(), 64);
    let token = app.login("alice", "acme.example", "pw").await;
    let acc = v["account_id"].as_str().unwrap();
    assert_eq!(app.list(&token, acc, "").await.status, StatusCode::OK);
    assert_eq!(
        app.list(&token, &app.admin_account, "").await.status,
        StatusCode::FORBIDDEN,
        "not a superduper account"
    );
}
