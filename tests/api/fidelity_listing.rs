//! Kazoo fidelity of listings and search: options parsed as crossbar_view parses them, start
//! keys as api_util encodes them, filters on odd values as crossbar_filter evaluates them,
//! and the search views of `_design/search`. Each test names the Kazoo function it follows.

use axum::http::{Method, StatusCode};
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{Resp, TestApp};

/// `term_to_binary` of a binary, base64url without padding.
fn bin_key(s: &str) -> String {
    let mut t = vec![131, 109];
    t.extend_from_slice(&(s.len() as u32).to_be_bytes());
    t.extend_from_slice(s.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
}

/// `term_to_binary` of a list of binaries, base64url without padding.
fn list_key(items: &[&str]) -> String {
    let mut t = vec![131, 108];
    t.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for s in items {
        t.push(109);
        t.extend_from_slice(&(s.len() as u32).to_be_bytes());
        t.extend_from_slice(s.as_bytes());
    }
    t.push(106);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
}

fn ids(r: &Resp) -> Vec<String> {
    r.data()
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", r.text))
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn search(app: &TestApp, query: &str) -> Resp {
    app.call(
        Method::GET,
        &format!("/v2/accounts/{}/search?{query}", app.admin_account),
        Some(&app.admin_token),
        None,
    )
    .await
}

async fn numbered(app: &TestApp, ids_and_numbers: &[(&str, &[&str])]) {
    for (id, numbers) in ids_and_numbers {
        app.create_ok(&app.admin_account, json!({"id": id, "numbers": numbers}))
            .await;
    }
}

// Follows cb_search:validate_search/2,3,4 and cb_search:validate_query/3.
#[tokio::test]
async fn search_errors_are_kazoos() {
    let app = TestApp::spawn().await;
    let r = search(&app, "q=number&v=1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(
        r.data(),
        &json!({"t": {"required": {"message": "search needs a document type to search on",
                                   "target": ["account", "user", "callflow", "device"]}}})
    );
    let r = search(&app, "t=callflow&v=1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.data(),
        &json!({"q": {"required": {"message": "search needs a view to search in",
                                   "target": ["name", "name_and_number", "number"]}}})
    );
    let r = search(&app, "t=callflow&q=bogus&v=1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.data(),
        &json!({"q": {"enum": {"message": "value not found in enumerated list of values",
                               "cause": "bogus"}}})
    );
    let r = search(&app, "t=callflow&q=number").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.data(),
        &json!({"v": {"required": {"message": "search needs a value to search for"}}})
    );
    // `t` is not checked against a list: a type callflowd does not store finds nothing.
    numbered(&app, &[("d1", &["1000"])]).await;
    let r = search(&app, "t=device&q=number&v=1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data(), &json!([]));
    // A bare `v` is `true`, which Kazoo turns into an empty search value: every number.
    let r = search(&app, "t=callflow&q=number&v").await;
    assert_eq!(ids(&r), vec!["d1"]);
}

// Follows the search_by_name map function of search.json and cb_search:search/5.
#[tokio::test]
async fn search_by_name_prefixes_the_normalised_name() {
    let app = TestApp::spawn().await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "m1", "name": "Main Line", "numbers": ["1000"]}),
    )
    .await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "Un-Named", "numbers": ["2000"]}),
    )
    .await;
    let r = search(&app, "t=callflow&q=name&v=MAIN%20l").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data(), &json!([{"id": "m1", "name": "Main Line"}]));
    // Without a name the row is keyed and named by the normalised id.
    let r = search(&app, "t=callflow&q=name&v=unn").await;
    assert_eq!(r.data(), &json!([{"id": "Un-Named", "name": "unnamed"}]));
}

// Follows cb_search:next_binary_key/1 (end key = value ++ "Z") under CouchDB's ICU collation.
#[tokio::test]
async fn search_end_key_leaves_out_keys_continuing_with_z() {
    let app = TestApp::spawn().await;
    for (i, (id, name)) in [("a", "ab"), ("b", "abz"), ("c", "abzz"), ("d", "ab9")]
        .into_iter()
        .enumerate()
    {
        app.create_ok(
            &app.admin_account,
            json!({"id": id, "name": name, "numbers": [format!("10{i}")]}),
        )
        .await;
    }
    let r = search(&app, "t=callflow&q=name&v=ab").await;
    assert_eq!(ids(&r), vec!["a", "d", "b"]);
}

