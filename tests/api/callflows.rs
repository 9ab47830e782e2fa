//! The six callflow endpoints, search, and their error classes.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

fn item(app: &TestApp, id: &str) -> String {
    format!("{}/{id}", TestApp::callflows(&app.admin_account))
}

#[tokio::test]
async fn create_normalises_numbers_applies_defaults_and_sets_location() {
    let app = TestApp::spawn().await;
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"name": "Main", "numbers": ["4158867900", "1000"],
                   "flow": {"module": "user", "data": {"id": "5a1b"}, "children": {"_": {"module": "voicemail", "data": {"id": "9c2d0000000000000000000000000000"}}}},
                   "pvt_type": "sneaky", "_rev": "9-x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.data()["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(
        r.header("location").unwrap(),
        format!("/v2/accounts/{}/callflows/{id}", app.admin_account)
    );
    assert_eq!(r.data()["numbers"], json!(["+14158867900", "1000"]));
    assert_eq!(r.data()["patterns"], json!([]));
    assert_eq!(
        r.data()["flow"]["data"],
        json!({"id": "5a1b", "delay": 0, "strategy": "simultaneous", "timeout": 20})
    );
    assert_eq!(
        r.data()["flow"]["children"]["_"]["data"]["action"],
        "compose"
    );
    assert!(r.data().get("pvt_type").is_none() && r.data().get("_rev").is_none());
    assert!(r.data().get("metadata").is_none(), "no metadata on writes");
    let rev = r.body["revision"].as_str().unwrap();
    assert!(rev.starts_with("1-"));
    assert_eq!(r.header("etag").unwrap(), format!("\"{rev}\""));
}

#[tokio::test]
async fn client_chosen_id_is_used_and_reuse_conflicts() {
    let app = TestApp::spawn().await;
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"id": "my-flow", "numbers": ["1000"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.data()["id"], "my-flow");
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"id": "my-flow", "numbers": ["1001"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["message"], "datastore_conflict");
    assert_eq!(r.data()["message"], "conflicting documents");
}

#[tokio::test]
async fn fetch_returns_metadata_and_revision() {
    let app = TestApp::spawn().await;
    let target = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Support", "numbers": ["2000"]}),
        )
        .await;
    let users = app
        .state
        .store
        .login_users(&app.admin_account)
        .await
        .unwrap();
    let user_id = users[0].id.clone();
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["1000"], "flow": {"module": "user", "data": {"id": user_id},
                   "children": {"_": {"module": "callflow", "data": {"id": target}}, "timeout": {"module": "hangup", "data": {}}}}}),
        )
        .await;
    let r = app.fetch(&app.admin_token, &app.admin_account, &id).await;
    assert_eq!(r.status, StatusCode::OK);
    let meta = &r.data()["metadata"];
    assert_eq!(
        meta[&target],
        json!({"name": "Support", "numbers": ["2000"], "pvt_type": "callflow"})
    );
    assert_eq!(meta[&user_id]["pvt_type"], "user");
    assert_eq!(meta[&user_id]["name"], "admin Admin");
    assert!(
        meta.get("timeout").is_none(),
        "branch names that resolve nothing are skipped"
    );
    assert!(r.body["revision"].as_str().unwrap().starts_with("1-"));
    assert!(r.header("etag").is_some());

    let no_flow = app
        .create_ok(&app.admin_account, json!({"numbers": ["3000"]}))
        .await;
    let r = app
        .fetch(&app.admin_token, &app.admin_account, &no_flow)
        .await;
    assert_eq!(r.data()["metadata"], json!({}));
}

