//! Callflow patterns read as Kazoo's PCRE reads them: what PCRE refuses is refused on save,
//! skipped at lookup when already stored, and reported by the lint.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

fn lookup_path(account: &str, number: &str) -> String {
    format!(
        "/v2/accounts/{account}/lookup?number={}",
        number.replace('+', "%2B").replace('*', "%2A")
    )
}

#[tokio::test]
async fn quantifiers_with_nothing_to_repeat_are_refused_with_the_escaped_pattern() {
    let app = TestApp::spawn().await;
    for (pattern, message) in [
        (
            r"*55(\d+)",
            r"nothing to repeat at offset 0: escape it: \*55(\d+)",
        ),
        ("^*9", r"nothing to repeat at offset 1: escape it: ^\*9"),
        ("(*9)", r"nothing to repeat at offset 1: escape it: (\*9)"),
        ("|*", r"nothing to repeat at offset 1: escape it: |\*"),
        ("+1", r"nothing to repeat at offset 0: escape it: \+1"),
        ("^?1", r"nothing to repeat at offset 1: escape it: ^\?1"),
        ("^{2}1", r"nothing to repeat at offset 3: escape it: ^\{2}1"),
    ] {
        let r = app
            .create(
                &app.admin_token,
                &app.admin_account,
                json!({"patterns": [pattern], "flow": {"module": "noop", "data": {}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{pattern}: {}", r.text);
        assert_eq!(r.body["status"], "error");
        assert_eq!(r.body["error"], "400");
        assert_eq!(r.body["message"], "validation error");
        assert_eq!(
            r.data()["patterns.0"]["error"]["message"],
            format!("invalid regular expression: {message}"),
            "{pattern}"
        );
        assert_eq!(r.data()["patterns.0"]["error"]["value"], pattern);
    }
}

#[tokio::test]
async fn braces_pcre_reads_as_text_are_accepted_and_match_themselves() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"patterns": ["^9{$", "^8{,2}$"], "flow": {"module": "noop", "data": {}}}),
        )
        .await;
    for number in ["9{", "8{,2}"] {
        let r = app
            .call(
                Method::GET,
                &lookup_path(&app.admin_account, number),
                Some(&app.admin_token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{number}: {}", r.text);
        assert_eq!(r.data()["callflow_id"], id.as_str());
    }
}

#[tokio::test]
async fn a_stored_pattern_pcre_refuses_is_skipped_at_lookup_and_reported_by_the_lint() {
    let app = TestApp::spawn().await;
    let acc = app.admin_account.clone();
    let id = app
        .create_ok(
            &acc,
            json!({"id": "imported", "patterns": [r"^\*56(\d+)$"], "flow": {"module": "noop", "data": {}}}),
        )
        .await;
    // Imported data: the document as Kazoo stored it, written past the API's checks.
    let stored = app
        .state
        .store
        .get_callflow(&acc, &id)
        .await
        .expect("read")
        .expect("stored");
    let mut doc = stored.doc.clone();
    let bad = r"*55(\d+)";
    doc.insert("patterns".into(), json!([bad, r"^\*56(\d+)$"]));
    let write = callflowd::store::CallflowWrite {
        account_id: acc.clone(),
        id: id.clone(),
        expected_rev: Some(stored.rev.clone()),
        new_rev: "2-00000000000000000000000000000000".into(),
        doc,
        numbers: vec![],
        patterns: vec![bad.into(), r"^\*56(\d+)$".into()],
        references: vec![],
        deleted: false,
        op: callflowd::store::ChangeOp::Update,
        request_id: "test".into(),
        max_account_patterns: None,
    };
    app.state.store.write_callflow(&write).await.expect("write");

    let lookup = |number: &'static str| {
        let app = &app;
        let acc = acc.clone();
        async move {
            app.call(
                Method::GET,
                &lookup_path(&acc, number),
                Some(&app.admin_token),
                None,
            )
            .await
        }
    };
    let r = lookup("*55123").await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "Kazoo never routes a pattern re:compile refuses: {}",
        r.text
    );
    let r = lookup("*56123").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the other patterns still route: {}",
        r.text
    );
    assert_eq!(r.data()["capture_group"], "123");

    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{acc}/callflows/{id}/lint"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let findings: Vec<&Value> = r.data()["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "pattern_never_routes")
        .collect();
    assert_eq!(findings.len(), 1, "{}", r.data());
    assert_eq!(findings[0]["path"], "patterns.0");
    let message = findings[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r"nothing to repeat at offset 0: escape it: \*55(\d+)"),
        "{message}"
    );
}