// Follows the search_by_name_and_number and search_by_number map functions of search.json.
#[tokio::test]
async fn search_rows_carry_the_view_values() {
    let app = TestApp::spawn().await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "s1", "name": "Sales", "numbers": ["5550199", "+5550100"]}),
    )
    .await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "s2", "numbers": ["5550150"]}),
    )
    .await;
    // One row per matching number, ordered by key then id; number rows of
    // search_by_name_and_number carry `actual_name`, which stays "" when the document has
    // `pvt_alphanum_name`.
    let r = search(&app, "t=callflow&q=name_and_number&v=555").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.data(),
        &json!([
            {"id": "s1", "name": "", "numbers": ["5550199", "+5550100"]},
            {"id": "s2", "name": "", "numbers": ["5550150"]},
            {"id": "s1", "name": "", "numbers": ["5550199", "+5550100"]},
        ])
    );
    // The name row carries the name and the numbers.
    let r = search(&app, "t=callflow&q=name_and_number&v=sal").await;
    assert_eq!(
        r.data(),
        &json!([{"id": "s1", "name": "Sales", "numbers": ["5550199", "+5550100"]}])
    );
    // search_by_number rows carry doc.name, absent when the document has none.
    let r = search(&app, "t=callflow&q=number&v=%2B555").await;
    assert_eq!(
        r.data(),
        &json!([
            {"id": "s1", "name": "Sales", "numbers": ["5550199", "+5550100"]},
            {"id": "s2", "numbers": ["5550150"]},
            {"id": "s1", "name": "Sales", "numbers": ["5550199", "+5550100"]},
        ])
    );
}

// Follows crossbar_view:load/3 (start_end_keys/3, get_results/1, add_paging/4) as cb_search
// calls it, and api_util:encode_start_keys/2.
#[tokio::test]
async fn search_is_paginated_like_every_listing() {
    let app = TestApp::spawn().await;
    numbered(
        &app,
        &[("p1", &["5551"]), ("p2", &["5552"]), ("p3", &["5553"])],
    )
    .await;
    let r = search(&app, "t=callflow&q=number&v=555&page_size=2").await;
    assert_eq!(ids(&r), vec!["p1", "p2"]);
    assert_eq!(r.body["page_size"], 2);
    assert_eq!(r.body["start_key"], list_key(&["callflow", "555"]));
    let next = list_key(&["callflow", "5553"]);
    assert_eq!(r.body["next_start_key"], next);
    let r = search(
        &app,
        &format!("t=callflow&q=number&v=555&page_size=2&start_key={next}"),
    )
    .await;
    assert_eq!(ids(&r), vec!["p3"]);
    assert_eq!(r.body["start_key"], next);
    assert!(r.body.get("next_start_key").is_none());
    // Descending starts at the end key.
    let r = search(
        &app,
        "t=callflow&q=number&v=555&descending=true&page_size=1",
    )
    .await;
    assert_eq!(ids(&r), vec!["p3"]);
    assert_eq!(r.body["start_key"], list_key(&["callflow", "555Z"]));
    assert_eq!(r.body["next_start_key"], list_key(&["callflow", "5552"]));
    // Filters apply to the row's document.
    let r = search(&app, "t=callflow&q=number&v=555&filter__id=p2").await;
    assert_eq!(ids(&r), vec!["p2"]);
    let r = search(&app, "t=callflow&q=number&v=555&paginate=false").await;
    assert_eq!(ids(&r), vec!["p1", "p2", "p3"]);
    assert!(r.body.get("start_key").is_none());
}

// Follows cb_context:should_paginate/1 and crossbar_view:direction/2 (kz_term:is_true/1,
// kz_term:is_false/1: only the exact lower-case words; a bare key is `true`).
#[tokio::test]
async fn paginate_and_direction_spellings() {
    let app = TestApp::spawn().await;
    numbered(&app, &[("cf1", &["1"]), ("cf2", &["2"])]).await;
    for (q, paged) in [
        ("?paginate=TRUE", false),
        ("?paginate=yes", false),
        ("?paginate=", false),
        ("?paginate", true),
        ("?paginate=true", true),
    ] {
        let r = app.list(&app.admin_token, &app.admin_account, q).await;
        assert_eq!(r.status, StatusCode::OK, "{q}");
        assert_eq!(r.body.get("page_size").is_some(), paged, "{q}");
    }
    for (q, first) in [
        ("?descending=TRUE", "cf1"),
        ("?descending=1", "cf1"),
        ("?descending", "cf2"),
        ("?descending=true", "cf2"),
        ("?ascending=FALSE", "cf1"),
        ("?ascending=false", "cf2"),
    ] {
        let r = app.list(&app.admin_token, &app.admin_account, q).await;
        assert_eq!(ids(&r)[0], first, "{q}");
    }
}

