//! Group commit on SQLite: concurrent document writes share one transaction and one fsync, and a
//! write refused by its own checks fails alone.

use std::sync::{Arc, Mutex};

use serde_json::json;

use callflowd::store::{CallflowWrite, ChangeOp, DynStore, SqliteStore, Store, StoreError};

use crate::helpers::TestApp;

fn write(account: &str, id: &str, number: &str) -> CallflowWrite {
    let mut doc = serde_json::Map::new();
    doc.insert("name".into(), json!(id));
    doc.insert("numbers".into(), json!([number]));
    doc.insert("flow".into(), json!({"module": "park", "children": {}}));
    CallflowWrite {
        account_id: account.to_string(),
        id: id.to_string(),
        expected_rev: None,
        new_rev: "1-00000000000000000000000000000000".into(),
        doc,
        numbers: vec![number.to_string()],
        patterns: vec![],
        references: vec![],
        deleted: false,
        op: ChangeOp::Create,
        request_id: "group-commit-test".into(),
        max_account_patterns: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_a_refused_one_fails_alone() {
    if std::env::var("CALLFLOWD_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        println!(
            "SKIPPED: group commit is SQLite's (PostgreSQL commits concurrent transactions itself)"
        );
        return;
    }
    let kept: Arc<Mutex<Option<SqliteStore>>> = Default::default();
    let keep = kept.clone();
    let app = TestApp::spawn_with_store(
        |_| {},
        |url| async move {
            let store = SqliteStore::connect(&url).await.unwrap();
            store.index_stored_documents().await.unwrap();
            *keep.lock().unwrap() = Some(store.clone());
            Arc::new(store) as DynStore
        },
    )
    .await;
    let sqlite = kept.lock().unwrap().clone().unwrap();
    let store = app.state.store.clone();
    let a = app.admin_account.clone();
    store
        .write_callflow(&write(&a, "holder", "6999"))
        .await
        .unwrap();
    let commits_before = sqlite.group_commits();

    // 48 writes at once; every sixth claims the number the holder has.
    let mut tasks = Vec::new();
    for i in 0..48 {
        let (store, a) = (store.clone(), a.clone());
        let number = if i % 6 == 5 {
            "6999".to_string()
        } else {
            format!("71{i:02}")
        };
        tasks.push(tokio::spawn(async move {
            store
                .write_callflow(&write(&a, &format!("cf{i:02}"), &number))
                .await
        }));
    }
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => {
                assert_ne!(i % 6, 5, "cf{i:02} took a number already held");
                ok += 1;
            }
            Err(StoreError::Unique(c)) => {
                assert_eq!(i % 6, 5, "cf{i:02} refused: {c:?}");
                assert_eq!(c[0].callflow_id, "holder");
            }
            Err(other) => panic!("cf{i:02}: {other}"),
        }
    }
    assert_eq!(ok, 40);
    let commits = sqlite.group_commits() - commits_before;
    assert!(
        (1..40).contains(&commits),
        "40 writes took {commits} commits"
    );
    for i in (0..48).filter(|i| i % 6 != 5) {
        let stored = store
            .get_callflow(&a, &format!("cf{i:02}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.doc["numbers"], json!([format!("71{i:02}")]));
    }
    for i in (0..48).filter(|i| i % 6 == 5) {
        assert!(store
            .get_callflow(&a, &format!("cf{i:02}"))
            .await
            .unwrap()
            .is_none());
    }
    let holders = store.callflows_with_number(&a, "6999").await.unwrap();
    assert_eq!(
        holders.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["holder"]
    );
    println!("group commit: 48 concurrent writes (8 refused) took {commits} commits");
}