#[tokio::test]
async fn get_with_matching_if_none_match_is_304() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(&app.admin_account, json!({"numbers": ["1000"]}))
        .await;
    let r = app.fetch(&app.admin_token, &app.admin_account, &id).await;
    let etag = r.header("etag").unwrap().to_string();
    let req = Request::get(item(&app, &id))
        .header("X-Auth-Token", &app.admin_token)
        .header("If-None-Match", etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn unknown_callflow_is_bad_identifier() {
    let app = TestApp::spawn().await;
    let r = app
        .fetch(&app.admin_token, &app.admin_account, "nope")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "bad_identifier");
    assert_eq!(
        r.data(),
        &json!({"cause": "nope", "message": "bad identifier"})
    );
    for method in [Method::POST, Method::PATCH] {
        let r = app
            .call(
                method,
                &item(&app, "nope"),
                Some(&app.admin_token),
                Some(json!({"data": {"numbers": ["1"]}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = app
        .call(
            Method::DELETE,
            &item(&app, "nope"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listing_has_kazoo_summary_fields() {
    let app = TestApp::spawn().await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "a1", "name": "Main", "numbers": ["1000"], "type": "main", "owner_id": "o1",
               "flow": {"module": "user", "data": {"id": "u"}, "children": {"_": {"module": "voicemail", "data": {"id": "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"}}}}}),
    )
    .await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "a2", "name": "VM", "numbers": ["*97"], "featurecode": {"name": "voicemail[action=check]", "number": "97"},
               "flow": {"module": "voicemail", "data": {"action": "check"}}}),
    )
    .await;
    let r = app.list(&app.admin_token, &app.admin_account, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.data()[0],
        json!({"id": "a1", "name": "Main", "type": "main", "numbers": ["1000"], "patterns": [], "featurecode": false,
               "owner_id": "o1", "modules": ["user", "voicemail"], "flags": []})
    );
    assert_eq!(
        r.data()[1]["featurecode"],
        json!({"name": "voicemail[action=check]", "number": "97"})
    );
    assert_eq!(r.body["page_size"], 2);
    assert!(r.body.get("next_start_key").is_none());
    assert_eq!(r.body["revision"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn pagination_walks_every_page_in_both_directions() {
    let app = TestApp::spawn().await;
    for i in 0..7 {
        app.create_ok(
            &app.admin_account,
            json!({"id": format!("cf{i}"), "numbers": [format!("10{i}")]}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut query = "?page_size=3".to_string();
    loop {
        let r = app.list(&app.admin_token, &app.admin_account, &query).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let ids: Vec<String> = r
            .data()
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(r.body["page_size"], ids.len());
        seen.extend(ids);
        match r.body.get("next_start_key").and_then(Value::as_str) {
            Some(next) => {
                query = format!("?page_size=3&start_key={next}");
                assert!(query.len() > 10);
            }
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("cf{i}")).collect::<Vec<_>>());

    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            "?page_size=2&descending=true",
        )
        .await;
    let ids: Vec<&str> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["cf6", "cf5"]);
    let next = r.body["next_start_key"].as_str().unwrap();
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            &format!("?page_size=2&descending=true&start_key={next}"),
        )
        .await;
    assert_eq!(r.data()[0]["id"], "cf4");
    assert_eq!(r.body["start_key"], next);

    let r = app
        .list(&app.admin_token, &app.admin_account, "?paginate=false")
        .await;
    assert_eq!(r.data().as_array().unwrap().len(), 7);
    assert!(r.body.get("page_size").is_none());
}

#[tokio::test]
async fn bad_page_size_is_a_faulty_request_404() {
    let app = TestApp::spawn().await;
    for (q, msg) in [
        ("?page_size=abc", "invalid page size"),
        ("?page_size=0", "page size must be at least 1"),
    ] {
        let r = app.list(&app.admin_token, &app.admin_account, q).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.body["message"], "faulty_request");
        assert_eq!(r.data()["message"], msg);
    }
}

#[tokio::test]
async fn filters_apply_to_the_full_document() {
    let app = TestApp::spawn().await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "u", "numbers": ["1"], "flow": {"module": "user", "data": {}}}),
    )
    .await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "v", "numbers": ["2"], "flow": {"module": "voicemail", "data": {}}}),
    )
    .await;
    app.create_ok(
        &app.admin_account,
        json!({"id": "w", "numbers": ["3"], "name": "x"}),
    )
    .await;
    let ids = |r: &crate::helpers::Resp| {
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            "?filter_flow.module=user",
        )
        .await;
    assert_eq!(ids(&r), vec!["u"]);
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            "?filter_not_flow.module=user",
        )
        .await;
    assert_eq!(ids(&r), vec!["v", "w"]);
    let r = app
        .list(&app.admin_token, &app.admin_account, "?has_key=name")
        .await;
    assert_eq!(ids(&r), vec!["w"]);
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            "?key_missing=flow&page_size=1",
        )
        .await;
    assert_eq!(ids(&r), vec!["w"]);
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            "?filter_pvt_type=callflow&page_size=2",
        )
        .await;
    assert_eq!(ids(&r), vec!["u", "v"]);
    assert!(r.body["next_start_key"].is_string());
}