// Follows crossbar_view:get_page_size_from_request/1 and crossbar_view:get_chunk_size/2
// (kz_term:to_integer/1, non-strict).
#[tokio::test]
async fn page_size_and_chunk_size_parse_as_kazoo() {
    let app = TestApp::spawn().await;
    numbered(&app, &[("cf1", &["1"]), ("cf2", &["2"]), ("cf3", &["3"])]).await;
    let r = app
        .list(&app.admin_token, &app.admin_account, "?page_size=1.5")
        .await;
    assert_eq!(ids(&r), vec!["cf1", "cf2"]);
    let r = app
        .list(&app.admin_token, &app.admin_account, "?page_size=%2B1")
        .await;
    assert_eq!(ids(&r), vec!["cf1"]);
    for (q, status, msg) in [
        ("?page_size=%205", 404, "invalid page size"),
        ("?page_size=1e1", 404, "invalid page size"),
        ("?page_size", 404, "invalid page size"),
        ("?page_size=-1", 404, "page size must be at least 1"),
        ("?page_size=0.4", 404, "page size must be at least 1"),
        ("?chunk_size=abc", 404, "invalid chunk size"),
        ("?chunk_size=51", 404, "chunk size must be lower than 50"),
        ("?chunk_size=-1", 404, "chunk size must be at least 1"),
        // Kazoo crashes here (503 `datastore_fault`); callflowd answers the client error.
        ("?chunk_size=0", 404, "chunk size must be at least 1"),
        // chunk_size is checked first, and also when paging is off.
        ("?chunk_size=x&page_size=x", 404, "invalid chunk size"),
        ("?chunk_size=x&paginate=false", 404, "invalid chunk size"),
    ] {
        let r = app.list(&app.admin_token, &app.admin_account, q).await;
        assert_eq!(r.status.as_u16(), status, "{q}: {}", r.text);
        assert_eq!(r.data()["message"], msg, "{q}");
        let error = if status == 503 {
            "datastore_fault"
        } else {
            "faulty_request"
        };
        assert_eq!(r.body["message"], error, "{q}");
    }
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            "?chunk_size=50&page_size=x&paginate=false",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ids(&r).len(), 3);
}

// Follows api_resource:maybe_decode_start_key/1, api_util:decode_start_key/1 and
// api_util:encode_start_keys/2: the echo is the decoded key encoded again.
#[tokio::test]
async fn start_key_echo_is_re_encoded() {
    let app = TestApp::spawn().await;
    numbered(&app, &[("cf1", &["1"]), ("cf2", &["2"]), ("cf3", &["3"])]).await;
    // A key that does not decode is used as is and echoed encoded.
    let r = app
        .list(&app.admin_token, &app.admin_account, "?start_key=cf2")
        .await;
    assert_eq!(ids(&r), vec!["cf2", "cf3"]);
    assert_eq!(r.body["start_key"], bin_key("cf2"));
    // Padding is accepted on input and dropped on output.
    let padded = format!("{}%3D%3D", bin_key("cf2"));
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            &format!("?start_key={padded}"),
        )
        .await;
    assert_eq!(ids(&r), vec!["cf2", "cf3"]);
    assert_eq!(r.body["start_key"], bin_key("cf2"));
    // A list key collates after every id (CouchDB: arrays after strings); a number before.
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            &format!("?start_key={}", list_key(&["cf1"])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ids(&r), Vec::<String>::new());
    assert_eq!(r.body["start_key"], list_key(&["cf1"]));
    let small_int = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([131, 97, 7]);
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            &format!("?start_key={small_int}"),
        )
        .await;
    assert_eq!(ids(&r), vec!["cf1", "cf2", "cf3"]);
    assert_eq!(r.body["start_key"], small_int);
}

