//! Saved call tests: CRUD under `/callflow_tests`, `PUT /callflow_tests/run`, the gate that
//! runs affected tests on every write (blocking on a failing `gate: true` test with a 400 and
//! its first divergence), `skip_tests`, re-runs when a menu or a temporal rule a test touched
//! changes, last results, and authorisation.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Resp, TestApp};

fn url(app: &TestApp, rest: &str) -> String {
    format!("/v2/accounts/{}/{rest}", app.admin_account)
}

async fn put(app: &TestApp, rest: &str, data: Value) -> Resp {
    app.call(
        Method::PUT,
        &url(app, rest),
        Some(&app.admin_token),
        Some(json!({"data": data})),
    )
    .await
}

async fn post(app: &TestApp, rest: &str, data: Value) -> Resp {
    app.call(
        Method::POST,
        &url(app, rest),
        Some(&app.admin_token),
        Some(json!({"data": data})),
    )
    .await
}

async fn save(app: &TestApp, segment: &str, data: Value) -> String {
    let r = put(app, segment, data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{segment}: {}", r.text);
    r.data()["id"].as_str().unwrap().to_string()
}

async fn run(app: &TestApp, tests: Value) -> Value {
    let r = put(app, "callflow_tests/run", json!({"tests": tests})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data().clone()
}

struct Office {
    app: TestApp,
    user: String,
    vmbox: String,
    device: String,
}

async fn office() -> Office {
    let app = TestApp::spawn().await;
    let user = save(
        &app,
        "users",
        json!({"first_name": "Ann", "last_name": "Lee"}),
    )
    .await;
    let device = save(&app, "devices", json!({"name": "Desk", "owner_id": user})).await;
    let vmbox = save(&app, "vmboxes", json!({"name": "Ann", "mailbox": "3001"})).await;
    Office {
        app,
        user,
        vmbox,
        device,
    }
}

#[tokio::test]
async fn a_saved_test_is_created_listed_and_run() {
    let o = office().await;
    let app = &o.app;
    let cf = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["100"], "flow": {"module": "user", "data": {"id": o.user}, "children": {"_": {"module": "voicemail", "data": {"id": o.vmbox}}}}}),
        )
        .await;
    let id = save(
        app,
        "callflow_tests",
        json!({"name": "100 rings Ann", "simulation": {"number": "100", "events": [{"bridge": "answered"}]},
               "expect": {"callflow_id": cf, "outcome": "connected", "endpoint": {"type": "user", "id": o.user},
                          "visits": ["user"], "branches": {}}}),
    )
    .await;
    let r = app
        .call(
            Method::GET,
            &url(app, "callflow_tests"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.data()[0]["name"], "100 rings Ann");
    assert_eq!(r.data()[0]["gate"], false);

    let data = run(app, json!([])).await;
    assert_eq!(data["summary"], json!({"run": 1, "passed": 1, "failed": 0}));
    assert_eq!(data["results"][0]["result"], "pass");
    // The last result is kept and listed.
    let r = app
        .call(
            Method::GET,
            &url(app, "callflow_tests"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.data()[0]["last_result"], "pass");

    // A failing expectation reports its first divergence.
    let r = post(
        app,
        &format!("callflow_tests/{id}"),
        json!({"name": "100 rings Ann", "simulation": {"number": "100", "events": [{"bridge": "timeout"}]},
               "expect": {"outcome": "connected", "visits": ["user", "menu"]}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let data = run(app, json!(["100 rings Ann"])).await;
    let result = &data["results"][0];
    assert_eq!(result["result"], "fail");
    assert!(
        result["divergence"]
            .as_str()
            .unwrap()
            .starts_with("outcome: expected connected, got voicemail"),
        "{result}"
    );
    // Selecting by an unknown name runs nothing.
    assert_eq!(run(app, json!(["nope"])).await["summary"]["run"], 0);
}

#[tokio::test]
async fn a_gating_test_blocks_a_breaking_change_with_its_divergence_unless_skipped() {
    let o = office().await;
    let app = &o.app;
    let cf = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["100"], "flow": {"module": "user", "data": {"id": o.user}}}),
        )
        .await;
    save(
        app,
        "callflow_tests",
        json!({"name": "reception answers", "gate": true,
               "simulation": {"number": "100", "events": [{"bridge": "answered"}]},
               "expect": {"outcome": "connected", "endpoint": {"type": "user", "id": o.user}}}),
    )
    .await;
    save(
        app,
        "callflow_tests",
        json!({"name": "informational", "simulation": {"number": "100", "events": [{"bridge": "answered"}]},
               "expect": {"endpoint": {"type": "user"}}}),
    )
    .await;
    // A harmless change runs both tests and returns their results beside the data.
    let r = post(
        app,
        &format!("callflows/{cf}"),
        json!({"name": "Reception", "numbers": ["100"], "flow": {"module": "user", "data": {"id": o.user}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ran = r.body["callflow_tests"]
        .as_array()
        .expect("results beside data");
    assert_eq!(ran.len(), 2);
    assert!(ran.iter().all(|t| t["result"] == "pass"));

    // Sending number 100 to the voicemail box breaks the gating test: refused, unchanged.
    let breaking = json!({"name": "Reception", "numbers": ["100"], "flow": {"module": "voicemail", "data": {"id": o.vmbox}}});
    let r = post(app, &format!("callflows/{cf}"), breaking.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["message"], "callflow_tests_failed");
    let failed = r.data()["callflow_tests"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "only gating tests are named: {}", r.text);
    assert_eq!(failed[0]["name"], "reception answers");
    assert!(failed[0]["divergence"]
        .as_str()
        .unwrap()
        .starts_with("outcome: expected connected, got voicemail"));
    let r = app.fetch(&app.admin_token, &app.admin_account, &cf).await;
    assert_eq!(
        r.data()["flow"]["module"],
        "user",
        "the write did not happen"
    );

    // A new callflow stealing the number with a pattern is a write too.
    let r = put(
        app,
        "callflows",
        json!({"patterns": ["^1(\\d\\d)$"], "flow": {"module": "hangup", "data": {}}}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "exact numbers win: {}",
        r.text
    );

    // skip_tests=true lets it through, says so, and the next run shows the failure.
    let r = app
        .call(
            Method::POST,
            &format!("{}?skip_tests=true", url(app, &format!("callflows/{cf}"))),
            Some(&app.admin_token),
            Some(json!({"data": breaking})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["callflow_tests"], json!({"skipped": true}));
    let data = run(app, json!(["reception answers"])).await;
    assert_eq!(data["results"][0]["result"], "fail");

    // Deleting the device leaves the user with nothing to ring: a write to a touched document.
    let r = post(
        app,
        &format!("callflows/{cf}"),
        json!({"numbers": ["100"], "flow": {"module": "user", "data": {"id": o.user}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .call(
            Method::DELETE,
            &url(app, &format!("devices/{}", o.device)),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["message"], "callflow_tests_failed");
}

#[tokio::test]
async fn tests_rerun_when_a_menu_or_temporal_rule_they_touched_changes() {
    let o = office().await;
    let app = &o.app;
    let menu = save(
        app,
        "menus",
        json!({"name": "Main", "retries": 2, "hunt": false}),
    )
    .await;
    let rule = save(
        app,
        "temporal_rules",
        json!({"name": "Office hours", "cycle": "weekly", "interval": 1,
               "wdays": ["monday", "tuesday", "wednesday", "thursday", "friday"],
               "time_window_start": 32400, "time_window_stop": 61200}),
    )
    .await;
    app.create_ok(
        &app.admin_account,
        json!({"numbers": ["200"], "flow": {"module": "temporal_route",
            "data": {"rules": [rule], "timezone": "America/New_York"},
            "children": {
                rule.clone(): {"module": "menu", "data": {"id": menu}, "children": {
                    "1": {"module": "user", "data": {"id": o.user}},
                    "_": {"module": "voicemail", "data": {"id": o.vmbox}}}},
                "_": {"module": "voicemail", "data": {"id": o.vmbox}}}}}),
    )
    .await;
    // Monday 9 March 2026, 10:30 in New York; a wrong key first, then 1.
    save(
        app,
        "callflow_tests",
        json!({"name": "open hours menu", "gate": true,
               "simulation": {"number": "200", "now": "2026-03-09T14:30:00Z",
                              "events": [{"dtmf": "9"}, {"dtmf": "1"}, {"bridge": "answered"}]},
               "expect": {"outcome": "connected", "branches": {"flow": rule}, "visits": ["temporal_route", "menu", "user"]}}),
    )
    .await;
    assert_eq!(run(app, json!([])).await["results"][0]["result"], "pass");

    // One retry only: the wrong key uses it up and the caller lands in voicemail.
    let r = post(
        app,
        &format!("menus/{menu}"),
        json!({"name": "Main", "retries": 1, "hunt": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.data()["callflow_tests"][0]["name"], "open hours menu");
    // A menu change that keeps the test green goes through, and says it ran the test.
    let r = post(
        app,
        &format!("menus/{menu}"),
        json!({"name": "Main menu", "retries": 3, "hunt": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["callflow_tests"][0]["result"], "pass");

    // Opening at 11:00 instead of 09:00 closes the office at 10:30: blocked, with the branch.
    let r = post(
        app,
        &format!("temporal_rules/{rule}"),
        json!({"name": "Office hours", "cycle": "weekly", "interval": 1,
               "wdays": ["monday", "tuesday", "wednesday", "thursday", "friday"],
               "time_window_start": 39600, "time_window_stop": 61200}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let divergence = r.data()["callflow_tests"][0]["divergence"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        divergence.contains("outcome: expected connected"),
        "{divergence}"
    );

    // Documents the test never touched do not run it.
    let r = put(app, "media", json!({"name": "Unrelated"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body.get("callflow_tests").is_none(), "{}", r.text);
}

#[tokio::test]
async fn call_tests_belong_to_their_account() {
    let o = office().await;
    let app = &o.app;
    let (other, other_token) = app.top_level_account("intruder").await;
    let id = save(
        app,
        "callflow_tests",
        json!({"name": "t", "simulation": {"number": "1"}}),
    )
    .await;
    for (method, path) in [
        (Method::GET, url(app, "callflow_tests")),
        (Method::GET, url(app, &format!("callflow_tests/{id}"))),
        (Method::PUT, url(app, "callflow_tests/run")),
    ] {
        let r = app
            .call(
                method.clone(),
                &path,
                Some(&other_token),
                Some(json!({"data": {}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        let r = app
            .call(method, &path, None, Some(json!({"data": {}})))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // The other account's own run sees none of them.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{other}/callflow_tests/run"),
            Some(&other_token),
            Some(json!({"data": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["summary"]["run"], 0);
    // A test without a simulation is refused by the schema.
    let r = put(app, "callflow_tests", json!({"name": "empty"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Publishing a draft is a write like any other: a gating test it would break refuses it, and
/// `skip_tests` lets it through.
#[tokio::test]
async fn publishing_a_draft_that_breaks_a_gating_test_is_refused() {
    let o = office().await;
    let app = &o.app;
    let cf = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["100"], "flow": {"module": "user", "data": {"id": o.user}}}),
        )
        .await;
    save(
        app,
        "callflow_tests",
        json!({"name": "reception answers", "gate": true,
               "simulation": {"number": "100", "events": [{"bridge": "answered"}]},
               "expect": {"outcome": "connected", "endpoint": {"type": "user", "id": o.user}}}),
    )
    .await;
    let r = post(
        app,
        &format!("callflows/{cf}/draft"),
        json!({"numbers": ["100"], "flow": {"module": "voicemail", "data": {"id": o.vmbox}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let r = put(app, &format!("callflows/{cf}/draft/publish"), json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["message"], "callflow_tests_failed");
    assert_eq!(r.data()["callflow_tests"][0]["name"], "reception answers");
    let r = app.fetch(&app.admin_token, &app.admin_account, &cf).await;
    assert_eq!(r.data()["flow"]["module"], "user", "still the live flow");

    let r = put(
        app,
        &format!("callflows/{cf}/draft/publish?skip_tests=true"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.fetch(&app.admin_token, &app.admin_account, &cf).await;
    assert_eq!(r.data()["flow"]["module"], "voicemail", "published");
}
