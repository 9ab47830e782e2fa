//! History (docs/history.md): revisions of every document type, diffs, rollback and restore,
//! drafts and publishing, dry runs, the audit, the change feed, retention, and the guarantee
//! that a document and its revision are written together or not at all. Runs on SQLite, and
//! on PostgreSQL when `CALLFLOWD_TEST_POSTGRES_URL` is set.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::helpers::{Resp, TestApp};

fn cf_url(account: &str) -> String {
    format!("/v2/accounts/{account}/callflows")
}

/// A request with extra headers; `body` is the whole envelope.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        builder = builder.header("X-Auth-Token", t);
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            builder = builder.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    app.send(builder.body(body).expect("request")).await
}

async fn get(app: &TestApp, path: &str) -> Resp {
    app.call(Method::GET, path, Some(&app.admin_token), None)
        .await
}

fn rev_of(r: &Resp) -> String {
    r.body["revision"].as_str().expect("revision").to_string()
}

/// Every row of every table, in a stable order: two equal dumps mean an unchanged store.
async fn dump(app: &TestApp) -> String {
    let mut out = String::new();
    if app.database_url.starts_with("postgres") {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .expect("connect");
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .expect("tables");
        for (table,) in tables {
            let (rows,): (Option<String>,) = sqlx::query_as(&format!(
                "SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM \"{table}\" t"
            ))
            .fetch_one(&mut conn)
            .await
            .expect("rows");
            out.push_str(&format!("== {table}\n{}\n", rows.unwrap_or_default()));
        }
        // Sequences too: a dry run must not even take a sequence value.
        let seqs: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT sequencename::text, last_value FROM pg_sequences ORDER BY 1")
                .fetch_all(&mut conn)
                .await
                .expect("sequences");
        out.push_str(&format!("== sequences {seqs:?}\n"));
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .expect("connect");
        let tables: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&mut conn)
                .await
                .expect("tables");
        for (table,) in tables {
            let columns: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(&mut conn)
                    .await
                    .expect("columns");
            let row = columns
                .iter()
                .map(|(c,)| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let (rows,): (Option<String>,) = sqlx::query_as(&format!(
                "SELECT group_concat(r, char(10)) FROM (SELECT {row} AS r FROM \"{table}\" ORDER BY r)"
            ))
            .fetch_one(&mut conn)
            .await
            .expect("rows");
            out.push_str(&format!("== {table}\n{}\n", rows.unwrap_or_default()));
        }
    }
    out
}

/// SQLite's count of commits made by other connections, seen from one connection held open:
/// unchanged across a request means nothing at all was committed meanwhile. `None` on
/// PostgreSQL.
async fn sqlite_watch(app: &TestApp) -> Option<sqlx::SqliteConnection> {
    if app.database_url.starts_with("postgres") {
        return None;
    }
    use sqlx::Connection;
    Some(
        sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .expect("connect"),
    )
}

async fn data_version(conn: &mut Option<sqlx::SqliteConnection>) -> Option<i64> {
    let conn = conn.as_mut()?;
    let (v,): (i64,) = sqlx::query_as("PRAGMA data_version")
        .fetch_one(conn)
        .await
        .expect("data_version");
    Some(v)
}