// Follows crossbar_view:get_results/1 with handle_query_result/4 and last_key/5: with
// filters, next_start_key is the key of the first row not read, not the next match.
#[tokio::test]
async fn filtered_next_start_key_is_the_first_unread_row() {
    let app = TestApp::spawn().await;
    for (i, (id, name)) in [
        ("cf1", "keep"),
        ("cf2", "keep"),
        ("cf3", "drop"),
        ("cf4", "keep"),
        ("cf5", "drop"),
    ]
    .into_iter()
    .enumerate()
    {
        app.create_ok(
            &app.admin_account,
            json!({"id": id, "name": name, "numbers": [format!("20{i}")]}),
        )
        .await;
    }
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            "?filter_name=keep&page_size=2",
        )
        .await;
    assert_eq!(ids(&r), vec!["cf1", "cf2"]);
    assert_eq!(r.body["next_start_key"], bin_key("cf3"));
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            &format!("?filter_name=keep&page_size=2&start_key={}", bin_key("cf3")),
        )
        .await;
    assert_eq!(ids(&r), vec!["cf4"]);
    assert!(r.body.get("next_start_key").is_none());
}

// Follows crossbar_filter:filter_prop/3, should_filter/3 (kz_json:get_binary_value,
// kz_term:to_binary), has_key/2 and has_value/2 on the document CouchDB returns.
#[tokio::test]
async fn filters_on_odd_values() {
    let app = TestApp::spawn().await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "a", "numbers": ["100", "101"], "enabled": true, "note": "x"}),
    )
    .await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "b", "numbers": ["200"], "enabled": false}),
    )
    .await;
    let list = |q: &'static str| app.list(&app.admin_token, &app.admin_account, q);
    // A bare filter compares with "true".
    assert_eq!(ids(&list("?filter_enabled").await), vec!["a"]);
    // Every document has `_id` and `_rev`.
    assert_eq!(ids(&list("?has_key=_rev").await), vec!["a", "b"]);
    assert_eq!(ids(&list("?has_key=_id").await), vec!["a", "b"]);
    assert_eq!(ids(&list("?key_missing=_rev").await), Vec::<String>::new());
    assert_eq!(ids(&list("?filter__id=b").await), vec!["b"]);
    // Array positions are 1-based; arrays stringify as their concatenation.
    assert_eq!(ids(&list("?filter_numbers.1=100").await), vec!["a"]);
    assert_eq!(ids(&list("?filter_numbers=100101").await), vec!["a"]);
    // A path below a string crashes in Kazoo, which drops the document either way.
    assert_eq!(ids(&list("?key_missing=note.x").await), vec!["b"]);
    assert_eq!(ids(&list("?filter_not_note.x=1").await), vec!["b"]);
    // A bare key filter crashes too.
    assert_eq!(ids(&list("?has_key").await), Vec::<String>::new());
    // Time filters: a non-integer value drops every document; a float is rounded.
    assert_eq!(ids(&list("?created_from=abc").await), Vec::<String>::new());
    assert_eq!(ids(&list("?created_from=1.5").await), vec!["a", "b"]);
    assert_eq!(ids(&list("?created_to=1").await), Vec::<String>::new());
}

// Follows crossbar_filter:should_filter/3: a stored JSON null stringifies as "null".
#[tokio::test]
async fn stored_null_filters_as_the_string_null() {
    let app = TestApp::spawn().await;
    app.create_ok(&app.admin_account, json!({"id": "n", "numbers": ["1"]}))
        .await;
    app.create_ok(&app.admin_account, json!({"id": "m", "numbers": ["2"]}))
        .await;
    // The API strips nulls on save, so put one in the stored document directly.
    let stored = app
        .state
        .store
        .get_callflow(&app.admin_account, "n")
        .await
        .expect("read")
        .expect("stored");
    let mut doc = stored.doc.clone();
    doc.insert("ringback".into(), Value::Null);
    let write = callflowd::store::CallflowWrite {
        account_id: app.admin_account.clone(),
        id: "n".into(),
        expected_rev: Some(stored.rev.clone()),
        new_rev: "2-00000000000000000000000000000000".into(),
        doc,
        numbers: vec!["1".into()],
        patterns: vec![],
        references: vec![],
        deleted: false,
        op: callflowd::store::ChangeOp::Update,
        request_id: "test".into(),
        max_account_patterns: None,
    };
    app.state.store.write_callflow(&write).await.expect("write");
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            "?filter_ringback=null",
        )
        .await;
    assert_eq!(ids(&r), vec!["n"]);
    // A stored null is a present key with an empty value.
    let r = app
        .list(&app.admin_token, &app.admin_account, "?has_key=ringback")
        .await;
    assert_eq!(ids(&r), vec!["n"]);
    let r = app
        .list(&app.admin_token, &app.admin_account, "?has_value=ringback")
        .await;
    assert_eq!(ids(&r), Vec::<String>::new());
}