#[tokio::test]
async fn post_replaces_public_fields_and_keeps_private_ones() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Old", "numbers": ["1000"], "ringback": {"early": "m"}}),
        )
        .await;
    let before = app
        .state
        .store
        .get_callflow(&app.admin_account, &id)
        .await
        .unwrap()
        .unwrap();
    let r = app
        .call(
            Method::POST,
            &item(&app, &id),
            Some(&app.admin_token),
            Some(json!({"data": {"name": "New", "numbers": ["1001"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["name"], "New");
    assert!(
        r.data().get("ringback").is_none(),
        "full replace drops unsent fields"
    );
    assert!(r.body["revision"].as_str().unwrap().starts_with("2-"));
    let after = app
        .state
        .store
        .get_callflow(&app.admin_account, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.doc["pvt_created"], before.doc["pvt_created"]);
    assert_eq!(after.doc["pvt_type"], "callflow");
    assert_eq!(after.doc["pvt_alphanum_name"], "new");
    // The released number can be claimed again.
    app.create_ok(&app.admin_account, json!({"numbers": ["1000"]}))
        .await;
}

#[tokio::test]
async fn patch_merges_and_null_removes() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Main", "numbers": ["1000"], "ringback": {"early": "m"},
                   "flow": {"module": "user", "data": {"id": "u1"}}}),
        )
        .await;
    let patch =
        json!({"data": {"name": "New name", "flow": {"data": {"timeout": 30}}, "ringback": null}});
    let r = app
        .call(
            Method::PATCH,
            &item(&app, &id),
            Some(&app.admin_token),
            Some(patch),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["name"], "New name");
    assert_eq!(r.data()["numbers"], json!(["1000"]));
    assert!(r.data().get("ringback").is_none());
    assert_eq!(r.data()["flow"]["module"], "user");
    assert_eq!(r.data()["flow"]["data"]["id"], "u1");
    assert_eq!(r.data()["flow"]["data"]["timeout"], 30);

    // The merged document is fully validated.
    let bad = json!({"data": {"flow": {"data": {"timeout": "abc"}}}});
    let r = app
        .call(
            Method::PATCH,
            &item(&app, &id),
            Some(&app.admin_token),
            Some(bad),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.data()["flow.data.timeout"]["type"]["value"], "abc");
}

