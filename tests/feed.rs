//! The change feed across nodes (docs/history.md): two real `callflowd serve` processes on
//! one PostgreSQL behind nginx, concurrent writers on both, one reader of the server-sent
//! event stream that disconnects and resumes on another node. A test binary of its own so its
//! thousand writes never overlap the timing-sensitive checks of `tests/multinode.rs`.
//!
//! Needs `CALLFLOWD_TEST_POSTGRES_URL` and nginx; skipped with a notice otherwise (`.ci/run`
//! provides both).

mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use cluster::{free_port, send, start_node, wait_healthy, Nginx, PASSWORD};

/// Reads server-sent events from a streaming HTTP response: `(id, data)` per event.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(client: &reqwest::Client, url: &str, token: &str, last_event_id: i64) -> Self {
        let response = client
            .get(url)
            .header("X-Auth-Token", token)
            .header("Accept", "text/event-stream")
            .header("Last-Event-ID", last_event_id.to_string())
            .send()
            .await
            .expect("open the event stream");
        assert_eq!(response.status(), 200, "event stream at {url}");
        Self {
            response,
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> (i64, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
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
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s")
                .expect("stream readable")
                .expect("stream still open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Acceptance 3 of the history issue: a client follows the change feed (server-sent events)
/// while 1,000 writes arrive from 8 concurrent writers spread over two nodes; it disconnects
/// and resumes (`Last-Event-ID`) twice, on another node each time (A, then nginx, then B),
/// and receives each change exactly once, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_change_feed_over_two_nodes_delivers_each_change_once_in_commit_order() {
    const WRITERS: usize = 8;
    const WRITES: usize = 125;
    let Ok(admin_url) = std::env::var("CALLFLOWD_TEST_POSTGRES_URL") else {
        println!("NOTICE: CALLFLOWD_TEST_POSTGRES_URL not set; multi-node feed test skipped (.ci/run runs it)");
        return;
    };
    if Command::new("nginx").arg("-v").output().is_err() {
        println!("NOTICE: nginx not installed; multi-node feed test skipped (.ci/run installs it)");
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
    // The event stream stays open: no overall timeout (each read has its own).
    let streaming = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (port_a, port_b, port_lb) = (free_port(), free_port(), free_port());
    let _node_a = start_node(&db_url, port_a, dir.path(), "feed-a");
    let (a, b, lb) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
        format!("http://127.0.0.1:{port_lb}"),
    );
    wait_healthy(&client, &a).await;
    let _node_b = start_node(&db_url, port_b, dir.path(), "feed-b");
    wait_healthy(&client, &b).await;
    let _nginx = Nginx::start(dir.path(), port_lb, &[port_a, port_b]);
    wait_healthy(&client, &lb).await;
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
    let (_, now) = send(
        &client,
        reqwest::Method::GET,
        &format!("{lb}/v2/accounts/{account}/changes?limit=1000"),
        Some(&token),
        None,
    )
    .await;
    let start = now["next_since"].as_i64().expect("next_since");

    // Writers: half on callflows, half on devices; each write goes to node A or B in turn.
    type Acks = std::collections::HashMap<(String, i64), (Instant, Instant)>;
    let acks: std::sync::Arc<std::sync::Mutex<Acks>> = Default::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, token, acks) = (client.clone(), token.clone(), acks.clone());
        let nodes = [a.clone(), b.clone()];
        let account = account.clone();
        writers.push(tokio::spawn(async move {
            let segment = if w % 2 == 0 { "callflows" } else { "devices" };
            let id = format!("feed{w:02}{}", "0".repeat(26));
            for i in 0..WRITES {
                let node = &nodes[(w + i) % 2];
                let base = format!("{node}/v2/accounts/{account}/{segment}");
                let sent = Instant::now();
                let (status, body) = if i == 0 {
                    let data = if segment == "callflows" {
                        json!({"id": id, "name": "w", "numbers": [format!("+1444{w:07}")]})
                    } else {
                        json!({"id": id, "name": "w"})
                    };
                    send(
                        &client,
                        reqwest::Method::PUT,
                        &base,
                        Some(&token),
                        Some(json!({"data": data})),
                    )
                    .await
                } else {
                    send(
                        &client,
                        reqwest::Method::PATCH,
                        &format!("{base}/{id}"),
                        Some(&token),
                        Some(json!({"data": {"name": format!("w{w} #{i}")}})),
                    )
                    .await
                };
                assert!(status == 200 || status == 201, "{status} {body}");
                let rev = body["revision"].as_str().expect("revision");
                let number: i64 = rev.split('-').next().unwrap().parse().unwrap();
                acks.lock()
                    .unwrap()
                    .insert((id.clone(), number), (sent, Instant::now()));
            }
        }));
    }

    // The reader: node A, then (after a third) through nginx, then (after two thirds) node B.
    let total = WRITERS * WRITES;
    let feeds = [&a, &lb, &b].map(|n| format!("{n}/v2/accounts/{account}/changes?feed=sse"));
    let mut got: Vec<(i64, String, i64)> = Vec::new();
    let mut stream = EventStream::open(&streaming, &feeds[0], &token, start).await;
    for (round, cut) in [total / 3, 2 * total / 3, total].into_iter().enumerate() {
        while got.len() < cut {
            let (id, data) = stream.next().await;
            assert_eq!(data["seq"], id);
            got.push((
                id,
                data["id"].as_str().unwrap().to_string(),
                data["revision"].as_i64().unwrap(),
            ));
        }
        if round < 2 {
            drop(stream);
            let last = got.last().map(|g| g.0).unwrap_or(start);
            stream = EventStream::open(&streaming, &feeds[round + 1], &token, last).await;
        }
    }
    for w in writers {
        w.await.expect("writer");
    }
    let acks = acks.lock().unwrap().clone();

    // Exactly once, in position order, every acknowledged write and nothing else.
    assert_eq!(got.len(), total);
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "positions in order"
    );
    let seen: std::collections::BTreeSet<(String, i64)> =
        got.iter().map(|g| (g.1.clone(), g.2)).collect();
    assert_eq!(seen.len(), total, "a change was repeated");
    let acked: std::collections::BTreeSet<(String, i64)> = acks.keys().cloned().collect();
    assert_eq!(seen, acked, "every acknowledged write, nothing else");
    // Commit order, checked from outside: a write acknowledged before another was sent
    // committed before it, so it must come first.
    let index: std::collections::HashMap<(String, i64), usize> = got
        .iter()
        .enumerate()
        .map(|(i, g)| ((g.1.clone(), g.2), i))
        .collect();
    let mut by_ack: Vec<(Instant, usize)> =
        acks.iter().map(|(k, (_, ack))| (*ack, index[k])).collect();
    by_ack.sort();
    let mut prefix_max = Vec::with_capacity(by_ack.len());
    let mut max = 0;
    for (_, i) in &by_ack {
        max = std::cmp::max(max, *i);
        prefix_max.push(max);
    }
    let mut ordered_pairs = 0usize;
    for (key, (sent, _)) in &acks {
        let before = by_ack.partition_point(|(ack, _)| ack < sent);
        if before > 0 {
            assert!(
                prefix_max[before - 1] < index[key],
                "{key:?} came before a write acknowledged before it was sent"
            );
            ordered_pairs += before;
        }
    }
    // Each document's revisions in order, and the positions are the database's.
    let mut last_revision: std::collections::HashMap<&str, i64> = Default::default();
    for (_, id, revision) in &got {
        let previous = last_revision.insert(id.as_str(), *revision).unwrap_or(0);
        assert_eq!(*revision, previous + 1, "{id}: revisions out of order");
    }
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db_url).await.unwrap();
        let stored: Vec<(i64,)> = sqlx::query_as(
            "SELECT pos FROM changes WHERE account_id = $1 AND pos > $2 ORDER BY pos",
        )
        .bind(&account)
        .bind(start)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let stored: Vec<i64> = stored.into_iter().map(|p| p.0).collect();
        let received: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert_eq!(stored, received);
    }
    println!(
        "multi-node feed: {total} changes from {WRITERS} writers over 2 nodes, read through A, nginx and B with 2 resumes: each once, in commit order ({ordered_pairs} acknowledged-before-sent pairs checked)"
    );
}
