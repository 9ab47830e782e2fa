//! Lint and routing analysis through HTTP: one scenario per rule showing it fires, the quiet
//! side over Kazoo's valid examples (the exact set of rules per file, in a fixture), the
//! account-wide lint, drafts, routing analysis and explain, and authorisation.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{save, TestApp};

async fn lint_stored(app: &TestApp, id: &str) -> Value {
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/callflows/{id}/lint", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data().clone()
}

async fn lint_draft(app: &TestApp, draft: Value) -> Value {
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}/lint", app.admin_account),
            Some(&app.admin_token),
            Some(json!({ "data": draft })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data().clone()
}

/// `(rule, path)` of every finding.
fn fired(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn finding<'a>(report: &'a Value, rule: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule} in {report}"))
}

fn rules(report: &Value) -> BTreeSet<String> {
    fired(report).into_iter().map(|(r, _)| r).collect()
}

#[tokio::test]
async fn child_keys_a_module_never_takes_are_reported_including_hash_under_a_menu() {
    let app = TestApp::spawn().await;
    let menu = save(&app, "menus", json!({"name": "Main", "hunt": false})).await;
    let report = lint_draft(
        &app,
        json!({"numbers": ["100"], "flow": {"module": "menu", "data": {"id": menu}, "children": {
            "1": {"module": "play", "data": {"id": "/system_media/hello"}, "children": {"2": {"module": "hangup", "data": {}}}},
            "#": {"module": "hangup", "data": {}},
            "12345": {"module": "hangup", "data": {}},
            "_": {"module": "hangup", "data": {}}
        }}}),
    )
    .await;
    let got = fired(&report);
    for path in [
        "flow.children.1.children.2",
        "flow.children.#",
        "flow.children.12345",
    ] {
        assert!(
            got.contains(&("unreachable_child".into(), path.into())),
            "{path}: {report}"
        );
    }
    let hash = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "flow.children.#")
        .unwrap();
    assert_eq!(hash["severity"], "warning");
    assert!(hash["message"]
        .as_str()
        .unwrap()
        .contains("'#' ends digit collection"));
    assert!(hash["fix"].is_string());
}

#[tokio::test]
async fn references_to_missing_deleted_or_mistyped_documents_are_errors() {
    let app = TestApp::spawn().await;
    let user = save(
        &app,
        "users",
        json!({"first_name": "Ann", "last_name": "Lee"}),
    )
    .await;
    let vmbox = save(&app, "vmboxes", json!({"name": "Box", "mailbox": "3001"})).await;
    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/accounts/{}/vmboxes/{vmbox}", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let gone = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["9000"], "flow": {"module": "noop", "data": {}}}),
        )
        .await;
    let r = app
        .call(
            Method::DELETE,
            &format!("{}/{gone}", TestApp::callflows(&app.admin_account)),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["200"], "flow": {"module": "device", "data": {"id": user, "timeout": 20}, "children": {
                "_": {"module": "voicemail", "data": {"id": vmbox}, "children": {
                    "_": {"module": "callflow", "data": {"id": gone}, "children": {
                        "_": {"module": "temporal_route", "data": {"rules": ["nope"]}, "children": {
                            "_": {"module": "ring_group", "data": {"endpoints": [{"id": "ghost", "endpoint_type": "user"}]}}}}}}}}}}}),
        )
        .await;
    let report = lint_stored(&app, &id).await;
    let got = fired(&report);
    for path in [
        "flow.data.id",
        "flow.children._.data.id",
        "flow.children._.children._.data.id",
        "flow.children._.children._.children._.data.rules.0",
        "flow.children._.children._.children._.children._.data.endpoints.0.id",
    ] {
        assert!(
            got.contains(&("missing_reference".into(), path.into())),
            "{path}: {report}"
        );
    }
    let messages: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "missing_reference")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("is a user, not a device")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("vmbox that was deleted")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("callflow that was deleted")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("does not exist")),
        "{messages:?}"
    );
    assert_eq!(report["summary"]["error"], 5);
}