#[tokio::test]
async fn delete_is_soft_and_releases_numbers() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Main", "numbers": ["1000"]}),
        )
        .await;
    let rev = app
        .fetch(&app.admin_token, &app.admin_account, &id)
        .await
        .body["revision"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .call(
            Method::DELETE,
            &item(&app, &id),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["_read_only"], json!({"deleted": true}));
    assert_eq!(r.data()["name"], "Main");
    assert_eq!(
        r.body["revision"],
        rev.as_str(),
        "the revision before the delete"
    );
    assert_eq!(
        app.fetch(&app.admin_token, &app.admin_account, &id)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.list(&app.admin_token, &app.admin_account, "")
            .await
            .data(),
        &json!([])
    );
    let stored = app
        .state
        .store
        .get_callflow(&app.admin_account, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.deleted, "soft delete keeps the document");
    assert_eq!(stored.doc["pvt_deleted"], true);
    app.create_ok(&app.admin_account, json!({"numbers": ["1000"]}))
        .await;
    let r = app
        .call(
            Method::DELETE,
            &item(&app, &id),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hard_delete_removes_the_document() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(&app.admin_account, json!({"numbers": ["1000"]}))
        .await;
    let r = app
        .call(
            Method::DELETE,
            &format!("{}?should_soft_delete=false", item(&app, &id)),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(app
        .state
        .store
        .get_callflow(&app.admin_account, &id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn if_match_guards_every_write() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(&app.admin_account, json!({"numbers": ["1000"]}))
        .await;
    let rev = app
        .fetch(&app.admin_token, &app.admin_account, &id)
        .await
        .body["revision"]
        .as_str()
        .unwrap()
        .to_string();
    let send = |method: Method, if_match: &str, body: Option<Value>| {
        let mut b = Request::builder()
            .method(method)
            .uri(item(&app, &id))
            .header("X-Auth-Token", &app.admin_token)
            .header("If-Match", if_match)
            .header("content-type", "application/json");
        b = b.header("x-test", "1");
        b.body(
            body.map(|v| Body::from(v.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap()
    };
    for method in [Method::POST, Method::PATCH] {
        let r = app
            .send(send(
                method,
                "\"1-stale\"",
                Some(json!({"data": {"numbers": ["1000"]}})),
            ))
            .await;
        // cowboy_rest compares If-Match with `api_resource:generate_etag`: 412 (Kazoo's body
        // is empty; ours has the envelope).
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(r.body["message"], "precondition_failed");
    }
    let r = app.send(send(Method::DELETE, "1-stale", None)).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = app
        .send(send(
            Method::POST,
            &format!("\"{rev}\""),
            Some(json!({"data": {"numbers": ["1000"], "name": "ok"}})),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .send(send(
            Method::PATCH,
            &format!("\"{rev}\""),
            Some(json!({"data": {"name": "stale"}})),
        ))
        .await;
    assert_eq!(
        r.status,
        StatusCode::PRECONDITION_FAILED,
        "the revision moved on"
    );
    assert_eq!(
        app.fetch(&app.admin_token, &app.admin_account, &id)
            .await
            .data()["name"],
        "ok"
    );
}

#[tokio::test]
async fn uniqueness_errors_use_kazoo_messages() {
    let app = TestApp::spawn().await;
    let first = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Main", "numbers": ["+14158867900"], "patterns": ["^\\*97$"]}),
        )
        .await;
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"numbers": ["4158867900"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.data()["numbers"]["unique"],
        json!({"message": format!("Number +14158867900 exists in callflow {first} Main"), "cause": "+14158867900"})
    );
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"patterns": ["^\\*97$"]}),
        )
        .await;
    assert_eq!(
        r.data()["patterns"]["unique"]["message"],
        format!("Pattern ^\\*97$ exists in callflow {first} Main")
    );
    // An unnamed holder is named by its id; updating the holder itself is fine.
    let unnamed = app
        .create_ok(&app.admin_account, json!({"numbers": ["2000"]}))
        .await;
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"numbers": ["2000"]}),
        )
        .await;
    assert_eq!(
        r.data()["numbers"]["unique"]["message"],
        format!("Number 2000 exists in callflow {unnamed} {unnamed}")
    );
    let r = app
        .call(
            Method::POST,
            &item(&app, &unnamed),
            Some(&app.admin_token),
            Some(json!({"data": {"numbers": ["2000"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Exact strings only: 1000 and +1000 do not collide.
    app.create_ok(&app.admin_account, json!({"numbers": ["1000"]}))
        .await;
    app.create_ok(&app.admin_account, json!({"numbers": ["+1000"]}))
        .await;
}

#[tokio::test]
async fn validation_errors_name_the_field_and_rule() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"name": "x"}), "numbers", "required"),
        (json!({"numbers": "1000"}), "numbers", "type"),
        (json!({"numbers": [], "patterns": "x"}), "patterns", "type"),
        (json!({"numbers": [1000]}), "numbers.0", "type"),
        (json!({"numbers": [""]}), "numbers.0", "minLength"),
        (
            json!({"numbers": ["4158867900", "+14158867900"]}),
            "numbers",
            "uniqueItems",
        ),
        (
            json!({"numbers": ["1"], "flow": {"module": "foo", "data": {}}}),
            "flow.module",
            "error",
        ),
        (
            json!({"numbers": ["1"], "flow": {"module": "pivot", "data": {}}}),
            "flow.data.voice_url",
            "required",
        ),
        (json!({"patterns": ["^(\\d+$"]}), "patterns.0", "error"),
        (json!({"patterns": ["^(?=1)\\d$"]}), "patterns.0", "error"),
    ];
    for (doc, field, rule) in cases {
        let r = app
            .create(&app.admin_token, &app.admin_account, doc.clone())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{doc}: {}", r.text);
        assert_eq!(r.body["message"], "validation error");
        assert!(
            r.data()[field][rule]["message"].is_string(),
            "{doc}: expected {field}.{rule} in {}",
            r.data()
        );
    }
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"patterns": ["^(?=1)\\d$"]}),
        )
        .await;
    assert_eq!(
        r.data()["patterns.0"]["error"]["message"],
        "invalid regular expression: look-around assertions are not supported"
    );
}

