//! Several nodes on one PostgreSQL behind nginx: two real `callflowd serve` processes and a
//! real nginx (round robin), as docs/deployment.md describes.
//!
//! Needs `CALLFLOWD_TEST_POSTGRES_URL` and nginx; skipped with a notice otherwise (`.ci/run`
//! provides both).

mod cluster;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use cluster::{free_port, nginx_config, send, start_node, wait_healthy, Proc, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_behind_nginx_share_one_postgres() {
    let Ok(admin_url) = std::env::var("CALLFLOWD_TEST_POSTGRES_URL") else {
        println!("NOTICE: CALLFLOWD_TEST_POSTGRES_URL not set; multi-node test skipped (.ci/run runs it)");
        return;
    };
    if Command::new("nginx").arg("-v").output().is_err() {
        println!("NOTICE: nginx not installed; multi-node test skipped (.ci/run installs it)");
        return;
    }
    let db_url = callflowd::store::PgStore::scratch_database(&admin_url)
        .await
        .expect("scratch db");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let (port_a, port_b, port_lb) = (free_port(), free_port(), free_port());
    let node_a = start_node(&db_url, port_a, dir.path(), "node-a");
    let (a, b, lb) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
        format!("http://127.0.0.1:{port_lb}"),
    );
    wait_healthy(&client, &a).await;
    let _node_b = start_node(&db_url, port_b, dir.path(), "node-b");
    wait_healthy(&client, &b).await;
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir.path(), port_lb, &[port_a, port_b])).unwrap();
    let _nginx = Proc(
        Command::new("nginx")
            .args([
                "-c",
                conf.to_str().unwrap(),
                "-p",
                dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    wait_healthy(&client, &lb).await;

    // Login through the balancer; the token works on both nodes.
    let creds = callflowd::auth::md5_credentials("admin", PASSWORD);
    let (status, login) = send(
        &client,
        reqwest::Method::PUT,
        &format!("{lb}/v2/user_auth"),
        None,
        Some(json!({"data": {"credentials": creds, "account_name": "admin"}})),
    )
    .await;
    assert_eq!(status, 201, "{login}");
    let token = login["auth_token"].as_str().unwrap().to_string();
    let account = login["data"]["account_id"].as_str().unwrap().to_string();
    for node in [&a, &b] {
        let (s, _) = send(
            &client,
            reqwest::Method::GET,
            &format!("{node}/v2/token_auth"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(s, 200, "token accepted by {node}");
    }
    let cf = |base: &str| format!("{base}/v2/accounts/{account}/callflows");
    let lookup = |base: &str, n: &str| {
        format!(
            "{base}/v2/accounts/{account}/lookup?number={}",
            n.replace('+', "%2B")
        )
    };

    // CRUD and lookup through nginx (requests alternate between the nodes).
    let (s, created) = send(
        &client,
        reqwest::Method::PUT,
        &cf(&lb),
        Some(&token),
        Some(json!({"data": {"name": "Main", "numbers": ["1000"]}})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (s, got) = send(
            &client,
            reqwest::Method::GET,
            &format!("{}/{id}", cf(&lb)),
            Some(&token),
            None,
        )
        .await;
        assert_eq!((s, got["data"]["name"].as_str()), (200, Some("Main")));
    }
    let (s, patched) = send(
        &client,
        reqwest::Method::PATCH,
        &format!("{}/{id}", cf(&lb)),
        Some(&token),
        Some(json!({"data": {"name": "Patched"}})),
    )
    .await;
    assert_eq!(
        (s, patched["data"]["name"].as_str()),
        (200, Some("Patched"))
    );
    for _ in 0..2 {
        let (s, found) = send(
            &client,
            reqwest::Method::GET,
            &lookup(&lb, "1000"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(
            (s, found["data"]["callflow_id"].as_str()),
            (200, Some(id.as_str()))
        );
    }
    let (s, _) = send(
        &client,
        reqwest::Method::DELETE,
        &format!("{}/{id}", cf(&lb)),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200);
    for _ in 0..2 {
        let (s, _) = send(
            &client,
            reqwest::Method::GET,
            &lookup(&lb, "1000"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(s, 404);
    }

    // A write on A is visible to lookups on B (whose snapshot is warm) within 100 ms.
    let (s, _) = send(
        &client,
        reqwest::Method::GET,
        &lookup(&b, "0"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 404, "warms B's snapshot");
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let number = format!("+1555000{i:04}");
        let (s, w) = send(
            &client,
            reqwest::Method::PUT,
            &cf(&a),
            Some(&token),
            Some(json!({"data": {"numbers": [number]}})),
        )
        .await;
        assert_eq!(s, 201, "{w}");
        let acked = Instant::now();
        let seen = loop {
            let (s, _) = send(
                &client,
                reqwest::Method::GET,
                &lookup(&b, &number),
                Some(&token),
                None,
            )
            .await;
            if s == 200 {
                break acked.elapsed();
            }
            assert!(
                acked.elapsed() < Duration::from_secs(2),
                "write on A never reached B"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        worst = worst.max(seen);
        // Deletes travel the same way.
        let del_id = w["data"]["id"].as_str().unwrap();
        let (s, _) = send(
            &client,
            reqwest::Method::DELETE,
            &format!("{}/{del_id}", cf(&a)),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(s, 200);
        let acked = Instant::now();
        loop {
            let (s, _) = send(
                &client,
                reqwest::Method::GET,
                &lookup(&b, &number),
                Some(&token),
                None,
            )
            .await;
            if s == 404 {
                worst = worst.max(acked.elapsed());
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(2),
                "delete on A never reached B"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    println!(
        "multi-node: worst write-on-A to lookup-on-B delay {:.1} ms (40 writes)",
        worst.as_secs_f64() * 1e3
    );
    assert!(worst <= Duration::from_millis(100), "worst delay {worst:?}");

    // 100 concurrent creates of one number over both nodes: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (client, token) = (client.clone(), token.clone());
        let url = if i % 2 == 0 { cf(&a) } else { cf(&b) };
        tasks.push(tokio::spawn(async move {
            send(
                &client,
                reqwest::Method::PUT,
                &url,
                Some(&token),
                Some(json!({"data": {"numbers": ["+15559999999"]}})),
            )
            .await
        }));
    }
    let mut outcomes = std::collections::BTreeMap::new();
    for t in tasks {
        let (s, body) = t.await.unwrap();
        if s == 400 {
            assert!(body["data"]["numbers"]["unique"].is_object(), "{body}");
        }
        *outcomes.entry(s).or_insert(0) += 1;
    }
    assert_eq!(
        outcomes,
        [(201, 1), (400, 99)].into_iter().collect(),
        "outcomes {outcomes:?}"
    );

    // A dropped listener connection on B: B resynchronises and serves no stale route.
    let (s, _) = send(
        &client,
        reqwest::Method::GET,
        &lookup(&b, "0"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 404);
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db_url).await.unwrap();
        let killed: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(killed.len(), 2, "both nodes listen");
    }
    let (s, w) = send(
        &client,
        reqwest::Method::PUT,
        &cf(&a),
        Some(&token),
        Some(json!({"data": {"numbers": ["+15557770000"]}})),
    )
    .await;
    assert_eq!(s, 201, "{w}");
    let started = Instant::now();
    loop {
        let (s, _) = send(
            &client,
            reqwest::Method::GET,
            &lookup(&b, "+15557770000"),
            Some(&token),
            None,
        )
        .await;
        if s == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B kept a stale route after reconnecting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Kill A mid-traffic: no acknowledged write is lost, B keeps serving.
    let writer = {
        let (client, token, url) = (client.clone(), token.clone(), cf(&lb));
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let started = Instant::now();
            let mut i = 0;
            while started.elapsed() < Duration::from_millis(2500) {
                let (s, body) = send(
                    &client,
                    reqwest::Method::PUT,
                    &url,
                    Some(&token),
                    Some(json!({"data": {"numbers": [format!("+1666{i:07}")]}})),
                )
                .await;
                if s == 201 {
                    acked.push((
                        started.elapsed(),
                        body["data"]["id"].as_str().unwrap().to_string(),
                    ));
                }
                i += 1;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut node_a = node_a;
    node_a.0.kill().expect("kill node A");
    let killed_at = Duration::from_millis(700);
    let acked = writer.await.unwrap();
    assert!(
        acked.iter().any(|(t, _)| *t < killed_at),
        "writes before the kill"
    );
    assert!(
        acked
            .iter()
            .any(|(t, _)| *t > killed_at + Duration::from_millis(500)),
        "B keeps accepting writes after A died"
    );
    for (_, id) in &acked {
        let (s, _) = send(
            &client,
            reqwest::Method::GET,
            &format!("{}/{id}", cf(&b)),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(s, 200, "acknowledged write {id} lost");
    }
    println!(
        "multi-node: {} writes acknowledged around the kill, all present on B",
        acked.len()
    );
}