#[tokio::test]
async fn loops_between_callflows_are_spelled_out_and_long_chains_exhaust_the_budget() {
    let app = TestApp::spawn().await;
    let jump = |id: &str, target: &str, number: &str| json!({"id": id, "numbers": [number], "flow": {"module": "callflow", "data": {"id": target}}});
    app.create_ok(&app.admin_account, jump("loop_a", "loop_b", "301"))
        .await;
    app.create_ok(&app.admin_account, jump("loop_b", "loop_a", "302"))
        .await;
    let report = lint_stored(&app, "loop_a").await;
    let f = finding(&report, "callflow_loop");
    assert_eq!(f["path"], "flow");
    assert_eq!(f["severity"], "error", "both jumps are on the main line");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("loop_a (flow) -> loop_b (flow) -> loop_a"),
        "{f}"
    );
    // 52 callflows in a chain: 51 jumps, more than Kazoo's 50.
    for i in 0..52 {
        let next = format!("chain_{:02}", i + 1);
        let doc = if i == 51 {
            json!({"id": format!("chain_{i:02}"), "numbers": [format!("5{i:02}")], "flow": {"module": "hangup", "data": {}}})
        } else {
            jump(&format!("chain_{i:02}"), &next, &format!("5{i:02}"))
        };
        app.create_ok(&app.admin_account, doc).await;
    }
    let report = lint_stored(&app, "chain_00").await;
    let f = finding(&report, "branch_budget");
    assert!(
        f["message"].as_str().unwrap().contains("51 callflows"),
        "{f}"
    );
    assert!(!rules(&lint_stored(&app, "chain_10").await).contains("branch_budget"));
}

#[tokio::test]
async fn a_menu_without_timeout_or_underscore_and_carrier_fallbacks_are_warned() {
    let app = TestApp::spawn().await;
    let report = lint_draft(
        &app,
        json!({"numbers": ["400"], "flow": {"module": "menu", "data": {}, "children": {
            "1": {"module": "resources", "data": {}, "children": {
                "_": {"module": "voicemail", "data": {}},
                "no_route_destination": {"module": "hangup", "data": {}},
                "486": {"module": "hangup", "data": {}},
                "sip:503": {"module": "hangup", "data": {}},
                "USER_BUSY": {"module": "hangup", "data": {}}}}}}}),
    )
    .await;
    let got = fired(&report);
    assert!(
        got.contains(&("menu_no_fallback".into(), "flow".into())),
        "{report}"
    );
    assert!(got.contains(&(
        "carrier_underscore_unused".into(),
        "flow.children.1.children._".into()
    )));
    let unknown: BTreeMap<String, String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "unknown_failure_key")
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["fix"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        unknown,
        BTreeMap::from([
            (
                "flow.children.1.children.486".to_string(),
                "rename it \"sip:486\"".to_string()
            ),
            (
                "flow.children.1.children.no_route_destination".to_string(),
                "rename it \"NO_ROUTE_DESTINATION\"".to_string()
            ),
        ])
    );
    // With a `_`, the menu is quiet.
    let report = lint_draft(
        &app,
        json!({"numbers": ["401"], "flow": {"module": "menu", "data": {}, "children": {"_": {"module": "hangup", "data": {}}}}}),
    )
    .await;
    assert!(!rules(&report).contains("menu_no_fallback"));
}

#[tokio::test]
async fn defaults_where_kazoos_schema_and_code_disagree_are_noted() {
    let app = TestApp::spawn().await;
    let device = save(&app, "devices", json!({"name": "Desk"})).await;
    let menu = save(&app, "menus", json!({"name": "Hunting"})).await;
    let report = lint_draft(
        &app,
        json!({"numbers": ["500"], "flow": {"module": "device", "data": {"id": device}, "children": {
            "_": {"module": "menu", "data": {"id": menu}, "children": {"_": {"module": "hangup", "data": {}}}}}}}),
    )
    .await;
    let got = fired(&report);
    assert!(
        got.contains(&("schema_default_differs".into(), "flow.data.timeout".into())),
        "{report}"
    );
    assert!(got.contains(&(
        "schema_default_differs".into(),
        "flow.children._.data.id".into()
    )));
    assert_eq!(
        finding(&report, "schema_default_differs")["severity"],
        "info"
    );
}