#[tokio::test]
async fn a_change_is_rolled_back_with_who_and_why_recorded() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let r = send(
        &app,
        Method::PUT,
        &cf_url(&a),
        Some(&t),
        Some(
            json!({"data": {"id": "main", "name": "Main", "numbers": ["1000"]},
            "commit_message": "first version"}),
        ),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = send(
        &app,
        Method::PATCH,
        &format!("{}/main", cf_url(&a)),
        Some(&t),
        Some(json!({"data": {"name": "Main line", "numbers": ["1000", "1001"]}})),
        &[("X-Commit-Message", "add 1001")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rev2 = rev_of(&r);

    // A stale If-Match is refused, as everywhere.
    let r = send(
        &app,
        Method::PUT,
        &format!("{}/main/rollback", cf_url(&a)),
        Some(&t),
        Some(json!({"data": {"revision": 1}})),
        &[("If-Match", "\"1-stale\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);

    let r = send(
        &app,
        Method::PUT,
        &format!("{}/main/rollback", cf_url(&a)),
        Some(&t),
        Some(json!({"data": {"revision": 1}, "commit_message": "undo"})),
        &[("If-Match", &format!("\"{rev2}\""))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["name"], "Main");
    assert_eq!(r.data()["numbers"], json!(["1000"]));
    assert!(rev_of(&r).starts_with("3-"));
    // Live, and routing again as revision 1 did: 1001 is free.
    let r = get(&app, &format!("{}/main", cf_url(&a))).await;
    assert_eq!(r.data()["name"], "Main");
    let r = get(&app, &format!("/v2/accounts/{a}/lookup?number=1001")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    let r = get(&app, &format!("{}/main/revisions", cf_url(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.data().as_array().unwrap();
    let kinds: Vec<_> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["rollback", "update", "create"]);
    let numbers: Vec<_> = rows
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    let messages: Vec<_> = rows.iter().map(|r| r["message"].clone()).collect();
    assert_eq!(
        messages,
        [json!("undo"), json!("add 1001"), json!("first version")]
    );
    for row in rows {
        assert_eq!(row["auth_account_id"], a.as_str());
        assert!(row["user_id"].is_string(), "{row}");
        assert!(row["request_id"].is_string(), "{row}");
        assert!(row["time"].as_str().unwrap().ends_with('Z'));
    }
    // Paging, newest first.
    let r = get(&app, &format!("{}/main/revisions?page_size=2", cf_url(&a))).await;
    assert_eq!(r.data().as_array().unwrap().len(), 2);
    assert_eq!(r.body["next_start_key"], 1);
    let r = get(&app, &format!("{}/main/revisions?start_key=1", cf_url(&a))).await;
    assert_eq!(r.data()[0]["revision"], 1);
    assert!(r.body.get("next_start_key").is_none());

    // One revision, as stored then (public fields only), and by full rev too.
    let r = get(&app, &format!("{}/main/revisions/2", cf_url(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["name"], "Main line");
    assert_eq!(r.data()["_read_only"]["revision"]["message"], "add 1001");
    assert!(r
        .data()
        .as_object()
        .unwrap()
        .keys()
        .all(|k| !k.starts_with("pvt_")));
    let r = get(&app, &format!("{}/main/revisions/{rev2}", cf_url(&a))).await;
    assert_eq!(r.data()["name"], "Main line");
    let r = get(&app, &format!("{}/main/revisions/9", cf_url(&a))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&app, &format!("{}/main/revisions/2-nothash", cf_url(&a))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A rollback to a revision that does not exist, or without one.
    let r = app
        .call(
            Method::PUT,
            &format!("{}/main/rollback", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"revision": 42}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = app
        .call(
            Method::PUT,
            &format!("{}/main/rollback", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.data()["revision"]["required"].is_object(), "{}", r.text);
}

#[tokio::test]
async fn deleted_documents_are_listed_and_restored() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let id = app
        .create_ok(&a, json!({"name": "Gone", "numbers": ["2000"]}))
        .await;
    app.create_ok(&a, json!({"name": "Stays", "numbers": ["2001"]}))
        .await;
    let r = app
        .call(
            Method::DELETE,
            &format!("{}/{id}", cf_url(&a)),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The live listing does not show it; `?deleted=true` shows only it.
    let r = app.list(&t, &a, "").await;
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    let r = app.list(&t, &a, "?deleted=true").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.data().as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", r.text);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["name"], "Gone");
    assert_eq!(rows[0]["deleted"], true);
    assert_eq!(rows[0]["revision"], 2);
    // Its revisions stay readable while it is deleted.
    let r = get(&app, &format!("{}/{id}/revisions", cf_url(&a))).await;
    assert_eq!(r.data()[0]["kind"], "delete");

    // Restored "the same way": a rollback to the listed revision.
    let r = app
        .call(
            Method::PUT,
            &format!("{}/{id}/rollback", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"revision": 2}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["name"], "Gone");
    let r = get(&app, &format!("{}/{id}", cf_url(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = get(&app, &format!("/v2/accounts/{a}/lookup?number=2000")).await;
    assert_eq!(r.data()["callflow_id"], id.as_str(), "{}", r.text);
    let r = app.list(&t, &a, "?deleted=true").await;
    assert!(r.data().as_array().unwrap().is_empty());
    let r = get(&app, &format!("{}/{id}/revisions", cf_url(&a))).await;
    assert_eq!(r.data()[0]["kind"], "restore");

    // Any document type: a device, deleted and restored.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{a}/devices"),
            Some(&t),
            Some(json!({"data": {"name": "Desk", "sip": {"username": "desk1", "password": "pw-desk-1"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let device = r.data()["id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/accounts/{a}/devices/{device}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&app, &format!("/v2/accounts/{a}/devices?deleted=true")).await;
    assert_eq!(r.data()[0]["id"], device.as_str(), "{}", r.text);
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{a}/devices/{device}/rollback"),
            Some(&t),
            Some(json!({"data": {"revision": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = get(&app, &format!("/v2/accounts/{a}/devices/{device}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.data()["name"], "Desk");
}

#[tokio::test]
async fn a_rollback_that_would_take_a_held_value_is_refused_like_a_save() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let first = app
        .create_ok(&a, json!({"name": "First", "numbers": ["3000"]}))
        .await;
    let r = app
        .call(
            Method::POST,
            &format!("{}/{first}", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"name": "First", "numbers": ["3001"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let second = app
        .create_ok(&a, json!({"name": "Second", "numbers": ["3000"]}))
        .await;
    let r = app
        .call(
            Method::PUT,
            &format!("{}/{first}/rollback", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"revision": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["message"], "validation error");
    assert_eq!(
        r.data()["numbers"]["unique"]["message"],
        format!("Number 3000 exists in callflow {second} Second")
    );
    // Nothing moved.
    let r = get(&app, &format!("{}/{first}", cf_url(&a))).await;
    assert_eq!(r.data()["numbers"], json!(["3001"]));
    let r = get(&app, &format!("{}/{first}/revisions", cf_url(&a))).await;
    assert_eq!(r.data().as_array().unwrap().len(), 2);

    // The same for another type's unique value (a device's SIP username).
    let device = |name: &str, user: &str| json!({"data": {"name": name, "sip": {"username": user, "password": "pw-123456"}}});
    let url = format!("/v2/accounts/{a}/devices");
    let r = app
        .call(Method::PUT, &url, Some(&t), Some(device("A", "alpha")))
        .await;
    let d1 = r.data()["id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::POST,
            &format!("{url}/{d1}"),
            Some(&t),
            Some(device("A", "beta")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .call(Method::PUT, &url, Some(&t), Some(device("B", "alpha")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .call(
            Method::PUT,
            &format!("{url}/{d1}/rollback"),
            Some(&t),
            Some(json!({"data": {"revision": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.data()["sip.username"]["unique"].is_object(), "{}", r.text);
}

#[tokio::test]
async fn a_diff_answers_a_json_patch_and_a_readable_text() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let id = app
        .create_ok(
            &a,
            json!({"name": "Sales", "numbers": ["4000"],
                "flow": {"module": "response", "data": {"code": "486"}}}),
        )
        .await;
    for change in [
        json!({"name": "Sales line", "numbers": ["4000", "4001"]}),
        json!({"flow": {"module": "response", "data": {"code": "503"}}}),
    ] {
        let r = app
            .call(
                Method::PATCH,
                &format!("{}/{id}", cf_url(&a)),
                Some(&t),
                Some(json!({ "data": change })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let revision = |n: i64| {
        let app = &app;
        let url = format!("{}/{id}/revisions/{n}", cf_url(&a));
        async move {
            let mut doc = get(app, &url).await.data().clone();
            doc.as_object_mut().unwrap().remove("_read_only");
            doc.as_object_mut().unwrap().remove("id");
            doc
        }
    };
    let (r1, r2, r3) = (revision(1).await, revision(2).await, revision(3).await);

    // Default: against the revision before.
    let r = get(&app, &format!("{}/{id}/revisions/2/diff", cf_url(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["from"].clone(), r.body["to"].clone()),
        (json!(1), json!(2))
    );
    let patch = r.data().as_array().unwrap().clone();
    assert_eq!(
        patch,
        vec![
            json!({"op": "replace", "path": "/name", "value": "Sales line"}),
            json!({"op": "add", "path": "/numbers/1", "value": "4001"}),
        ]
    );
    assert_eq!(callflowd::history::diff::apply(&r1, &patch).unwrap(), r2);
    // Any pair, either way round.
    for (to, against, old, new) in [(3, 1, &r1, &r3), (1, 3, &r3, &r1)] {
        let r = get(
            &app,
            &format!("{}/{id}/revisions/{to}/diff?against={against}", cf_url(&a)),
        )
        .await;
        let patch = r.data().as_array().unwrap().clone();
        assert_eq!(&callflowd::history::diff::apply(old, &patch).unwrap(), new);
    }
    // Revision 1 against nothing: every field added.
    let r = get(&app, &format!("{}/{id}/revisions/1/diff", cf_url(&a))).await;
    assert_eq!(
        callflowd::history::diff::apply(&json!({}), r.data().as_array().unwrap()).unwrap(),
        r1
    );

    // The readable form: a unified diff, as text.
    let r = get(
        &app,
        &format!("{}/{id}/revisions/3/diff?format=text", cf_url(&a)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.header("x-request-id").is_some());
    assert!(
        r.text
            .starts_with(&format!("--- {id} revision 2\n+++ {id} revision 3\n@@ ")),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("-      \"code\": 486\n+      \"code\": 503\n"),
        "{}",
        r.text
    );
    // Also reachable with `Accept: text/plain` (anything else non-JSON stays 406).
    let r = send(
        &app,
        Method::GET,
        &format!("{}/{id}/revisions/3/diff?format=text", cf_url(&a)),
        Some(&t),
        None,
        &[("Accept", "text/plain")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = get(
        &app,
        &format!("{}/{id}/revisions/3/diff?format=xml", cf_url(&a)),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
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

fn first_module(trace: &Value) -> String {
    trace["steps"][0]["module"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

#[tokio::test]
async fn a_draft_is_edited_simulated_and_published() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let r = app
        .create(
            &t,
            &a,
            json!({"id": "sales", "name": "Sales", "numbers": ["5000"],
                "flow": {"module": "response", "data": {"code": "486"}}}),
        )
        .await;
    let live_rev = rev_of(&r);
    let draft_url = format!("{}/sales/draft", cf_url(&a));
    let r = get(&app, &draft_url).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "no draft yet");

    // The first save starts from the live revision; it is validated like a save.
    let r = app
        .call(
            Method::POST,
            &draft_url,
            Some(&t),
            Some(
                json!({"data": {"name": "Sales", "numbers": ["5000", "5001"],
                "flow": {"module": "play", "data": {"id": "welcome"},
                         "children": {"_": {"module": "response", "data": {"code": "503"}}}}}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.data()["_read_only"]["draft"]["base_rev"],
        live_rev.as_str()
    );
    let draft_rev = rev_of(&r);
    let r = app
        .call(
            Method::POST,
            &draft_url,
            Some(&t),
            Some(json!({"data": {"name": "No numbers"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Edited again (patch, with If-Match on the draft's own rev).
    let r = send(
        &app,
        Method::PATCH,
        &draft_url,
        Some(&t),
        Some(json!({"data": {"name": "Sales (new menu)"}})),
        &[("If-Match", &format!("\"{draft_rev}\""))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["numbers"], json!(["5000", "5001"]));
    let r = get(&app, &draft_url).await;
    assert_eq!(r.data()["name"], "Sales (new menu)");
    assert_eq!(r.data()["_read_only"]["draft"]["stale"], false);
    let r = get(&app, &format!("{}/drafts", cf_url(&a))).await;
    assert_eq!(r.data()[0]["id"], "sales", "{}", r.text);

    // Never routes: the live callflow still answers, 5001 reaches nothing.
    let r = get(&app, &format!("{}/sales", cf_url(&a))).await;
    assert_eq!(r.data()["name"], "Sales");
    let r = get(&app, &format!("/v2/accounts/{a}/lookup?number=5001")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Simulated: the draft with draft: true, the live flow without.
    let live = simulate(&app, json!({"number": "5000", "callflow_id": "sales"})).await;
    assert_eq!(first_module(&live), "response");
    let drafted = simulate(
        &app,
        json!({"number": "5000", "callflow_id": "sales", "draft": true}),
    )
    .await;
    assert_eq!(first_module(&drafted), "play", "{drafted}");
    assert_eq!(drafted["lookup"]["draft"], true);
    let by_number = simulate(&app, json!({"number": "5000", "draft": true})).await;
    assert_eq!(first_module(&by_number), "play", "{by_number}");

    // Published (If-Match: the live revision it started from): live at once, draft gone.
    let r = send(
        &app,
        Method::PUT,
        &format!("{draft_url}/publish"),
        Some(&t),
        None,
        &[
            ("If-Match", &format!("\"{live_rev}\"")),
            ("X-Commit-Message", "new menu"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["name"], "Sales (new menu)");
    assert!(rev_of(&r).starts_with("2-"));
    let r = get(&app, &format!("/v2/accounts/{a}/lookup?number=5001")).await;
    assert_eq!(r.data()["callflow_id"], "sales", "{}", r.text);
    assert_eq!(get(&app, &draft_url).await.status, StatusCode::NOT_FOUND);
    let r = get(&app, &format!("{}/sales/revisions", cf_url(&a))).await;
    assert_eq!(r.data()[0]["kind"], "publish");
    assert_eq!(r.data()[0]["message"], "new menu");
    // Drafts are in the feed and the audit under their own type.
    let r = get(&app, &format!("/v2/accounts/{a}/audit?type=callflow_draft")).await;
    let kinds: Vec<_> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("update"), json!("create")], "{}", r.text);

    // A draft is discarded with DELETE.
    let r = app
        .call(
            Method::PATCH,
            &draft_url,
            Some(&t),
            Some(json!({"data": {"name": "Scratch"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.call(Method::DELETE, &draft_url, Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["_read_only"]["deleted"], true);
    assert_eq!(get(&app, &draft_url).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_draft_of_a_new_callflow_is_published_as_a_create() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let r = app
        .call(
            Method::PUT,
            &format!("{}/drafts", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"name": "Support", "numbers": ["6000"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert!(r.data()["_read_only"]["draft"]["base_rev"].is_null());
    assert_eq!(
        get(&app, &format!("{}/{id}", cf_url(&a))).await.status,
        StatusCode::NOT_FOUND
    );
    // An id already used in the account cannot get a new-callflow draft.
    let used = app.create_ok(&a, json!({"numbers": ["6001"]})).await;
    let r = app
        .call(
            Method::PUT,
            &format!("{}/drafts", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"id": used, "numbers": ["6002"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // Publishing claims the numbers in the write transaction: a clash is the usual 400.
    app.create_ok(&a, json!({"numbers": ["6000"]})).await;
    let publish = format!("{}/{id}/draft/publish", cf_url(&a));
    let r = app.call(Method::PUT, &publish, Some(&t), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.data()["numbers"]["unique"].is_object());
    let r = app
        .call(
            Method::PATCH,
            &format!("{}/{id}/draft", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"numbers": ["6003"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.call(Method::PUT, &publish, Some(&t), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with(&format!("/callflows/{id}")));
    let r = get(&app, &format!("{}/{id}", cf_url(&a))).await;
    assert_eq!(r.data()["name"], "Support");
    let r = get(&app, &format!("{}/{id}/revisions", cf_url(&a))).await;
    assert_eq!(r.data()[0]["kind"], "publish");
    assert_eq!(r.data()[0]["revision"], 1);
}

#[tokio::test]
async fn a_publish_over_a_newer_live_change_is_refused_as_a_stale_if_match() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let r = app
        .create(
            &t,
            &a,
            json!({"id": "ops", "name": "Ops", "numbers": ["7000"]}),
        )
        .await;
    let base = rev_of(&r);
    let draft_url = format!("{}/ops/draft", cf_url(&a));
    let r = app
        .call(
            Method::PATCH,
            &draft_url,
            Some(&t),
            Some(json!({"data": {"name": "Ops (draft)"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Someone else changes the live callflow meanwhile.
    let r = app
        .call(
            Method::PATCH,
            &format!("{}/ops", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"name": "Ops (hotfix)"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let live = rev_of(&r);
    let r = get(&app, &draft_url).await;
    assert_eq!(r.data()["_read_only"]["draft"]["stale"], true);
    assert_eq!(r.data()["_read_only"]["draft"]["live_rev"], live.as_str());
    let r = send(
        &app,
        Method::PUT,
        &format!("{draft_url}/publish"),
        Some(&t),
        None,
        &[("If-Match", &format!("\"{base}\""))],
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert_eq!(r.body["message"], "precondition_failed");
    // Nothing overwritten, the draft kept.
    let r = get(&app, &format!("{}/ops", cf_url(&a))).await;
    assert_eq!(r.data()["name"], "Ops (hotfix)");
    assert_eq!(rev_of(&r), live);
    assert_eq!(get(&app, &draft_url).await.status, StatusCode::OK);
}

/// A dry-run case: what, method, path, body, headers.
type DryCase = (
    &'static str,
    Method,
    String,
    Option<Value>,
    Vec<(&'static str, &'static str)>,
);

/// When each write was sent and acknowledged, by (document id, revision number).
type Acks = HashMap<(String, i64), (Instant, Instant)>;

#[tokio::test]
async fn every_dry_run_answers_as_the_write_would_and_leaves_the_store_identical() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let cf = cf_url(&a);
    app.create_ok(
        &a,
        json!({"id": "held", "name": "Held", "numbers": ["8000"]}),
    )
    .await;
    let r = app
        .create(
            &t,
            &a,
            json!({"id": "flow", "name": "Flow", "numbers": ["8001"]}),
        )
        .await;
    let rev1 = rev_of(&r);
    let r = app
        .call(
            Method::PATCH,
            &format!("{cf}/flow"),
            Some(&t),
            Some(json!({"data": {"name": "Flow 2"}})),
        )
        .await;
    let rev2 = rev_of(&r);
    let r = app
        .call(
            Method::PATCH,
            &format!("{cf}/flow/draft"),
            Some(&t),
            Some(json!({"data": {"name": "Flow draft"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{a}/devices"),
            Some(&t),
            Some(json!({"data": {"name": "Phone", "sip": {"username": "ph1", "password": "pw-ph-1"}}})),
        )
        .await;
    let device = r.data()["id"].as_str().unwrap().to_string();

    // (what, method, path, body, headers); `{flow}` in a header is the flow's current rev.
    let cases: Vec<DryCase> = vec![
        (
            "create",
            Method::PUT,
            cf.clone(),
            Some(json!({"data": {"id": "new", "name": "New", "numbers": ["8002"]}})),
            vec![],
        ),
        (
            "create taking a held number",
            Method::PUT,
            cf.clone(),
            Some(json!({"data": {"name": "Clash", "numbers": ["8000"]}})),
            vec![],
        ),
        (
            "create reusing an id",
            Method::PUT,
            cf.clone(),
            Some(json!({"data": {"id": "held", "numbers": ["8003"]}})),
            vec![],
        ),
        (
            "change",
            Method::POST,
            format!("{cf}/flow"),
            Some(json!({"data": {"name": "Changed", "numbers": ["8001", "8004"]}})),
            vec![("If-Match", "{flow}")],
        ),
        (
            "change with a stale If-Match",
            Method::POST,
            format!("{cf}/flow"),
            Some(json!({"data": {"name": "Changed", "numbers": ["8001"]}})),
            vec![("If-Match", "\"1-stale\"")],
        ),
        (
            "patch",
            Method::PATCH,
            format!("{cf}/flow"),
            Some(json!({"data": {"name": "Patched"}})),
            vec![("X-Commit-Message", "why")],
        ),
        (
            "patch taking a held number",
            Method::PATCH,
            format!("{cf}/flow"),
            Some(json!({"data": {"numbers": ["8000"]}})),
            vec![],
        ),
        ("delete", Method::DELETE, format!("{cf}/flow"), None, vec![]),
        (
            "hard delete",
            Method::DELETE,
            format!("{cf}/flow?should_soft_delete=false"),
            None,
            vec![],
        ),
        (
            "rollback",
            Method::PUT,
            format!("{cf}/flow/rollback"),
            Some(json!({"data": {"revision": 1}})),
            vec![("If-Match", "{flow}")],
        ),
        (
            "draft save",
            Method::POST,
            format!("{cf}/flow/draft"),
            Some(json!({"data": {"name": "Other draft", "numbers": ["8001"]}})),
            vec![],
        ),
        (
            "draft discard",
            Method::DELETE,
            format!("{cf}/flow/draft"),
            None,
            vec![],
        ),
        (
            "publish",
            Method::PUT,
            format!("{cf}/flow/draft/publish"),
            None,
            vec![("If-Match", "{flow}")],
        ),
        (
            "device change",
            Method::POST,
            format!("/v2/accounts/{a}/devices/{device}"),
            Some(json!({"data": {"name": "Phone 2", "sip": {"username": "ph2"}}})),
            vec![],
        ),
        (
            "device delete",
            Method::DELETE,
            format!("/v2/accounts/{a}/devices/{device}"),
            None,
            vec![],
        ),
    ];
    let _ = (rev1, rev2);
    for (what, method, path, body, headers) in cases {
        let flow_rev = rev_of(&get(&app, &format!("{cf}/flow")).await);
        let headers: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| (*k, v.replace("{flow}", &format!("\"{flow_rev}\""))))
            .collect();
        let header_refs: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sep = if path.contains('?') { '&' } else { '?' };
        let dry_path = format!("{path}{sep}dry_run=true");

        let before = dump(&app).await;
        let mut watch = sqlite_watch(&app).await;
        let version = data_version(&mut watch).await;
        let dry = send(
            &app,
            method.clone(),
            &dry_path,
            Some(&t),
            body.clone(),
            &header_refs,
        )
        .await;
        assert_eq!(
            data_version(&mut watch).await,
            version,
            "{what}: a dry run committed"
        );
        assert_eq!(
            dump(&app).await,
            before,
            "{what}: the dry run changed the store"
        );

        // The real write, from the same state, answers the same.
        let real = send(&app, method, &path, Some(&t), body, &header_refs).await;
        assert_eq!(
            dry.status, real.status,
            "{what}: {} vs {}",
            dry.text, real.text
        );
        let expected = match what {
            "create" => StatusCode::CREATED,
            "create taking a held number" | "patch taking a held number" => StatusCode::BAD_REQUEST,
            "create reusing an id" => StatusCode::CONFLICT,
            "change with a stale If-Match" => StatusCode::PRECONDITION_FAILED,
            _ => StatusCode::OK,
        };
        assert_eq!(real.status, expected, "{what}: {}", real.text);
        assert_eq!(dry.data(), real.data(), "{what}");
        assert_eq!(dry.body["message"], real.body["message"], "{what}");
        assert_eq!(dry.header("location"), real.header("location"), "{what}");
        if let (Some(d), Some(r)) = (
            dry.body["revision"].as_str(),
            real.body["revision"].as_str(),
        ) {
            assert_eq!(
                d.split('-').next(),
                r.split('-').next(),
                "{what}: revision number"
            );
        }
        if real.status.is_success() {
            restore(&app, what, &device).await;
        }
    }
    // The feed has a position for each real write only, one after the other.
    let r = get(
        &app,
        &format!("/v2/accounts/{a}/changes?since=0&limit=1000"),
    )
    .await;
    let seqs: Vec<i64> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

/// Puts back what a successful real write in the dry-run test changed.
async fn restore(app: &TestApp, what: &str, device: &str) {
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let cf = cf_url(&a);
    let call = |method: Method, path: String, body: Option<Value>| async move {
        let r = app.call(method, &path, Some(&app.admin_token), body).await;
        assert!(r.status.is_success(), "{what}: undo {path}: {}", r.text);
        r
    };
    match what {
        "create" => {
            call(
                Method::DELETE,
                format!("{cf}/new?should_soft_delete=false"),
                None,
            )
            .await;
        }
        "change" | "patch" | "delete" | "rollback" | "publish" => {
            // Back to revision 2's content ("Flow 2", number 8001).
            call(
                Method::PUT,
                format!("{cf}/flow/rollback"),
                Some(json!({"data": {"revision": 2}})),
            )
            .await;
            if what == "publish" {
                call(
                    Method::PATCH,
                    format!("{cf}/flow/draft"),
                    Some(json!({"data": {"name": "Flow draft"}})),
                )
                .await;
            }
        }
        "hard delete" => {
            let r = app
                .call(
                    Method::PUT,
                    &cf,
                    Some(&t),
                    Some(json!({"data": {"id": "flow", "name": "Flow 2", "numbers": ["8001"]}})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            call(
                Method::PATCH,
                format!("{cf}/flow/draft"),
                Some(json!({"data": {"name": "Flow draft"}})),
            )
            .await;
        }
        "draft save" | "draft discard" => {
            let _ = app
                .call(Method::DELETE, &format!("{cf}/flow/draft"), Some(&t), None)
                .await;
            call(
                Method::PATCH,
                format!("{cf}/flow/draft"),
                Some(json!({"data": {"name": "Flow draft"}})),
            )
            .await;
        }
        "device change" | "device delete" => {
            call(
                Method::PUT,
                format!("/v2/accounts/{a}/devices/{device}/rollback"),
                Some(json!({"data": {"revision": 1}})),
            )
            .await;
        }
        other => panic!("{other}: no undo"),
    }
}

#[tokio::test]
async fn the_audit_filters_by_type_document_user_and_time_and_covers_sub_accounts() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    // A second user of the account, writing with its own token.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{a}/users"),
            Some(&t),
            Some(
                json!({"data": {"first_name": "Bo", "last_name": "Writer", "username": "bo",
                "password": "bo-password-1", "enabled": true}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let bo = r.data()["id"].as_str().unwrap().to_string();
    let bo_token = app.login("bo", "localhost", "bo-password-1").await;
    let mine = app
        .create_ok(&a, json!({"name": "Mine", "numbers": ["9000"]}))
        .await;
    let r = app
        .create(&bo_token, &a, json!({"name": "Bos", "numbers": ["9001"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let bos = r.data()["id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::PATCH,
            &format!("{}/{mine}", cf_url(&a)),
            Some(&bo_token),
            Some(json!({"data": {"name": "Mine, renamed by Bo"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A sub-account and a write in it.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{a}"),
            Some(&t),
            Some(json!({"data": {"name": "Branch"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let child = r.data()["id"].as_str().unwrap().to_string();
    let in_child = app
        .create_ok(&child, json!({"name": "Branch line", "numbers": ["100"]}))
        .await;

    let audit = |query: &str| {
        let url = format!("/v2/accounts/{a}/audit{query}");
        let app = &app;
        async move {
            let r = get(app, &url).await;
            assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.text);
            r
        }
    };
    let ids = |r: &Resp| -> Vec<String> {
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Everything, newest first: the sub-account's write included.
    let all = audit("").await;
    let rows = all.data().as_array().unwrap();
    assert_eq!(rows[0]["id"], in_child.as_str());
    assert_eq!(rows[0]["account_id"], child.as_str());
    let seqs: Vec<i64> = rows.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    // By type (pvt_type or URL segment), document, user.
    let r = audit("?type=user").await;
    assert!(ids(&r).contains(&bo));
    assert!(r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["type"] == "user"));
    let r = audit("?type=callflows").await;
    assert_eq!(
        ids(&r),
        [in_child.clone(), mine.clone(), bos.clone(), mine.clone()]
    );
    let r = audit(&format!("?id={mine}")).await;
    let kinds: Vec<_> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("update"), json!("create")]);
    let r = audit(&format!("?user_id={bo}")).await;
    assert_eq!(ids(&r), [mine.clone(), bos.clone()]);
    // Time range, Gregorian seconds or RFC 3339, inclusive.
    let now = rows[0]["timestamp"].as_i64().unwrap();
    assert_eq!(
        audit(&format!("?from={}", now + 100))
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        audit(&format!("?to={}", now - 100_000))
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let r = audit(&format!(
        "?from={}&to={}&type=callflow",
        now - 100,
        now + 100
    ))
    .await;
    assert_eq!(r.data().as_array().unwrap().len(), 4);
    let iso = rows[0]["time"].as_str().unwrap().to_string();
    let r = audit(&format!("?to={iso}&id={in_child}")).await;
    assert_eq!(ids(&r), std::slice::from_ref(&in_child));
    let r = get(&app, &format!("/v2/accounts/{a}/audit?from=yesterday")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Paging: start_key is a feed position.
    let r = audit("?page_size=2").await;
    assert_eq!(r.data().as_array().unwrap().len(), 2);
    let next = r.body["next_start_key"].as_i64().unwrap();
    let r = audit(&format!("?page_size=2&start_key={next}")).await;
    assert_eq!(r.data()[0]["seq"], next);
    // The sub-account's audit does not climb up.
    let r = get(&app, &format!("/v2/accounts/{child}/audit")).await;
    assert_eq!(ids(&r), std::slice::from_ref(&in_child));
}

#[tokio::test]
async fn every_history_endpoint_checks_the_token() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let (_, other_token) = app.top_level_account("outsider").await;
    let id = app.create_ok(&a, json!({"numbers": ["1111"]})).await;
    let r = app
        .call(
            Method::PATCH,
            &format!("{}/{id}/draft", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"name": "d"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cf = cf_url(&a);
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{cf}/{id}/revisions"), None),
        (Method::GET, format!("{cf}/{id}/revisions/1"), None),
        (Method::GET, format!("{cf}/{id}/revisions/1/diff"), None),
        (
            Method::PUT,
            format!("{cf}/{id}/rollback"),
            Some(json!({"data": {"revision": 1}})),
        ),
        (Method::GET, format!("{cf}?deleted=true"), None),
        (
            Method::GET,
            format!("/v2/accounts/{a}/devices?deleted=true"),
            None,
        ),
        (
            Method::GET,
            format!("/v2/accounts/{a}/devices/{id}/revisions"),
            None,
        ),
        (
            Method::PUT,
            format!("/v2/accounts/{a}/devices/{id}/rollback"),
            Some(json!({"data": {"revision": 1}})),
        ),
        (Method::GET, format!("{cf}/drafts"), None),
        (
            Method::PUT,
            format!("{cf}/drafts"),
            Some(json!({"data": {"numbers": ["2"]}})),
        ),
        (Method::GET, format!("{cf}/{id}/draft"), None),
        (
            Method::POST,
            format!("{cf}/{id}/draft"),
            Some(json!({"data": {"numbers": ["3"]}})),
        ),
        (
            Method::PATCH,
            format!("{cf}/{id}/draft"),
            Some(json!({"data": {"name": "x"}})),
        ),
        (Method::DELETE, format!("{cf}/{id}/draft"), None),
        (Method::PUT, format!("{cf}/{id}/draft/publish"), None),
        (Method::GET, format!("/v2/accounts/{a}/audit"), None),
        (Method::GET, format!("/v2/accounts/{a}/changes"), None),
        (
            Method::GET,
            format!("/v2/accounts/{a}/changes?feed=sse"),
            None,
        ),
        (
            Method::GET,
            format!("/v2/accounts/{a}/lists/{id}/entries/{id}/revisions"),
            None,
        ),
    ];
    let before = dump(&app).await;
    for (method, path, body) in endpoints {
        let r = app
            .call(method.clone(), &path, Some(&other_token), body.clone())
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            r.text
        );
        let r = app.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            r.text
        );
        let r = app.call(method.clone(), &path, Some("garbage"), body).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            r.text
        );
    }
    assert_eq!(dump(&app).await, before, "refused requests changed nothing");
}

#[tokio::test]
async fn revisions_cover_every_document_type() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    for ty in callflowd::documents::TYPES {
        let path = format!(
            "{}/tests/fixtures/documents/{}.json",
            env!("CARGO_MANIFEST_DIR"),
            ty.segment
        );
        let f: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let base = format!("/v2/accounts/{a}/{}", ty.segment);
        let r = app
            .call(
                Method::PUT,
                &base,
                Some(&t),
                Some(json!({"data": f["valid"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}: {}", ty.segment, r.text);
        let id = r.data()["id"].as_str().unwrap().to_string();
        let r = app
            .call(
                Method::PATCH,
                &format!("{base}/{id}"),
                Some(&t),
                Some(json!({"data": {"name": "Renamed"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", ty.segment, r.text);
        let r = get(&app, &format!("{base}/{id}/revisions")).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", ty.segment, r.text);
        let rows = r.data().as_array().unwrap();
        assert_eq!(rows.len(), 2, "{}: {}", ty.segment, r.text);
        assert_eq!(rows[0]["type"], ty.pvt_type);
        let r = get(&app, &format!("{base}/{id}/revisions/2/diff")).await;
        let ops = r.data().as_array().unwrap();
        assert!(
            ops.iter()
                .any(|op| op["path"] == "/name" && op["value"] == "Renamed"),
            "{}: {}",
            ty.segment,
            r.text
        );
        // No secret ever shows (a user's password hashes are private fields).
        let r = get(&app, &format!("{base}/{id}/revisions/1")).await;
        assert!(
            !r.text.contains("pvt_") && !r.text.contains("argon2"),
            "{}",
            r.text
        );
        let r = app
            .call(
                Method::PUT,
                &format!("{base}/{id}/rollback"),
                Some(&t),
                Some(json!({"data": {"revision": 1}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", ty.segment, r.text);
        assert_eq!(r.data()["name"], f["valid"]["name"], "{}", ty.segment);
        // A revision of one type is not reachable under another type's URL.
        let other = if ty.segment == "devices" {
            "vmboxes"
        } else {
            "devices"
        };
        let r = get(&app, &format!("/v2/accounts/{a}/{other}/{id}/revisions")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", ty.segment);
    }
    // List entries, under their list.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{a}/lists"),
            Some(&t),
            Some(json!({"data": {"name": "Block"}})),
        )
        .await;
    let list = r.data()["id"].as_str().unwrap().to_string();
    let entries = format!("/v2/accounts/{a}/lists/{list}/entries");
    let r = app
        .call(
            Method::PUT,
            &entries,
            Some(&t),
            Some(json!({"data": {"number": "+15550001111"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let entry = r.data()["id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::PATCH,
            &format!("{entries}/{entry}"),
            Some(&t),
            Some(json!({"data": {"number": "+15550002222"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = get(&app, &format!("{entries}/{entry}/revisions")).await;
    assert_eq!(r.data().as_array().unwrap().len(), 2, "{}", r.text);
    let r = app
        .call(
            Method::PUT,
            &format!("{entries}/{entry}/rollback"),
            Some(&t),
            Some(json!({"data": {"revision": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["number"], "+15550001111");
}

#[tokio::test]
async fn a_purge_takes_the_revisions_with_it_and_stays_in_the_feed() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let id = app.create_ok(&a, json!({"numbers": ["1212"]})).await;
    let r = app
        .call(
            Method::DELETE,
            &format!("{}/{id}?should_soft_delete=false", cf_url(&a)),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&app, &format!("{}/{id}/revisions", cf_url(&a))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&app, &format!("/v2/accounts/{a}/audit?id={id}")).await;
    let kinds: Vec<_> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("purge"), json!("create")]);
    // The id can be used again, its history starting afresh.
    let r = app
        .create(&t, &a, json!({"id": id, "numbers": ["1212"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = get(&app, &format!("{}/{id}/revisions", cf_url(&a))).await;
    assert_eq!(r.data().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn commit_messages_are_checked() {
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let r = app
        .call(
            Method::PUT,
            &cf_url(&a),
            Some(&t),
            Some(json!({"data": {"numbers": ["1"]}, "commit_message": 7})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.data()["commit_message"]["type"].is_object());
    let long = "x".repeat(1001);
    let r = app
        .call(
            Method::PUT,
            &cf_url(&a),
            Some(&t),
            Some(json!({"data": {"numbers": ["1"]}, "commit_message": long})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.data()["commit_message"]["maxLength"].is_object());
}

#[tokio::test]
async fn retention_keeps_the_newest_revisions() {
    let app = TestApp::spawn_with(|args| args.revisions_keep = 2).await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let id = app
        .create_ok(&a, json!({"name": "r0", "numbers": ["1313"]}))
        .await;
    for i in 1..4 {
        let r = app
            .call(
                Method::PATCH,
                &format!("{}/{id}", cf_url(&a)),
                Some(&t),
                Some(json!({"data": {"name": format!("r{i}")}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = get(&app, &format!("{}/{id}/revisions", cf_url(&a))).await;
    let numbers: Vec<_> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [4, 3]);
    let r = app
        .call(
            Method::PUT,
            &format!("{}/{id}/rollback", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"revision": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "pruned: {}", r.text);
    // Age-based pruning keeps each document's latest revision.
    let gone = app
        .state
        .store
        .prune_revisions(callflowd::domain::now_gregorian() + 10)
        .await
        .unwrap();
    assert_eq!(gone, 1, "revision 3 of the callflow");
    let r = get(&app, &format!("{}/{id}/revisions", cf_url(&a))).await;
    assert_eq!(r.data().as_array().unwrap().len(), 1);
}

/// Acceptance 2: a failure injected after the document is written and before its revision is
/// leaves neither visible.
#[tokio::test]
async fn a_failure_between_document_and_revision_leaves_neither() {
    let switch: Arc<Mutex<Option<callflowd::store::FaultSwitch>>> = Default::default();
    let keep = switch.clone();
    let app = TestApp::spawn_with_store(
        |_| {},
        |url| async move {
            let store: callflowd::store::DynStore = if url.starts_with("postgres") {
                let s = callflowd::store::PgStore::connect(&url).await.unwrap();
                *keep.lock().unwrap() = Some(s.faults_for_test());
                Arc::new(s)
            } else {
                let s = callflowd::store::SqliteStore::connect(&url).await.unwrap();
                *keep.lock().unwrap() = Some(s.faults_for_test());
                Arc::new(s)
            };
            store.index_stored_documents().await.unwrap();
            store
        },
    )
    .await;
    let faults = switch.lock().unwrap().clone().unwrap();
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let id = app
        .create_ok(
            &a,
            json!({"id": "kept", "name": "Kept", "numbers": ["1400"]}),
        )
        .await;
    let before = dump(&app).await;

    faults.set(true);
    let r = app
        .create(&t, &a, json!({"id": "lost", "numbers": ["1401"]}))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    let r = app
        .call(
            Method::PATCH,
            &format!("{}/{id}", cf_url(&a)),
            Some(&t),
            Some(json!({"data": {"name": "Changed", "numbers": ["1402"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{a}/devices"),
            Some(&t),
            Some(json!({"data": {"name": "Lost phone"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    faults.set(false);

    // Neither the documents nor their revisions, nor any routing key or change, are there.
    assert_eq!(
        dump(&app).await,
        before,
        "a failed write left something behind"
    );
    assert_eq!(
        get(&app, &format!("{}/lost", cf_url(&a))).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, &format!("{}/lost/revisions", cf_url(&a)))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = get(&app, &format!("{}/{id}", cf_url(&a))).await;
    assert_eq!(r.data()["name"], "Kept");
    let r = get(&app, &format!("{}/{id}/revisions", cf_url(&a))).await;
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    for number in ["1401", "1402"] {
        let r = get(&app, &format!("/v2/accounts/{a}/lookup?number={number}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{number}");
    }
    // And the store works on once the fault is gone.
    let r = app
        .create(&t, &a, json!({"id": "lost", "numbers": ["1401"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// Reads server-sent events from a streaming response body: `(id, data)` pairs.
struct EventReader {
    body: Body,
    buffer: String,
}

impl EventReader {
    async fn open(app: &TestApp, last_event_id: Option<i64>) -> Self {
        let mut builder = Request::builder()
            .uri(format!(
                "/v2/accounts/{}/changes?feed=sse",
                app.admin_account
            ))
            .header("X-Auth-Token", &app.admin_token)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            builder = builder.header("Last-Event-ID", id.to_string());
        }
        let response = app
            .router
            .clone()
            .oneshot(builder.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next change event.
    async fn next(&mut self) -> (i64, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse::<i64>().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = serde_json::from_str::<Value>(v.trim()).ok();
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return (id, data);
                }
                continue;
            }
            let frame = tokio::time::timeout(std::time::Duration::from_secs(20), self.body.frame())
                .await
                .expect("an event within 20 s")
                .expect("stream open")
                .expect("frame");
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}

/// The in-process version of acceptance 3 (the two-node one is in tests/multinode.rs): a
/// reader of the event stream, disconnecting and resuming twice while concurrent writers
/// work, gets each change exactly once, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_stream_delivers_each_change_once_in_commit_order_across_reconnects() {
    const WRITERS: usize = 4;
    const WRITES: usize = 50;
    let app = Arc::new(TestApp::spawn().await);
    let start = {
        let r = get(
            &app,
            &format!("/v2/accounts/{}/changes?limit=1000", app.admin_account),
        )
        .await;
        r.body["next_since"].as_i64().unwrap()
    };
    // (id, revision) -> (sent, acknowledged)
    let acks: Arc<Mutex<Acks>> = Default::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (app, acks) = (app.clone(), acks.clone());
        writers.push(tokio::spawn(async move {
            let id = format!("writer{w}");
            for i in 0..WRITES {
                let sent = Instant::now();
                let r = if i == 0 {
                    app.create(
                        &app.admin_token,
                        &app.admin_account,
                        json!({"id": id, "numbers": [format!("55{w}0000")]}),
                    )
                    .await
                } else {
                    app.call(
                        Method::PATCH,
                        &format!("{}/{id}", cf_url(&app.admin_account)),
                        Some(&app.admin_token),
                        Some(json!({"data": {"name": format!("w{w} #{i}")}})),
                    )
                    .await
                };
                assert!(r.status.is_success(), "{}", r.text);
                let revision = r.body["revision"]
                    .as_str()
                    .unwrap()
                    .split('-')
                    .next()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap();
                acks.lock()
                    .unwrap()
                    .insert((id.clone(), revision), (sent, Instant::now()));
            }
        }));
    }
    let total = WRITERS * WRITES;
    let mut got: Vec<(i64, String, i64, Instant)> = Vec::new();
    let mut reader = EventReader::open(&app, Some(start)).await;
    let mut reconnects = 0;
    for cut in [total / 3, 2 * total / 3, total] {
        while got.len() < cut {
            let (id, data) = reader.next().await;
            assert_eq!(data["seq"], id);
            got.push((
                id,
                data["id"].as_str().unwrap().to_string(),
                data["revision"].as_i64().unwrap(),
                Instant::now(),
            ));
        }
        if cut < total {
            // Disconnect, then resume after the last event received.
            drop(reader);
            let last = got.last().map(|g| g.0);
            reader = EventReader::open(&app, last).await;
            reconnects += 1;
        }
    }
    assert_eq!(reconnects, 2);
    for w in writers {
        w.await.unwrap();
    }
    check_feed(&got, &acks.lock().unwrap(), total);
    println!("event stream [{}]: {total} changes from {WRITERS} writers, 2 reconnects, each once in commit order",
        if app.database_url.starts_with("postgres") { "postgresql" } else { "sqlite" });
}

/// Each acknowledged write seen exactly once; positions strictly increasing; and commit order
/// checked from outside: a write acknowledged before another was sent committed first, so it
/// must come first in the feed.
fn check_feed(got: &[(i64, String, i64, Instant)], acks: &Acks, total: usize) {
    assert_eq!(got.len(), total);
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "positions in order"
    );
    let seen: BTreeSet<(String, i64)> = got.iter().map(|g| (g.1.clone(), g.2)).collect();
    assert_eq!(seen.len(), total, "no change repeated");
    let acked: BTreeSet<(String, i64)> = acks.keys().cloned().collect();
    assert_eq!(seen, acked, "every acknowledged write, nothing else");
    let index: HashMap<(String, i64), usize> = got
        .iter()
        .enumerate()
        .map(|(i, g)| ((g.1.clone(), g.2), i))
        .collect();
    let mut by_ack: Vec<(Instant, usize)> =
        acks.iter().map(|(k, (_, ack))| (*ack, index[k])).collect();
    by_ack.sort();
    let mut prefix_max = Vec::with_capacity(by_ack.len());
    let mut max = 0usize;
    for (_, i) in &by_ack {
        max = max.max(*i);
        prefix_max.push(max);
    }
    for (key, (sent, _)) in acks {
        let before = by_ack.partition_point(|(ack, _)| ack < sent);
        if before > 0 {
            assert!(
                prefix_max[before - 1] < index[key],
                "{key:?} came before a write acknowledged before it was sent"
            );
        }
    }
}

#[tokio::test]
async fn the_feed_reads_in_pages_after_a_position() {
    let app = TestApp::spawn().await;
    let a = app.admin_account.clone();
    let r = get(&app, &format!("/v2/accounts/{a}/changes")).await;
    let start = r.body["next_since"].as_i64().unwrap();
    for i in 0..5 {
        app.create_ok(&a, json!({"numbers": [format!("160{i}")]}))
            .await;
    }
    let r = get(
        &app,
        &format!("/v2/accounts/{a}/changes?since={start}&limit=3"),
    )
    .await;
    assert_eq!(r.data().as_array().unwrap().len(), 3);
    let next = r.body["next_since"].as_i64().unwrap();
    let r = get(&app, &format!("/v2/accounts/{a}/changes?since={next}")).await;
    let rows = r.data().as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["type"], "callflow");
    assert_eq!(rows[0]["kind"], "create");
    assert_eq!(rows[0]["revision"], 1);
    assert!(rows[0]["user_id"].is_string());
    let r = get(&app, &format!("/v2/accounts/{a}/changes?since=abc")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
