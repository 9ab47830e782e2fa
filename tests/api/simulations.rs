//! `PUT /v2/accounts/{A}/simulations`: one scenario per branching behaviour, through the
//! real router and store; documents saved through the API, events scripted.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{save, TestApp};

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

/// A device, a voicemail box and a media document to point flows at.
struct Fixture {
    app: TestApp,
    device: String,
    other_device: String,
    vmbox: String,
    media: String,
}

async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    let user = save(
        &app,
        "users",
        json!({"first_name": "Ann", "last_name": "Lee"}),
    )
    .await;
    let device = save(
        &app,
        "devices",
        json!({"name": "Front desk", "owner_id": user}),
    )
    .await;
    let other_device = save(&app, "devices", json!({"name": "Back office"})).await;
    let vmbox = save(
        &app,
        "vmboxes",
        json!({"name": "Sales VM", "mailbox": "3001"}),
    )
    .await;
    let media = save(&app, "media", json!({"name": "Closed greeting"})).await;
    Fixture {
        app,
        device,
        other_device,
        vmbox,
        media,
    }
}

impl Fixture {
    /// Saves a callflow for `number` with this flow; answers its id.
    async fn flow(&self, number: &str, flow: Value) -> String {
        save(
            &self.app,
            "callflows",
            json!({"numbers": [number], "flow": flow}),
        )
        .await
    }

    fn voicemail(&self) -> Value {
        json!({"module": "voicemail", "data": {"id": self.vmbox}})
    }

    fn device(&self) -> Value {
        json!({"module": "device", "data": {"id": self.device}})
    }
}