#[tokio::test]
async fn patterns_that_never_route_or_never_win_and_numbers_patterns_also_match() {
    let app = TestApp::spawn().await;
    let us = app
        .create_ok(
            &app.admin_account,
            json!({"patterns": [r"^\+?1?(\d{10})$"], "flow": {"module": "noop", "data": {}}}),
        )
        .await;
    let did = app
        .create_ok(
            &app.admin_account,
            json!({"patterns": [r"^1$2", r"^\+1415555(\d{4})$"], "flow": {"module": "noop", "data": {}}}),
        )
        .await;
    let report = lint_stored(&app, &did).await;
    let never = finding(&report, "pattern_never_routes");
    assert_eq!(
        (never["path"].as_str(), never["severity"].as_str()),
        (Some("patterns.0"), Some("error"))
    );
    let shadowed = finding(&report, "pattern_shadowed");
    assert_eq!(shadowed["path"], "patterns.1");
    let message = shadowed["message"].as_str().unwrap();
    assert!(
        message.contains(&us) && message.contains("proved by dfa_inclusion"),
        "{message}"
    );

    // `*5(\d+)`, a feature code, also matches `*56` of the park callflow.
    app.create_ok(
        &app.admin_account,
        json!({"patterns": [r"^\*5(\d+)$"], "flow": {"module": "noop", "data": {}}}),
    )
    .await;
    let park = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["*56"], "flow": {"module": "park", "data": {}}}),
        )
        .await;
    let report = lint_stored(&app, &park).await;
    let f = finding(&report, "number_also_matched");
    assert_eq!(
        (f["path"].as_str(), f["severity"].as_str()),
        (Some("numbers.0"), Some("info"))
    );
    assert!(f["message"].as_str().unwrap().contains(r"^\*5(\d+)$"));

    // The whole account at once names each callflow.
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/lint", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let all = fired(r.data());
    assert!(all.contains(&("pattern_shadowed".into(), "patterns.1".into())));
    assert!(all.contains(&("number_also_matched".into(), "numbers.0".into())));
    assert!(r.data()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["callflow_id"] == park.as_str()));
}

