//! `PUT /v2/accounts/{A}/simulations`: one scenario per branching behaviour, through the
//! real router and store; documents saved through the API, events scripted.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// Saves a document of `segment` and answers its id.
async fn save(app: &TestApp, segment: &str, data: Value) -> String {
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}/{segment}", app.admin_account),
            Some(&app.admin_token),
            Some(json!({ "data": data })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{segment}: {}", r.text);
    r.data()["id"].as_str().expect("id").to_string()
}

async fn simulate(app: &TestApp, data: Value) -> Value {
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}/simulations", app.admin_account),
            Some(&app.admin_token),
            Some(json!({ "data": data })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data().clone()
}

/// `module` or `module->branch` per step.
fn walk(trace: &Value) -> Vec<String> {
    trace["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| match s["branch"].as_str() {
            Some(b) => format!("{}->{b}", s["module"].as_str().unwrap_or("?")),
            None => s["module"].as_str().unwrap_or("?").to_string(),
        })
        .collect()
}

fn outcome(trace: &Value) -> &str {
    trace["outcome"]["kind"].as_str().expect("outcome kind")
}

fn warned(trace: &Value, code: &str) -> bool {
    trace["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .any(|w| w["code"] == code)
}

#[tokio::test]
async fn smoke_prints_a_trace() {
    let app = TestApp::spawn().await;
    let user = save(
        &app,
        "users",
        json!({"first_name": "Ann", "last_name": "Lee"}),
    )
    .await;
    save(
        &app,
        "devices",
        json!({"name": "Ann's desk", "owner_id": user}),
    )
    .await;
    let vm = save(
        &app,
        "vmboxes",
        json!({"name": "Ann VM", "mailbox": "3001"}),
    )
    .await;
    save(
        &app,
        "callflows",
        json!({"numbers": ["3001"], "flow": {"module": "user", "data": {"id": user},
            "children": {"_": {"module": "voicemail", "data": {"id": vm}}}}}),
    )
    .await;
    let t = simulate(
        &app,
        json!({"number": "3001", "events": [{"bridge": "failed", "cause": "NO_ANSWER"}]}),
    )
    .await;
    println!("{}", serde_json::to_string_pretty(&t).unwrap());
    assert_eq!(outcome(&t), "voicemail");
    assert!(walk(&t).len() >= 2);
    assert!(!warned(&t, "document_missing"), "{t}");
}
