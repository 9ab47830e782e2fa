//! The read caches (documents, accounts and users by id; read replies) never answer with
//! anything older than the last acknowledged write: writes through this server, writes racing
//! with readers that fill the caches, and writes by another process on the same SQLite file.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

fn on_postgres() -> bool {
    std::env::var("CALLFLOWD_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty())
}

/// Each write is seen by the very next read of every kind (document, listing, lookup), while
/// other tasks keep reading the same things and so keep filling the caches with what they saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_read_after_a_write_sees_it_while_readers_race() {
    let app = Arc::new(TestApp::spawn().await);
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let id = app
        .create_ok(&a, json!({"name": "v0", "numbers": ["5000"]}))
        .await;
    let doc = format!("{}/{id}", TestApp::callflows(&a));
    let list = format!("{}?page_size=50", TestApp::callflows(&a));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for n in 0..3 {
        let (app, t, stop) = (app.clone(), t.clone(), stop.clone());
        let paths = [
            doc.clone(),
            list.clone(),
            format!("/v2/accounts/{a}/lookup?number=500{n}"),
        ];
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for p in &paths {
                    app.call(Method::GET, p, Some(&t), None).await;
                    reads += 1;
                }
                // A read served from memory never waits, so without this a reader would hold
                // its worker thread for ever (a server's connections yield on their sockets).
                tokio::task::yield_now().await;
            }
            reads
        }));
    }
    for i in 1..=40 {
        let number = format!("500{}", i % 3);
        let r = app
            .call(
                Method::POST,
                &doc,
                Some(&t),
                Some(json!({"data": {"name": format!("v{i}"), "numbers": [number]}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let rev = r.body["revision"].as_str().unwrap().to_string();

        let got = app.call(Method::GET, &doc, Some(&t), None).await;
        assert_eq!(
            got.data()["name"],
            format!("v{i}"),
            "document after write {i}"
        );
        assert_eq!(got.body["revision"], rev.as_str());

        let page = app.call(Method::GET, &list, Some(&t), None).await;
        let row = page
            .data()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str());
        assert_eq!(
            row.unwrap()["name"],
            format!("v{i}"),
            "listing after write {i}"
        );

        let found = app
            .call(
                Method::GET,
                &format!("/v2/accounts/{a}/lookup?number={number}"),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(found.status, StatusCode::OK, "{}", found.text);
        assert_eq!(
            found.data()["callflow"]["name"],
            format!("v{i}"),
            "lookup after write {i}"
        );
        for other in (0..3).map(|k| format!("500{k}")).filter(|n| *n != number) {
            let gone = app
                .call(
                    Method::GET,
                    &format!("/v2/accounts/{a}/lookup?number={other}"),
                    Some(&t),
                    None,
                )
                .await;
            assert_eq!(
                gone.status,
                StatusCode::NOT_FOUND,
                "{other} after write {i}: {}",
                gone.text
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    assert!(reads > 0);
    // Deleted: gone from every read at once.
    let r = app.call(Method::DELETE, &doc, Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        app.call(Method::GET, &doc, Some(&t), None).await.status,
        StatusCode::NOT_FOUND
    );
    let page = app.call(Method::GET, &list, Some(&t), None).await;
    assert!(!page.text.contains(&id), "{}", page.text);
    // Every routing lock was given back: the lock map holds only locks in use.
    assert_eq!(app.state.routes.pending_locks(), 0);
    println!("cache race: 40 writes, each read back at once by document, listing and lookup, against {reads} concurrent reads");
}

/// Another process writing to the same SQLite file (a command-line tool: `callflowd test`
/// keeps call-test results, `callflowd create-account` adds accounts) is seen by the next
/// request, including where the server had cached that a document or account did not exist.
#[tokio::test]
async fn a_tool_writing_beside_the_server_is_seen_by_the_next_request() {
    if on_postgres() {
        println!("SKIPPED: PostgreSQL reads are not cached (several nodes write to it); tests/multinode.rs covers writes from another node");
        return;
    }
    let app = TestApp::spawn().await;
    let (a, t) = (app.admin_account.clone(), app.admin_token.clone());
    let path = format!("/v2/accounts/{a}/vmboxes");
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&t),
            Some(json!({"data": {"name": "Before", "mailbox": "4100"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.data()["id"].as_str().unwrap().to_string();
    let doc_path = format!("{path}/{id}");
    // Cached now: the document, the listing, and an account id that does not exist.
    assert_eq!(
        app.call(Method::GET, &doc_path, Some(&t), None)
            .await
            .data()["name"],
        "Before"
    );
    assert!(app
        .call(Method::GET, &path, Some(&t), None)
        .await
        .text
        .contains("Before"));
    let missing = callflowd::domain::new_id();
    let account_path = format!("/v2/accounts/{missing}");
    assert_eq!(
        app.call(Method::GET, &account_path, Some(&t), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let tool = callflowd::store::open_tool(&app.database_url)
        .await
        .unwrap();
    let (doc_type, stored) = tool.get_document(&a, &id).await.unwrap().unwrap();
    let mut doc = stored.doc.clone();
    doc.insert("name".into(), json!("After"));
    tool.write_document(&callflowd::store::DocumentWrite {
        account_id: a.clone(),
        id: id.clone(),
        doc_type,
        expected_rev: Some(stored.rev.clone()),
        new_rev: callflowd::domain::callflow::next_revision(Some(&stored.rev), &doc),
        doc,
        keys: vec![("mailbox".into(), "4100".into())],
        deleted: false,
        op: callflowd::store::ChangeOp::Update,
        request_id: "tool".into(),
    })
    .await
    .unwrap();
    tool.create_account(
        &callflowd::store::Account {
            id: missing.clone(),
            name: "Made by a tool".into(),
            realm: Some("tool.example.com".into()),
            parent_id: Some(a.clone()),
            tree: vec![a.clone()],
            superduper: false,
            doc: serde_json::Map::new(),
            created: 0,
        },
        None,
        None,
    )
    .await
    .unwrap();

    let r = app.call(Method::GET, &doc_path, Some(&t), None).await;
    assert_eq!(r.data()["name"], "After", "{}", r.text);
    let r = app.call(Method::GET, &path, Some(&t), None).await;
    assert!(
        r.text.contains("After") && !r.text.contains("Before"),
        "{}",
        r.text
    );
    let r = app.call(Method::GET, &account_path, Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["name"], "Made by a tool");
}

/// The caches are only in front of a store this process can keep exact: PostgreSQL (shared by
/// nodes) reads go to the database every time.
#[tokio::test]
async fn only_the_embedded_store_is_cached() {
    let app = TestApp::spawn().await;
    let stamped = app.state.store.read_stamp(&app.admin_account).is_some();
    assert_eq!(stamped, !on_postgres());
    let value: Value = json!(stamped);
    println!("read cache on this backend: {value}");
}