#[tokio::test]
async fn routing_analysis_gives_witnesses_and_never_wins_and_explain_lists_candidates() {
    let app = TestApp::spawn().await;
    let us = app
        .create_ok(
            &app.admin_account,
            json!({"patterns": [r"^\+?1?(\d{10})$"], "flow": {"module": "noop", "data": {}}}),
        )
        .await;
    let did = app
        .create_ok(&app.admin_account, json!({"patterns": [r"^\+1415555(\d{4})$"], "numbers": ["+14155550100"], "flow": {"module": "noop", "data": {}}}))
        .await;
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/routing/analysis", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let reports = r.data().as_array().unwrap();
    let by = |p: &str| reports.iter().find(|x| x["pattern"] == p).unwrap();
    let winner = by(r"^\+?1?(\d{10})$");
    assert_eq!(winner["callflow_id"], us.as_str());
    assert!(winner["witness"].is_string());
    let loser = by(r"^\+1415555(\d{4})$");
    assert_eq!(loser["never_wins"]["reason"], "other_pattern");
    assert_eq!(loser["never_wins"]["winner"]["callflow_id"], us.as_str());
    assert_eq!(
        (loser["method"].as_str(), loser["exact"].as_bool()),
        (Some("dfa_inclusion"), Some(true))
    );
    assert_eq!(r.body["analysis"]["patterns"], 2);

    let r = app
        .call(
            Method::GET,
            &format!(
                "/v2/accounts/{}/routing/explain?number=%2B14155550100",
                app.admin_account
            ),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = r.data();
    assert_eq!(e["winner"]["type"], "number");
    assert_eq!(e["winner"]["callflow_id"], did.as_str());
    let c = e["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 3, "{e}");
    assert!(c
        .iter()
        .filter(|x| x["type"] == "pattern")
        .all(|x| x["result"] == "lost" && x["why"].as_str().unwrap().contains("exact number")));
    let r = app
        .call(
            Method::GET,
            &format!(
                "/v2/accounts/{}/routing/explain?number=%2B14155550199",
                app.admin_account
            ),
            Some(&app.admin_token),
            None,
        )
        .await;
    let c = r.data()["candidates"].as_array().unwrap().clone();
    let lost = c.iter().find(|x| x["result"] == "lost").unwrap();
    assert_eq!(lost["why"], "captured 4 characters, the winner 10");
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/routing/explain", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn lint_and_analysis_need_access_to_the_account() {
    let app = TestApp::spawn().await;
    let (_, other_token) = app.top_level_account("intruder").await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["1"], "flow": {"module": "noop", "data": {}}}),
        )
        .await;
    for (method, path) in [
        (
            Method::GET,
            format!("/v2/accounts/{}/callflows/{id}/lint", app.admin_account),
        ),
        (
            Method::GET,
            format!("/v2/accounts/{}/lint", app.admin_account),
        ),
        (
            Method::PUT,
            format!("/v2/accounts/{}/lint", app.admin_account),
        ),
        (
            Method::GET,
            format!("/v2/accounts/{}/routing/analysis", app.admin_account),
        ),
        (
            Method::GET,
            format!(
                "/v2/accounts/{}/routing/explain?number=1",
                app.admin_account
            ),
        ),
    ] {
        let r = app
            .call(
                method.clone(),
                &path,
                Some(&other_token),
                Some(json!({"data": {}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text);
        let r = app
            .call(method, &path, None, Some(json!({"data": {}})))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // An invalid draft is refused with Kazoo's validation error.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}/lint", app.admin_account),
            Some(&app.admin_token),
            Some(json!({"data": {"numbers": "nope", "flow": {}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

/// The rules a Kazoo example fires as a draft. Patterns PCRE refuses (Kazoo stores them and
/// never routes them; we refuse them on save, so the draft is refused too) are listed as
/// `refused_on_save`, and the draft is linted again with the escaped pattern the refusal
/// suggests.
async fn example_rules(app: &TestApp, mut doc: Value) -> BTreeSet<String> {
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}/lint", app.admin_account),
            Some(&app.admin_token),
            Some(json!({ "data": doc.clone() })),
        )
        .await;
    if r.status == StatusCode::OK {
        return rules(r.data());
    }
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Each refused pattern, replaced by the fix the message suggests.
    let fixes: Vec<(usize, String)> = r
        .data()
        .as_object()
        .expect("errors by field")
        .iter()
        .map(|(field, error)| {
            let message = error["error"]["message"].as_str().unwrap_or_default();
            let fix = message
                .strip_prefix("invalid regular expression: ")
                .and_then(|m| m.split_once("escape it: "))
                .map(|(_, fix)| fix.to_string())
                .unwrap_or_else(|| panic!("only fixable patterns are expected: {}", r.text));
            let index = field
                .strip_prefix("patterns.")
                .and_then(|i| i.parse().ok())
                .expect("a pattern index");
            (index, fix)
        })
        .collect();
    assert!(!fixes.is_empty(), "{}", r.text);
    for (index, fix) in fixes {
        doc["patterns"][index] = json!(fix);
    }
    let mut fired = rules(&lint_draft(app, doc).await);
    fired.insert("refused_on_save".to_string());
    fired
}

/// Every valid example of Kazoo's suite, linted as a draft in an empty account: exactly the
/// rules the fixture lists for that file fire (mostly references to documents the example
/// does not carry). Mandatory in CI (the line below is checked). Set
/// `CALLFLOWD_WRITE_LINT_FIXTURE=1` to rewrite the fixture after reviewing a change.
#[tokio::test]
async fn kazoos_valid_examples_fire_exactly_the_rules_the_fixture_lists() {
    let Some(reference) = crate::helpers::reference_dir() else {
        if std::env::var("CALLFLOWD_REQUIRE_REFERENCE").as_deref() == Ok("1") {
            panic!("CALLFLOWD_REQUIRE_REFERENCE=1 but ../shared/reference/kazoo is missing");
        }
        println!("NOTICE: ../shared/reference/kazoo not found; lint over Kazoo's examples skipped");
        return;
    };
    let fixture_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint_examples.json");
    let app = TestApp::spawn().await;
    let mut files: Vec<_> = std::fs::read_dir(reference.join("examples/valid"))
        .expect("examples")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    files.sort();
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let example: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        got.insert(name, example_rules(&app, example["doc"].clone()).await);
    }
    if std::env::var("CALLFLOWD_WRITE_LINT_FIXTURE").as_deref() == Ok("1") {
        std::fs::write(
            &fixture_path,
            serde_json::to_string_pretty(&got).unwrap() + "\n",
        )
        .unwrap();
    }
    let expected: BTreeMap<String, BTreeSet<String>> =
        serde_json::from_str(&std::fs::read_to_string(&fixture_path).expect("fixture"))
            .expect("fixture json");
    assert_eq!(got, expected, "lint over Kazoo's examples changed");
    let quiet = got.values().filter(|r| r.is_empty()).count();
    println!(
        "lint examples: {} files, {} with no finding, rules as the fixture lists",
        files.len(),
        quiet
    );
}

/// `GET .../callflows/{ID}/lint?draft=true` lints the saved draft, not the live callflow; a
/// callflow without a draft answers 404.
#[tokio::test]
async fn a_saved_draft_is_linted_with_draft_true() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["4100"], "flow": {"module": "noop", "data": {}}}),
        )
        .await;
    let path = format!(
        "/v2/accounts/{}/callflows/{id}/lint?draft=true",
        app.admin_account
    );
    let r = app
        .call(Method::GET, &path, Some(&app.admin_token), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = app
        .call(
            Method::POST,
            &format!("/v2/accounts/{}/callflows/{id}/draft", app.admin_account),
            Some(&app.admin_token),
            Some(json!({"data": {"numbers": ["4100"], "flow": {"module": "callflow", "data": {"id": "0123456789abcdef0123456789abcdef"}}}})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = app
        .call(Method::GET, &path, Some(&app.admin_token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(rules(r.data()).contains("missing_reference"), "{}", r.text);
    // The live callflow is still clean.
    assert!(!rules(&lint_stored(&app, &id).await).contains("missing_reference"));
}