#[tokio::test]
async fn a_menu_retries_an_invalid_key_then_takes_a_valid_one() {
    let f = fixture().await;
    let menu = save(&f.app, "menus", json!({"name": "Main", "retries": 3})).await;
    f.flow(
        "5000",
        json!({"module": "menu", "data": {"id": menu},
               "children": {"1": f.device(), "2": f.voicemail()}}),
    )
    .await;
    let t = simulate(
        &f.app,
        json!({"number": "5000", "events": [{"dtmf": "9"}, {"dtmf": "1"}, {"bridge": "answered"}]}),
    )
    .await;
    assert_eq!(walk(&t), ["menu", "menu->1", "device"], "{t}");
    assert_eq!(outcome(&t), "connected");
    assert_eq!(t["outcome"]["endpoint"]["id"], f.device.as_str());
    assert!(
        t["steps"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("'Main'"),
        "{t}"
    );
    assert!(!warned(&t, "event_unused"), "{t}");
}

#[tokio::test]
async fn a_menu_that_times_out_takes_max_retries() {
    let f = fixture().await;
    let menu = save(&f.app, "menus", json!({"name": "Main", "retries": 2})).await;
    f.flow(
        "5000",
        json!({"module": "menu", "data": {"id": menu},
               "children": {"1": f.device(), "max_retries": f.voicemail()}}),
    )
    .await;
    let t = simulate(
        &f.app,
        json!({"number": "5000", "events": [{"no_input": true}, {"no_input": true}]}),
    )
    .await;
    assert_eq!(
        walk(&t).last().map(String::as_str),
        Some("voicemail"),
        "{t}"
    );
    assert!(walk(&t).contains(&"menu->max_retries".to_string()), "{t}");
    assert_eq!(outcome(&t), "voicemail");
}

#[tokio::test]
async fn hash_in_a_menu_ends_the_entry_empty_and_takes_timeout() {
    let f = fixture().await;
    let menu = save(&f.app, "menus", json!({"name": "Main"})).await;
    f.flow(
        "5000",
        json!({"module": "menu", "data": {"id": menu},
               "children": {"1": f.device(), "timeout": f.voicemail()}}),
    )
    .await;
    let t = simulate(&f.app, json!({"number": "5000", "events": [{"dtmf": "#"}]})).await;
    assert_eq!(walk(&t), ["menu->timeout", "voicemail"], "{t}");
    assert_eq!(outcome(&t), "voicemail");
}

#[tokio::test]
async fn a_ring_group_that_nobody_answers_fails_over_to_underscore() {
    let f = fixture().await;
    f.flow(
        "6000",
        json!({"module": "ring_group", "data": {"name": "Sales", "endpoints": [
                {"id": f.device, "endpoint_type": "device"},
                {"id": f.other_device, "endpoint_type": "device"}]},
               "children": {"_": f.voicemail()}}),
    )
    .await;
    let t = simulate(
        &f.app,
        json!({"number": "6000", "events": [{"bridge": "failed", "cause": "NO_ANSWER", "code": "sip:480"}]}),
    )
    .await;
    assert_eq!(walk(&t), ["ring_group->_", "voicemail"], "{t}");
    assert_eq!(outcome(&t), "voicemail");
    let summary = t["steps"][0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("Front desk") && summary.contains("Back office"),
        "{summary}"
    );
}

#[tokio::test]
async fn a_busy_user_takes_the_user_busy_child() {
    let f = fixture().await;
    let user = save(
        &f.app,
        "users",
        json!({"first_name": "Bo", "last_name": "Ng"}),
    )
    .await;
    save(
        &f.app,
        "devices",
        json!({"name": "Bo's phone", "owner_id": user}),
    )
    .await;
    let busy_box = save(
        &f.app,
        "vmboxes",
        json!({"name": "Busy box", "mailbox": "3002"}),
    )
    .await;
    f.flow(
        "7000",
        json!({"module": "user", "data": {"id": user},
               "children": {"USER_BUSY": {"module": "voicemail", "data": {"id": busy_box}},
                            "_": f.voicemail()}}),
    )
    .await;
    let t = simulate(
        &f.app,
        json!({"number": "7000", "events": [{"bridge": "failed", "cause": "USER_BUSY", "code": "sip:486"}]}),
    )
    .await;
    assert_eq!(walk(&t), ["user->USER_BUSY", "voicemail"], "{t}");
    assert_eq!(t["outcome"]["endpoint"]["id"], busy_box.as_str());
}

#[tokio::test]
async fn resources_that_fail_never_use_underscore() {
    let f = fixture().await;
    f.flow(
        "8000",
        json!({"module": "resources", "data": {}, "children": {"_": f.voicemail()}}),
    )
    .await;
    let t = simulate(
        &f.app,
        json!({"number": "8000", "events": [{"bridge": "failed", "cause": "NO_ROUTE_DESTINATION", "code": "sip:404"}]}),
    )
    .await;
    assert!(!walk(&t).iter().any(|s| s.starts_with("voicemail")), "{t}");
    assert_eq!(outcome(&t), "hangup", "{t}");
}

#[tokio::test]
async fn voicemail_continues_to_underscore_after_the_message() {
    let f = fixture().await;
    f.flow(
        "3001",
        json!({"module": "voicemail", "data": {"id": f.vmbox},
               "children": {"_": {"module": "play", "data": {"id": f.media}}}}),
    )
    .await;
    let t = simulate(
        &f.app,
        json!({"number": "3001", "events": [{"record": "done"}]}),
    )
    .await;
    assert_eq!(walk(&t), ["voicemail->_", "play"], "{t}");
    assert!(
        t["steps"][1]["summary"]
            .as_str()
            .unwrap()
            .contains("Closed greeting"),
        "{t}"
    );
}

#[tokio::test]
async fn a_callflow_jump_returns_to_the_parents_underscore() {
    let f = fixture().await;
    let inner = f
        .flow("9001", json!({"module": "play", "data": {"id": f.media}}))
        .await;
    let outer = f
        .flow(
            "9000",
            json!({"module": "callflow", "data": {"id": inner}, "children": {"_": f.voicemail()}}),
        )
        .await;
    let t = simulate(&f.app, json!({"number": "9000"})).await;
    assert_eq!(walk(&t), ["callflow", "play", "voicemail"], "{t}");
    assert_eq!(t["steps"][1]["callflow_id"], inner.as_str());
    assert_eq!(t["steps"][1]["depth"], 1);
    assert_eq!(t["steps"][2]["callflow_id"], outer.as_str());
    assert_eq!(t["steps"][2]["depth"], 0);
    assert_eq!(outcome(&t), "voicemail");
}

#[tokio::test]
async fn a_callflow_that_jumps_to_itself_ends_on_the_branch_budget() {
    let f = fixture().await;
    let id = f
        .flow("9100", json!({"module": "play", "data": {"id": f.media}}))
        .await;
    let r = f
        .app
        .call(
            Method::POST,
            &format!("/v2/accounts/{}/callflows/{id}", f.app.admin_account),
            Some(&f.app.admin_token),
            Some(json!({"data": {"numbers": ["9100"],
                "flow": {"module": "callflow", "data": {"id": id}}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = simulate(&f.app, json!({"number": "9100"})).await;
    assert_eq!(outcome(&t), "loop", "{t}");
    assert!(warned(&t, "branch_budget"), "{t}");
    let steps = t["steps"].as_array().unwrap().len();
    assert!((50..=52).contains(&steps), "{steps} steps");
}

#[tokio::test]
async fn check_cid_branches_on_the_callers_number() {
    let f = fixture().await;
    let other_box = save(
        &f.app,
        "vmboxes",
        json!({"name": "Elsewhere", "mailbox": "3003"}),
    )
    .await;
    f.flow(
        "4000",
        json!({"module": "check_cid", "data": {"regex": "^\\+1415"},
               "children": {"match": f.voicemail(),
                            "nomatch": {"module": "voicemail", "data": {"id": other_box}}}}),
    )
    .await;
    let local = simulate(
        &f.app,
        json!({"number": "4000", "caller": {"id_number": "+14155550199"}}),
    )
    .await;
    assert_eq!(walk(&local)[0], "check_cid->match", "{local}");
    assert_eq!(local["outcome"]["endpoint"]["id"], f.vmbox.as_str());
    let far = simulate(
        &f.app,
        json!({"number": "4000", "caller": {"id_number": "+33155550199"}}),
    )
    .await;
    assert_eq!(walk(&far)[0], "check_cid->nomatch", "{far}");
    assert_eq!(far["outcome"]["endpoint"]["id"], other_box.as_str());
}

#[tokio::test]
async fn a_metaflow_transfers_to_the_captured_number() {
    let f = fixture().await;
    let reception = save(
        &f.app,
        "devices",
        json!({"name": "Reception", "metaflows": {"binding_digit": "*",
            "patterns": {"^3(\\d+)$": {"module": "transfer", "data": {}}}}}),
    )
    .await;
    let target = f.flow("2001", f.voicemail()).await;
    f.flow("1000", f.device()).await;
    let t = simulate(
        &f.app,
        json!({"number": "1000", "caller": {"device_id": reception, "id_number": "100"},
               "events": [{"bridge": "answered"}, {"dtmf": "*32001", "leg": "a"}]}),
    )
    .await;
    assert_eq!(outcome(&t), "transferred", "{t}");
    assert_eq!(t["outcome"]["endpoint"]["id"], "2001");
    let last = t["steps"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["summary"].as_str().unwrap().contains(&target),
        "{last}"
    );
}

#[tokio::test]
async fn a_draft_runs_with_inline_documents_that_win_over_stored_ones() {
    let f = fixture().await;
    let menu = save(
        &f.app,
        "menus",
        json!({"name": "Stored menu", "retries": 1}),
    )
    .await;
    // A draft is validated as a save would be (numbers included), and never stored.
    let draft = json!({"numbers": ["5555"], "flow": {"module": "menu", "data": {"id": menu},
                                "children": {"1": f.device()}}});
    // Stored: one retry, so "9" then "1" never reaches "1". The draft's menu allows two.
    let stored = simulate(
        &f.app,
        json!({"number": "5555", "callflow": draft, "events": [{"dtmf": "9"}, {"dtmf": "1"}]}),
    )
    .await;
    assert_ne!(outcome(&stored), "connected", "{stored}");
    let t = simulate(
        &f.app,
        json!({"number": "5555", "callflow": draft,
               "documents": {"menus": {menu.clone(): {"name": "Draft menu", "retries": 2}}},
               "events": [{"dtmf": "9"}, {"dtmf": "1"}, {"bridge": "answered"}]}),
    )
    .await;
    assert_eq!(walk(&t), ["menu", "menu->1", "device"], "{t}");
    assert!(
        t["steps"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("'Draft menu'"),
        "{t}"
    );
    assert_eq!(t["lookup"]["match"]["type"], "draft");
    // Nothing was stored: the menu is still the stored one.
    let r = f
        .app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/menus/{menu}", f.app.admin_account),
            Some(&f.app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.data()["name"], "Stored menu");
}

#[tokio::test]
async fn bad_requests_get_kazoo_field_errors() {
    let f = fixture().await;
    let cases = [
        (json!({}), "number"),
        (json!({"number": "1", "now": "yesterday"}), "now"),
        (
            json!({"number": "1", "events": [{"dtmf": "1"}, {"teleport": true}]}),
            "events",
        ),
        (json!({"number": "1", "max_steps": 0}), "max_steps"),
        (
            json!({"number": "1", "documents": {"spaceships": {}}}),
            "documents",
        ),
        (
            json!({"number": "1", "callflow": {"flow": {"module": 3}}}),
            "callflow",
        ),
        (
            json!({"number": "1", "documents": {"menus": {"m": {"retries": "many"}}}}),
            "documents",
        ),
    ];
    for (data, field) in cases {
        let r = f
            .app
            .call(
                Method::PUT,
                &format!("/v2/accounts/{}/simulations", f.app.admin_account),
                Some(&f.app.admin_token),
                Some(json!({ "data": data })),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{data}: {}", r.text);
        assert_eq!(r.body["message"], "validation error", "{}", r.text);
        let keys: Vec<&String> = r.data().as_object().expect("errors").keys().collect();
        assert!(
            keys.iter().any(|k| k.split('.').next() == Some(field)),
            "{data}: {}",
            r.text
        );
    }
    // An unknown callflow id is Kazoo's 404.
    let r = f
        .app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}/simulations", f.app.admin_account),
            Some(&f.app.admin_token),
            Some(
                json!({"data": {"number": "1", "callflow_id": "0123456789abcdef0123456789abcdef"}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

#[tokio::test]
async fn a_number_nothing_takes_has_no_route() {
    let f = fixture().await;
    let t = simulate(&f.app, json!({"number": "5550000"})).await;
    assert_eq!(outcome(&t), "no_route");
    assert_eq!(t["lookup"], Value::Null);
    assert_eq!(t["steps"], json!([]));
}

#[tokio::test]
async fn a_user_who_does_not_answer_goes_to_voicemail_with_the_lookup_explained() {
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
    assert_eq!(
        t["lookup"]["match"],
        json!({"type": "number", "value": "3001"})
    );
    assert_eq!(walk(&t), ["user->_", "voicemail"], "{t}");
    assert!(
        t["steps"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("Ann Lee"),
        "{t}"
    );
    assert_eq!(
        t["steps"][0]["event"],
        json!({"bridge": "failed", "cause": "NO_ANSWER"})
    );
    assert_eq!(outcome(&t), "voicemail");
    assert!(walk(&t).len() >= 2);
    assert!(!warned(&t, "document_missing"), "{t}");
}

/// `callflowd simulate` prints the data the API answers (same request, same instant), or the
/// path as a tree.
#[tokio::test]
async fn the_cli_prints_what_the_api_answers() {
    let f = fixture().await;
    let menu = save(&f.app, "menus", json!({"name": "Main"})).await;
    f.flow(
        "5000",
        json!({"module": "menu", "data": {"id": menu},
               "children": {"1": f.device(), "_": f.voicemail()}}),
    )
    .await;
    let events = json!([{"dtmf": "1"}, {"bridge": "failed", "cause": "NO_ANSWER"}]);
    let at = "2026-11-27T15:00:00Z";
    let api = simulate(
        &f.app,
        json!({"number": "5000", "now": at, "caller": {"id_number": "+14155550100"}, "events": events}),
    )
    .await;
    let run = |format: &'static str| {
        let (url, account, events) = (
            f.app.database_url.clone(),
            f.app.admin_account.clone(),
            events.to_string(),
        );
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_callflowd"))
                    .args(["simulate", "--database-url", &url, "--account", &account])
                    .args(["--number", "5000", "--at", at, "--caller", "+14155550100"])
                    .args(["--events", &events, format])
                    .output()
                    .expect("run callflowd simulate")
            })
            .await
            .expect("join")
        }
    };
    let out = run("--json").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(cli, api);

    let out = run("--tree").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("utf-8");
    assert!(tree.starts_with("lookup: number \"5000\""), "{tree}");
    assert!(tree.contains("-> \"1\""), "{tree}");
    assert!(tree.contains("outcome: hangup at step 1"), "{tree}");
}

/// Every valid document of Kazoo's example suite, saved through the API, simulates with an
/// empty event script to an outcome: no error, no panic. Mandatory in CI (the line below is
/// checked); skipped with a notice when ../shared is absent.
#[tokio::test]
async fn every_saved_valid_example_simulates_to_an_outcome() {
    let Some(reference) = crate::helpers::reference_dir() else {
        if std::env::var("CALLFLOWD_REQUIRE_REFERENCE").as_deref() == Ok("1") {
            panic!("CALLFLOWD_REQUIRE_REFERENCE=1 but ../shared/reference/kazoo is missing");
        }
        println!("NOTICE: ../shared/reference/kazoo not found; saved-example simulations skipped");
        return;
    };
    let app = TestApp::spawn().await;
    let mut files: Vec<_> = std::fs::read_dir(reference.join("examples/valid"))
        .expect("examples")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    files.sort();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut refused = 0;
    for path in &files {
        let example: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        let doc = example["doc"].clone();
        let r = app
            .create(&app.admin_token, &app.admin_account, doc.clone())
            .await;
        if crate::conformance::refused_for_pcre(&r.status, r.data()) {
            // Kazoo saves it but never routes it; we refuse it (docs/compatibility.md).
            println!(
                "{}: refused on save (PCRE cannot compile a pattern)",
                path.display()
            );
            refused += 1;
            continue;
        }
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}: {}",
            path.display(),
            r.text
        );
        let id = r.data()["id"].as_str().expect("id").to_string();
        let number = doc["numbers"][0].as_str().unwrap_or("0").to_string();
        let t = simulate(
            &app,
            json!({"number": number, "callflow_id": id, "events": []}),
        )
        .await;
        let kind = outcome(&t).to_string();
        assert!(
            !t["steps"].as_array().expect("steps").is_empty() || kind == "hangup",
            "{}: {t}",
            path.display()
        );
        *kinds.entry(kind).or_default() += 1;
        let r = app
            .call(
                Method::DELETE,
                &format!(
                    "{}/{id}?should_soft_delete=false",
                    TestApp::callflows(&app.admin_account)
                ),
                Some(&app.admin_token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    println!(
        "saved examples simulated: {} of {} saved, outcomes {kinds:?}; {refused} of the {} examples refused on save (documented divergence: PCRE cannot compile a pattern)",
        kinds.values().sum::<usize>(),
        files.len() - refused,
        files.len()
    );
}

/// A weekday 09:00-17:00 rule in New York, asked at the same UTC time of day either side of
/// the spring and autumn changes: the answer follows local time.
#[tokio::test]
async fn a_temporal_route_follows_local_time_across_daylight_saving_changes() {
    let f = fixture().await;
    let rule = save(
        &f.app,
        "temporal_rules",
        json!({"name": "Office hours", "cycle": "weekly", "interval": 1,
               "wdays": ["monday", "tuesday", "wednesday", "thursday", "friday"],
               "time_window_start": 32400, "time_window_stop": 61200}),
    )
    .await;
    f.flow(
        "2100",
        json!({"module": "temporal_route",
               "data": {"rules": [rule], "timezone": "America/New_York"},
               "children": {rule.clone(): f.device(), "_": f.voicemail()}}),
    )
    .await;
    let at = |now: &str| {
        let app = &f.app;
        let now = now.to_string();
        async move {
            let t = simulate(
                app,
                json!({"number": "2100", "now": now, "events": [{"bridge": "answered"}]}),
            )
            .await;
            walk(&t)[0].clone()
        }
    };
    let open = format!("temporal_route->{rule}");
    let closed = "temporal_route->_".to_string();
    // 13:30 UTC is 08:30 EST on Friday 6 March (closed) and 09:30 EDT on Monday 9 March.
    assert_eq!(at("2026-03-06T13:30:00Z").await, closed);
    assert_eq!(at("2026-03-09T13:30:00Z").await, open);
    // 21:30 UTC is 17:30 EDT on Friday 30 October (closed) and 16:30 EST on Monday 2 November.
    assert_eq!(at("2026-10-30T21:30:00Z").await, closed);
    assert_eq!(at("2026-11-02T21:30:00Z").await, open);
    // A Sunday is closed whatever the hour.
    assert_eq!(at("2026-11-01T15:00:00Z").await, closed);
}
