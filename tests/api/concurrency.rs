//! Uniqueness under contention: the store, not a pre-check, decides.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_of_one_number_give_one_winner() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.create(
                &app.admin_token,
                &app.admin_account,
                json!({"name": format!("racer {i}"), "numbers": ["+14155550100"]}),
            )
            .await
        }));
    }
    let mut created = 0;
    let mut unique_errors = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            StatusCode::CREATED => created += 1,
            StatusCode::BAD_REQUEST => {
                let msg = r.data()["numbers"]["unique"]["message"]
                    .as_str()
                    .unwrap_or_default();
                assert!(
                    msg.starts_with("Number +14155550100 exists in callflow "),
                    "{}",
                    r.text
                );
                unique_errors += 1;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!((created, unique_errors), (1, 49));
    let holders = app
        .state
        .store
        .callflows_with_number(&app.admin_account, "+14155550100")
        .await
        .unwrap();
    assert_eq!(holders.len(), 1, "the store holds the number once");
}
