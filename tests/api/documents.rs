//! The callflow's neighbours (devices, vmboxes, groups, menus, temporal rules and sets, lists,
//! media, faxboxes, resources) on the generic document pipeline: the six operations, a schema
//! error, authorisation, and the per-type unique values under concurrent writers.
//! Fixtures: tests/fixtures/documents/<type>.json (our own realistic documents).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

fn fixture(segment: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/documents/{segment}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
}

fn url(account: &str, segment: &str) -> String {
    format!("/v2/accounts/{account}/{segment}")
}

#[tokio::test]
async fn every_document_type_supports_the_six_operations() {
    let app = TestApp::spawn().await;
    let (other_account, other_token) = app.top_level_account("intruder").await;
    let account = app.admin_account.clone();
    let token = app.admin_token.clone();
    for ty in callflowd::documents::TYPES {
        let f = fixture(ty.segment);
        let base = url(&account, ty.segment);
        // Create.
        let r = app
            .call(
                Method::PUT,
                &base,
                Some(&token),
                Some(json!({"data": f["valid"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}: {}", ty.segment, r.text);
        let id = r.data()["id"].as_str().unwrap().to_string();
        assert!(r
            .header("location")
            .unwrap()
            .ends_with(&format!("/{}/{id}", ty.segment)));
        assert!(
            r.data().get("pvt_type").is_none(),
            "private fields stay private"
        );
        assert_eq!(r.data()["name"], f["valid"]["name"]);
        let rev = r.body["revision"].as_str().unwrap().to_string();
        // Fetch.
        let item = format!("{base}/{id}");
        let r = app.call(Method::GET, &item, Some(&token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", ty.segment, r.text);
        assert_eq!(r.body["revision"], rev.as_str());
        // List: the summary row.
        let r = app.call(Method::GET, &base, Some(&token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", ty.segment, r.text);
        let row = r
            .data()
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["id"] == id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{}: {} not listed", ty.segment, id));
        assert_eq!(row["name"], f["valid"]["name"]);
        // A stale If-Match is refused.
        let stale = Request::builder()
            .method(Method::POST)
            .uri(&item)
            .header("X-Auth-Token", &token)
            .header("If-Match", "\"1-stale\"")
            .header("content-type", "application/json")
            .body(Body::from(json!({"data": f["valid"]}).to_string()))
            .unwrap();
        assert_eq!(
            app.send(stale).await.status,
            StatusCode::PRECONDITION_FAILED
        );
        // Change (full replace) and patch.
        let mut replaced = f["valid"].clone();
        replaced["name"] = f["change"]["name"].clone();
        let r = app
            .call(
                Method::POST,
                &item,
                Some(&token),
                Some(json!({"data": replaced})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", ty.segment, r.text);
        assert_eq!(r.data()["name"], f["change"]["name"]);
        let r = app
            .call(
                Method::PATCH,
                &item,
                Some(&token),
                Some(json!({"data": {"name": "Patched"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", ty.segment, r.text);
        assert_eq!(r.data()["name"], "Patched");
        // A document breaking the schema: Kazoo's error for that rule.
        let r = app
            .call(
                Method::PUT,
                &base,
                Some(&token),
                Some(json!({"data": f["invalid"]})),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{}: {}",
            ty.segment,
            r.text
        );
        let (field, rule) = (
            f["error"][0].as_str().unwrap(),
            f["error"][1].as_str().unwrap(),
        );
        assert!(
            r.data()[field][rule].is_object(),
            "{}: {}",
            ty.segment,
            r.text
        );
        // Another top-level account may neither read nor write it, nor see it listed.
        let r = app.call(Method::GET, &item, Some(&other_token), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", ty.segment);
        let r = app
            .call(
                Method::GET,
                &url(&other_account, ty.segment),
                Some(&other_token),
                None,
            )
            .await;
        assert!(!r.text.contains(&id), "{}", ty.segment);
        // The id is taken: a create reusing it is a conflict.
        let mut dup = f["valid"].clone();
        dup["id"] = json!(id);
        let r = app
            .call(Method::PUT, &base, Some(&token), Some(json!({"data": dup})))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}: {}", ty.segment, r.text);
        // Delete (soft), then it is gone.
        let r = app.call(Method::DELETE, &item, Some(&token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", ty.segment, r.text);
        assert_eq!(r.data()["_read_only"]["deleted"], true);
        let r = app.call(Method::GET, &item, Some(&token), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", ty.segment);
        let r = app.call(Method::GET, &base, Some(&token), None).await;
        assert!(!r.text.contains(&id), "{}", ty.segment);
    }
    // A document of one type is not found under another type's URL.
    let device = app
        .call(
            Method::PUT,
            &url(&account, "devices"),
            Some(&token),
            Some(json!({"data": {"name": "typed"}})),
        )
        .await;
    let id = device.data()["id"].as_str().unwrap();
    let r = app
        .call(
            Method::GET,
            &format!("{}/{id}", url(&account, "vmboxes")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::GET,
            &format!("{}/{id}", TestApp::callflows(&account)),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// 50 concurrent writers claim one unique value of a type: exactly one wins, the others get
/// Kazoo's `unique` error naming the field; a deleted holder releases the value.
async fn one_winner(app: &TestApp, segment: &str, doc: impl Fn(usize) -> Value, field: &str) {
    let base = url(&app.admin_account, segment);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let body = json!({"data": doc(i)});
        let (router, token, base) = (app.router.clone(), app.admin_token.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let req = Request::put(&base)
                .header("X-Auth-Token", token)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => created.push(body["data"]["id"].as_str().unwrap().to_string()),
            StatusCode::BAD_REQUEST => assert!(
                body["data"][field]["unique"].is_object(),
                "{segment}: {body}"
            ),
            other => panic!("{segment}: {other} {body}"),
        }
    }
    assert_eq!(created.len(), 1, "{segment}: exactly one writer wins");
    // Deleting the holder releases the value.
    let r = app
        .call(
            Method::DELETE,
            &format!("{base}/{}", created[0]),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .call(
            Method::PUT,
            &base,
            Some(&app.admin_token),
            Some(json!({"data": doc(99)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{segment}: {}", r.text);
}

#[tokio::test]
async fn unique_values_of_each_type_have_exactly_one_holder_under_concurrency() {
    let app = TestApp::spawn().await;
    // cb_devices: SIP username unique in the account (compared case-insensitively).
    one_winner(
        &app,
        "devices",
        |i| json!({"name": format!("Phone {i}"), "sip": {"username": if i % 2 == 0 { "Desk" } else { "desk" }}}),
        "sip.username",
    )
    .await;
    // cb_devices: MAC address unique.
    one_winner(
        &app,
        "devices",
        // Written differently, the same MAC once cleansed (`cleanse_mac_address`).
        |i| json!({"name": format!("Handset {i}"), "mac_address": if i % 2 == 0 { "00:04:f2:aa:bb:cc" } else { "0004.F2AA.BBCC" }}),
        "mac_address",
    )
    .await;
    // kzd_users: username unique in the account (lower-cased).
    one_winner(
        &app,
        "users",
        |i| json!({"first_name": "Bob", "last_name": format!("{i}"), "username": if i % 2 == 0 { "Bob" } else { "bob" }, "password": "pw"}),
        "username",
    )
    .await;
    // kzd_users: hotdesk id unique in the account.
    one_winner(
        &app,
        "users",
        |i| json!({"first_name": "Hot", "last_name": format!("{i}"), "hotdesk": {"id": "4242"}}),
        "hotdesk.id",
    )
    .await;
    // cb_vmboxes: mailbox number unique in the account.
    one_winner(
        &app,
        "vmboxes",
        // `listing_by_mailbox` is numeric: "03001" is mailbox 3001.
        |i| json!({"name": format!("Box {i}"), "mailbox": if i % 2 == 0 { "3001" } else { "03001" }}),
        "mailbox",
    )
    .await;
}

async fn create_doc(app: &TestApp, segment: &str, data: Value) -> String {
    let r = app
        .call(
            Method::PUT,
            &url(&app.admin_account, segment),
            Some(&app.admin_token),
            Some(json!({ "data": data })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{segment}: {}", r.text);
    r.data()["id"].as_str().unwrap().to_string()
}

/// `GET .../callflows/{ID}` `metadata` names every document the flow points at, of every
/// type (`cb_callflows:create_metadata`), in one store query.
#[tokio::test]
async fn metadata_resolves_every_document_type_named_in_the_flow() {
    let app = TestApp::spawn().await;
    let device = create_doc(&app, "devices", json!({"name": "Desk phone"})).await;
    let vmbox = create_doc(
        &app,
        "vmboxes",
        json!({"name": "Sales box", "mailbox": "3001"}),
    )
    .await;
    let group = create_doc(
        &app,
        "groups",
        json!({"name": "Sales team", "endpoints": {}}),
    )
    .await;
    let menu = create_doc(&app, "menus", json!({"name": "Main menu"})).await;
    let media = create_doc(
        &app,
        "media",
        json!({"name": "Hello", "media_source": "upload"}),
    )
    .await;
    let rule = create_doc(
        &app,
        "temporal_rules",
        json!({"name": "Open", "cycle": "weekly"}),
    )
    .await;
    let owner = app
        .call(Method::GET, "/v2/token_auth", Some(&app.admin_token), None)
        .await
        .data()["owner_id"]
        .as_str()
        .unwrap()
        .to_string();
    let flow = json!({"module": "temporal_route", "data": {},
        "children": {
            rule.clone(): {"module": "menu", "data": {"id": menu},
                "children": {"1": {"module": "device", "data": {"id": device}},
                             "2": {"module": "ring_group", "data": {"endpoints": [{"id": group, "endpoint_type": "group"}]}},
                             "3": {"module": "play", "data": {"id": media}},
                             "_": {"module": "user", "data": {"id": owner}}}},
            "_": {"module": "voicemail", "data": {"id": vmbox}}}});
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["5000"], "flow": flow}),
        )
        .await;
    let r = app.fetch(&app.admin_token, &app.admin_account, &id).await;
    let meta = &r.data()["metadata"];
    for (doc, name, pvt_type) in [
        (&device, "Desk phone", "device"),
        (&vmbox, "Sales box", "vmbox"),
        (&menu, "Main menu", "menu"),
        (&media, "Hello", "media"),
        (&rule, "Open", "temporal_rule"),
        (&owner, "admin Admin", "user"),
    ] {
        assert_eq!(meta[doc]["name"], name, "{pvt_type}: {meta}");
        assert_eq!(meta[doc]["pvt_type"], pvt_type, "{meta}");
    }
    // `metadata_candidates` follows Kazoo (`ids_in_flow`): `data.id`/`*_id` and branch names,
    // not endpoint lists, so the group named only in `endpoints` is not among them...
    assert!(meta.get(&group).is_none(), "{meta}");
    // ...but a group named by `data.id` is.
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"numbers": ["5001"], "flow": {"module": "group", "data": {"id": group}}}),
        )
        .await;
    let r = app.fetch(&app.admin_token, &app.admin_account, &id).await;
    assert_eq!(r.data()["metadata"][&group]["name"], "Sales team");
    assert_eq!(r.data()["metadata"][&group]["pvt_type"], "group");
}

/// `?references=ID` lists the callflows naming a document, and follows changes.
#[tokio::test]
async fn references_list_the_callflows_naming_a_document() {
    let app = TestApp::spawn().await;
    let device = create_doc(&app, "devices", json!({"name": "Desk phone"})).await;
    let group = create_doc(&app, "groups", json!({"name": "Team", "endpoints": {}})).await;
    let direct = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Direct", "numbers": ["100"], "flow": {"module": "device", "data": {"id": device}}}),
        )
        .await;
    let via_group = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Ring all", "numbers": ["101"], "flow": {"module": "ring_group",
                "data": {"endpoints": [{"id": device, "endpoint_type": "device"}, {"id": group, "endpoint_type": "group"}]}}}),
        )
        .await;
    let list = |id: String| {
        let app = &app;
        async move {
            let r = app
                .list(
                    &app.admin_token,
                    &app.admin_account,
                    &format!("?references={id}"),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.data()
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let mut expected = vec![direct.clone(), via_group.clone()];
    expected.sort();
    assert_eq!(list(device.clone()).await, expected);
    assert_eq!(list(group.clone()).await, vec![via_group.clone()]);
    // A change that drops the reference drops it from the listing.
    let r = app
        .call(
            Method::POST,
            &format!("{}/{direct}", TestApp::callflows(&app.admin_account)),
            Some(&app.admin_token),
            Some(json!({"data": {"name": "Direct", "numbers": ["100"], "flow": {"module": "voicemail", "data": {}}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(list(device.clone()).await, vec![via_group.clone()]);
    // Deleting the callflow drops it too; deleting the device stays allowed, as in Kazoo.
    let r = app
        .call(
            Method::DELETE,
            &format!("{}/{via_group}", TestApp::callflows(&app.admin_account)),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(list(device.clone()).await.is_empty());
    let r = app
        .call(
            Method::DELETE,
            &format!("{}/{device}", url(&app.admin_account, "devices")),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// Users on the document pipeline keep login working (`kzd_users` credentials): the password
/// is write-only, stored as hashes; a changed password replaces the old one; a deleted or
/// disabled user cannot log in; a new username needs a password.
#[tokio::test]
async fn users_created_over_the_api_log_in_and_never_show_their_password() {
    let app = TestApp::spawn().await;
    let base = url(&app.admin_account, "users");
    let r = app
        .call(
            Method::PUT,
            &base,
            Some(&app.admin_token),
            Some(json!({"data": {"first_name": "Carol", "last_name": "Ng", "username": "Carol", "password": "first-pass"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(
        !r.text.contains("first-pass") && !r.text.contains("pvt_"),
        "{}",
        r.text
    );
    assert_eq!(r.data()["username"], "carol");
    let id = r.data()["id"].as_str().unwrap().to_string();
    let login = |password: &'static str| {
        let app = &app;
        async move {
            let creds = callflowd::auth::md5_credentials("carol", password);
            app.call(
                Method::PUT,
                "/v2/user_auth",
                None,
                Some(json!({"data": {"credentials": creds, "account_realm": "localhost"}})),
            )
            .await
        }
    };
    let r = login("first-pass").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.data()["owner_id"], id.as_str());
    let item = format!("{base}/{id}");
    let r = app
        .call(
            Method::PATCH,
            &item,
            Some(&app.admin_token),
            Some(json!({"data": {"password": "second-pass"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(login("first-pass").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(login("second-pass").await.status, StatusCode::CREATED);
    // A new username without a password is refused.
    let r = app
        .call(
            Method::PATCH,
            &item,
            Some(&app.admin_token),
            Some(json!({"data": {"username": "caroline"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.data()["password"]["required"].is_object(), "{}", r.text);
    // Disabled, then deleted: no login.
    let r = app
        .call(
            Method::PATCH,
            &item,
            Some(&app.admin_token),
            Some(json!({"data": {"enabled": false}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(login("second-pass").await.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(
            Method::PATCH,
            &item,
            Some(&app.admin_token),
            Some(json!({"data": {"enabled": true}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(login("second-pass").await.status, StatusCode::CREATED);
    let r = app
        .call(Method::DELETE, &item, Some(&app.admin_token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(login("second-pass").await.status, StatusCode::UNAUTHORIZED);
    // The first admin (created with the account) is a user document too.
    let r = app
        .call(Method::GET, &base, Some(&app.admin_token), None)
        .await;
    assert!(
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "admin"),
        "{}",
        r.text
    );
}

/// For every type, one document breaking each rule class its schema uses on a top-level
/// property (`type`, `enum`, `minimum`, `maximum`, `minLength`, `maxLength`, `minItems`,
/// `maxItems`), generated from the schema itself: each is refused with Kazoo's error naming
/// that property and rule.
#[tokio::test]
async fn every_rule_class_of_each_schema_is_enforced() {
    let app = TestApp::spawn().await;
    let mut checked = 0;
    for ty in callflowd::documents::TYPES {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/schemas/{}.json",
                env!("CARGO_MANIFEST_DIR"),
                ty.schema
            ))
            .unwrap(),
        )
        .unwrap();
        let valid = fixture(ty.segment)["valid"].clone();
        let mut seen = std::collections::HashSet::new();
        for (prop, def) in schema["properties"].as_object().unwrap() {
            let Some(def) = def.as_object() else { continue };
            // Several failing keywords on one property report only the first (jesse); keep
            // to properties where the generated value breaks exactly one.
            if def.contains_key("format") || def.contains_key("pattern") {
                continue;
            }
            let mut cases: Vec<(&str, Value)> = Vec::new();
            let has_enum = def.contains_key("enum");
            let ty_name = def.get("type").and_then(Value::as_str);
            match ty_name.filter(|_| !has_enum) {
                Some("string") => cases.push(("type", json!({"not": "a string"}))),
                Some("integer") => cases.push(("type", json!("abc"))),
                Some("boolean") => cases.push(("type", json!("maybe"))),
                Some("object") => cases.push(("type", json!("x"))),
                Some("array") => cases.push(("type", json!("x"))),
                _ => {}
            }
            if has_enum && ty_name.is_none_or(|t| t == "string") {
                cases.push(("enum", json!("__not_a_listed_value__")));
            }
            if let Some(min) = def.get("minimum").and_then(Value::as_i64) {
                cases.push(("minimum", json!(min - 1)));
            }
            if let Some(max) = def.get("maximum").and_then(Value::as_i64) {
                cases.push(("maximum", json!(max + 1)));
            }
            if let Some(min) = def
                .get("minLength")
                .and_then(Value::as_u64)
                .filter(|m| *m > 0 && !has_enum)
            {
                cases.push(("minLength", json!("x".repeat(min as usize - 1))));
            }
            if let Some(max) = def
                .get("maxLength")
                .and_then(Value::as_u64)
                .filter(|m| *m < 5000 && !has_enum)
            {
                cases.push(("maxLength", json!("x".repeat(max as usize + 1))));
            }
            if let Some(min) = def
                .get("minItems")
                .and_then(Value::as_u64)
                .filter(|m| *m > 0)
            {
                cases.push(("minItems", json!(vec!["x"; min as usize - 1])));
            }
            if let Some(max) = def
                .get("maxItems")
                .and_then(Value::as_u64)
                .filter(|m| *m < 1000)
            {
                cases.push(("maxItems", json!(vec!["x"; max as usize + 1])));
            }
            for (rule, bad) in cases {
                // One property per rule class and type is enough to show the class.
                if !seen.insert(rule) {
                    continue;
                }
                let mut doc = valid.clone();
                doc[prop] = bad.clone();
                let r = app
                    .call(
                        Method::PUT,
                        &url(&app.admin_account, ty.segment),
                        Some(&app.admin_token),
                        Some(json!({ "data": doc })),
                    )
                    .await;
                assert_eq!(
                    r.status,
                    StatusCode::BAD_REQUEST,
                    "{} {prop} {rule} {bad}: {}",
                    ty.segment,
                    r.text
                );
                assert!(
                    r.data()[prop.as_str()][rule].is_object(),
                    "{} {prop} {rule}: {}",
                    ty.segment,
                    r.text
                );
                checked += 1;
            }
        }
    }
    println!("document rule classes: {checked} violations refused with Kazoo's error");
    assert!(checked >= 40, "only {checked} rule classes exercised");
}

/// `cb_lists` entries: created under their list (`list_id` forced from the URL), listed as
/// the `lists/entries` view rows, changed and deleted one by one, all removed with
/// `DELETE .../entries` and with their list. Better than Kazoo: an entry is reached only
/// through its own list, and a missing list is a 404.
#[tokio::test]
async fn list_entries_live_under_their_list() {
    let app = TestApp::spawn().await;
    let list = create_doc(&app, "lists", json!({"name": "Blocked"})).await;
    let other = create_doc(&app, "lists", json!({"name": "VIP"})).await;
    let base = format!("{}/{list}/entries", url(&app.admin_account, "lists"));
    let token = Some(app.admin_token.as_str());
    let mut ids = Vec::new();
    for number in ["+14155550001", "+14155550002"] {
        let r = app
            .call(
                Method::PUT,
                &base,
                token,
                Some(json!({"data": {"number": number, "list_id": other}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(
            r.data()["list_id"],
            list.as_str(),
            "list_id comes from the URL"
        );
        ids.push(r.data()["id"].as_str().unwrap().to_string());
    }
    let r = app.call(Method::GET, &base, token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.data().as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], list.as_str());
    assert!(rows[0]["value"]["number"].is_string());
    let entry = format!("{base}/{}", ids[0]);
    let r = app
        .call(
            Method::PATCH,
            &entry,
            token,
            Some(json!({"data": {"number": "+14155550009"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["number"], "+14155550009");
    // Not through another list, and not under a list that does not exist.
    let r = app
        .call(
            Method::GET,
            &format!(
                "{}/{other}/entries/{}",
                url(&app.admin_account, "lists"),
                ids[0]
            ),
            token,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::PUT,
            &format!(
                "{}/{}/entries",
                url(&app.admin_account, "lists"),
                "0".repeat(32)
            ),
            token,
            Some(json!({"data": {"number": "1"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.call(Method::DELETE, &entry, token, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.call(Method::GET, &base, token, None).await;
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    // DELETE .../entries removes the rest; deleting the list removes new ones too.
    let r = app.call(Method::DELETE, &base, token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    let r = app.call(Method::GET, &base, token, None).await;
    assert_eq!(r.data(), &json!([]));
    let r = app
        .call(
            Method::PUT,
            &base,
            token,
            Some(json!({"data": {"number": "+14155550003"}})),
        )
        .await;
    let last = r.data()["id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::DELETE,
            &format!("{}/{list}", url(&app.admin_account, "lists")),
            token,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .call(
            Method::GET,
            &format!(
                "{}/{other}/entries/{last}",
                url(&app.admin_account, "lists")
            ),
            token,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Every document write is announced to the other nodes (PostgreSQL NOTIFY in the write
/// transaction), with its type, and recorded in the change feed.
#[tokio::test]
async fn document_writes_are_announced_to_other_nodes() {
    let app = TestApp::spawn().await;
    if !app.database_url.starts_with("postgres") {
        println!("SKIPPED: cross-node announcements are PostgreSQL's (this run is SQLite; .ci/run runs the PostgreSQL leg)");
        return;
    }
    let other_node = callflowd::store::PgStore::connect(&app.database_url)
        .await
        .expect("second node");
    use callflowd::store::{ChangeEvent, Store};
    let mut events = other_node.subscribe_changes().expect("listener");
    // The listener says it (re)connected first.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv()).await;
    assert_eq!(first.ok().flatten(), Some(ChangeEvent::Resync));
    let id = create_doc(&app, "devices", json!({"name": "Announced"})).await;
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .expect("announced in time");
    assert_eq!(
        event,
        Some(ChangeEvent::Document {
            account_id: app.admin_account.clone(),
            doc_type: "device".into(),
            id
        })
    );
}

/// `cb_search` searches any document type of the account (`t` is the `pvt_type`): users by
/// their first and last names (the `search_by_name` view), devices by name.
#[tokio::test]
async fn search_finds_users_and_devices_by_name() {
    let app = TestApp::spawn().await;
    let user = create_doc(
        &app,
        "users",
        json!({"first_name": "Dana", "last_name": "Scully"}),
    )
    .await;
    create_doc(
        &app,
        "users",
        json!({"first_name": "Fox", "last_name": "Mulder"}),
    )
    .await;
    let device = create_doc(&app, "devices", json!({"name": "Dana's desk phone"})).await;
    let search = |q: String| {
        let app = &app;
        async move {
            let r = app
                .call(
                    Method::GET,
                    &format!("/v2/accounts/{}/search?{q}", app.admin_account),
                    Some(&app.admin_token),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.data().clone()
        }
    };
    let found = search("t=user&q=name&v=danasc".into()).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["id"], user.as_str());
    assert_eq!(found[0]["name"], "Dana Scully");
    let found = search("t=device&q=name&v=Dana".into()).await;
    assert_eq!(found[0]["id"], device.as_str(), "{found}");
    let found = search("t=user&q=name&v=zzz".into()).await;
    assert_eq!(found, json!([]));
}

async fn search_ids(app: &TestApp, query: &str) -> Vec<String> {
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/search?{query}", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["id"].as_str().expect("id").to_string())
        .collect()
}

/// The search index follows every write: a renamed document is found by its new name only, a
/// deleted one no longer, and numbers are found by their search key.
#[tokio::test]
async fn search_index_follows_renames_deletes_and_numbers() {
    let app = TestApp::spawn().await;
    let flow = json!({"module": "device", "data": {"id": "d"}});
    let first = create_doc(
        &app,
        "callflows",
        json!({"name": "Sales Line", "numbers": ["+14155550100"], "flow": flow}),
    )
    .await;
    let second = create_doc(
        &app,
        "callflows",
        json!({"name": "Salt Mine", "numbers": ["2001"], "flow": flow}),
    )
    .await;
    let user = create_doc(
        &app,
        "users",
        json!({"first_name": "José", "last_name": "Saldaña"}),
    )
    .await;

    assert_eq!(
        search_ids(&app, "t=callflow&q=name&v=sal").await,
        // In key order: "salesline" before "saltmine".
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        search_ids(&app, "t=callflow&q=number&v=%2B1415").await,
        vec![first.clone()]
    );
    assert_eq!(
        search_ids(&app, "t=callflow&q=name_and_number&v=200").await,
        vec![second.clone()]
    );
    // A user's name key keeps the accented letters, lower-cased: "josésaldaña".
    assert_eq!(
        search_ids(&app, "t=user&q=name&v=jos").await,
        vec![user.clone()]
    );

    let r = app
        .call(
            Method::PATCH,
            &format!("/v2/accounts/{}/callflows/{first}", app.admin_account),
            Some(&app.admin_token),
            Some(json!({"data": {"name": "Support"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        search_ids(&app, "t=callflow&q=name&v=sal").await,
        vec![second.clone()]
    );
    assert_eq!(
        search_ids(&app, "t=callflow&q=name&v=supp").await,
        vec![first.clone()]
    );

    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/accounts/{}/callflows/{second}", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(search_ids(&app, "t=callflow&q=name&v=sal").await.is_empty());
    assert!(search_ids(&app, "t=callflow&q=number&v=2001")
        .await
        .is_empty());
}

/// Documents stored before the index existed are indexed once when the store is next opened.
#[tokio::test]
async fn documents_stored_before_the_index_are_indexed_at_start() {
    let app = TestApp::spawn().await;
    let device = create_doc(&app, "devices", json!({"name": "Lobby phone"})).await;
    assert_eq!(
        search_ids(&app, "t=device&q=name&v=lobby").await,
        vec![device.clone()]
    );

    // As a database migrated from before the index: no keys, the setting not yet claimed.
    let wipe = [
        "DELETE FROM search_keys",
        "DELETE FROM settings WHERE key = 'search_index'",
    ];
    if app.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.database_url).await.expect("pg");
        for statement in wipe {
            sqlx::query(statement).execute(&pool).await.expect("wipe");
        }
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&app.database_url)
            .await
            .expect("sqlite");
        for statement in wipe {
            sqlx::query(statement).execute(&pool).await.expect("wipe");
        }
        pool.close().await;
    }
    assert!(search_ids(&app, "t=device&q=name&v=lobby").await.is_empty());

    let reopened = callflowd::store::open(&app.database_url)
        .await
        .expect("reopen");
    let found = reopened
        .search_candidates(&app.admin_account, "device", ("name", "name"), "lobby")
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, device);
    assert_eq!(
        search_ids(&app, "t=device&q=name&v=lobby").await,
        vec![device]
    );
}

/// `GET /users/{ID}/devices`: the devices the user owns or is hot-desked into, flagged as
/// `devices/listing_by_owner` does, following owner changes and deletes; 404 for no user.
#[tokio::test]
async fn a_users_devices_are_the_ones_it_owns_or_is_hotdesked_into() {
    let app = TestApp::spawn().await;
    let user = create_doc(
        &app,
        "users",
        json!({"first_name": "Ann", "last_name": "Lee"}),
    )
    .await;
    let other = create_doc(
        &app,
        "users",
        json!({"first_name": "Bo", "last_name": "Ng"}),
    )
    .await;
    let desk = create_doc(&app, "devices", json!({"name": "Desk", "owner_id": user})).await;
    let shared = create_doc(
        &app,
        "devices",
        json!({"name": "Shared", "owner_id": other, "hotdesk": {"users": {user.clone(): {}}}}),
    )
    .await;
    create_doc(&app, "devices", json!({"name": "Bo's", "owner_id": other})).await;

    let list = |id: String| {
        let app = &app;
        async move {
            app.call(
                Method::GET,
                &format!("/v2/accounts/{}/users/{id}/devices", app.admin_account),
                Some(&app.admin_token),
                None,
            )
            .await
        }
    };
    let r = list(user.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut rows = r.data().as_array().expect("rows").clone();
    rows.sort_by_key(|row| row["name"].as_str().unwrap_or_default().to_string());
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["id"], desk.as_str());
    assert_eq!(rows[0]["hotdesked"], false);
    assert_eq!(rows[0]["device_type"], "sip_device");
    assert_eq!(rows[0]["mac_address"], "");
    assert_eq!(rows[1]["id"], shared.as_str());
    assert_eq!(rows[1]["hotdesked"], true);
    assert_eq!(rows[1]["owner_id"], other.as_str());

    // The desk phone moves to the other user; the shared one is deleted.
    let r = app
        .call(
            Method::PATCH,
            &format!("/v2/accounts/{}/devices/{desk}", app.admin_account),
            Some(&app.admin_token),
            Some(json!({"data": {"owner_id": other}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/accounts/{}/devices/{shared}", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(list(user.clone()).await.data(), &json!([]));
    assert_eq!(list(other).await.data().as_array().map(Vec::len), Some(2));

    let r = list("0123456789abcdef0123456789abcdef".into()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}