#[tokio::test]
async fn string_integers_are_coerced() {
    let app = TestApp::spawn().await;
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"numbers": ["1"], "flow": {"module": "user", "data": {"timeout": "45"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.data()["flow"]["data"]["timeout"], 45);
}

#[tokio::test]
async fn verb_tunnelling_in_body_and_query() {
    let app = TestApp::spawn().await;
    let path = TestApp::callflows(&app.admin_account);
    let r = app
        .call(
            Method::POST,
            &path,
            Some(&app.admin_token),
            Some(json!({"data": {"numbers": ["1000"]}, "verb": "PUT"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.data()["id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::POST,
            &format!("{path}/{id}?verb=delete"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["_read_only"]["deleted"], true);
    let r = app
        .call(
            Method::POST,
            &format!("{path}?verb=DELETE"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn number_search_and_number_filter() {
    let app = TestApp::spawn().await;
    let a = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Sales", "numbers": ["+14158867900", "1000"]}),
        )
        .await;
    let b = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Support", "numbers": ["+14158860000"]}),
        )
        .await;
    let search = |q: &str| format!("/v2/accounts/{}/search?{q}", app.admin_account);
    let r = app
        .call(
            Method::GET,
            &search("t=callflow&q=number&v=%2B1415886"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ids: Vec<&str> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    // Rows come in view-key order: b's 14158860000 before a's 14158867900.
    assert_eq!(ids, vec![b.as_str(), a.as_str()]);
    assert_eq!(
        r.data()[0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
            .len(),
        3
    );
    let r = app
        .call(
            Method::GET,
            &search("t=callflow&q=number&v=14158867900"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    let r = app
        .call(
            Method::GET,
            &search("t=callflow&q=name_and_number&v=supp"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.data()[0]["id"], b.as_str());
    let r = app
        .call(
            Method::GET,
            &search("q=number"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = app
        .list(&app.admin_token, &app.admin_account, "?number=4158867900")
        .await;
    let items = r.data().as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], a.as_str());
    let r = app
        .list(&app.admin_token, &app.admin_account, "?number=1000")
        .await;
    assert_eq!(r.data()[0]["id"], a.as_str());
    let r = app
        .list(&app.admin_token, &app.admin_account, "?number=9999")
        .await;
    assert_eq!(r.data(), &json!([]));
}
