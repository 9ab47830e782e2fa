//! The configurable limits (docs/limits.md): each answered with a Kazoo-shaped envelope.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::helpers::{database_url, serve_args, TestApp};

#[tokio::test]
async fn the_account_bucket_answers_429_with_kazoos_tokens_key_at_its_defaults() {
    let defaults = callflowd::config::ServeArgs::ephemeral("sqlite://unused.db").unwrap();
    assert_eq!(
        (
            defaults.account_bucket_size,
            defaults.account_bucket_rate,
            defaults.request_token_cost
        ),
        (100, 10, 1)
    );
    let app = TestApp::spawn_with(|a| {
        a.account_bucket_size = defaults.account_bucket_size;
        a.account_bucket_rate = defaults.account_bucket_rate;
        a.request_token_cost = defaults.request_token_cost;
    })
    .await;
    let first = app.list(&app.admin_token, &app.admin_account, "").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["tokens"]["consumed"], 1);
    let remaining = first.body["tokens"]["remaining"].as_u64().unwrap();
    assert!((90..=99).contains(&remaining), "{remaining}");

    let mut refused = None;
    for n in 0..2_000 {
        let r = app.list(&app.admin_token, &app.admin_account, "").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            println!("limits: account bucket refused after {n} more requests");
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = refused.expect("the bucket empties at 10 tokens a second");
    assert_eq!(r.body["status"], "error");
    assert_eq!(r.body["error"], "429");
    assert_eq!(r.body["message"], "too_many_requests");
    assert_eq!(r.data()["message"], "too many requests");
    assert_eq!(r.body["tokens"]["consumed"], 1);
    assert_eq!(r.body["tokens"]["remaining"], 0);
    assert!(r.body["request_id"].is_string() && r.body["node"].is_string());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1);

    // Health probes are not charged, and another account has its own bucket.
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let (other, other_token) = app.top_level_account("other").await;
    let r = app.list(&other_token, &other, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn without_a_bucket_no_tokens_key_is_sent() {
    let app = TestApp::spawn().await;
    let r = app.list(&app.admin_token, &app.admin_account, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("tokens").is_none(), "{}", r.text);
}

fn chain(nodes: usize) -> Value {
    let mut flow = json!({"module": "play", "data": {"id": "x"}, "children": {}});
    for _ in 1..nodes {
        flow = json!({"module": "play", "data": {"id": "x"}, "children": {"_": flow}});
    }
    flow
}

#[tokio::test]
async fn a_flow_with_too_many_nodes_is_refused_naming_flow() {
    let app = TestApp::spawn_with(|a| a.max_flow_nodes = 5).await;
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"numbers": ["2001"], "flow": chain(6)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["message"], "validation error");
    assert_eq!(r.data()["flow"]["maxItems"]["target"], 5);
    assert_eq!(
        r.data()["flow"]["maxItems"]["message"],
        "The flow is more than 5 nodes"
    );
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"numbers": ["2001"], "flow": chain(5)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(callflowd::documents::pipeline::flow_nodes(&chain(7)), 7);
}

#[tokio::test]
async fn a_pattern_too_long_is_refused_at_its_index() {
    let app = TestApp::spawn_with(|a| a.max_pattern_length = 10).await;
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"patterns": ["^1$", "^(12345678)$"], "flow": chain(1)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(
        r.data()["patterns.1"]["maxLength"]["target"],
        10,
        "{}",
        r.text
    );
    assert_eq!(
        r.data()["patterns.1"]["maxLength"]["message"],
        "String must not be more than 10 characters"
    );
    assert!(r.data().get("patterns.0").is_none());
}

#[tokio::test]
async fn json_nesting_past_the_configured_depth_is_refused() {
    let app = TestApp::spawn_with(|a| a.max_json_depth = 8).await;
    let nested = |depth: usize| {
        format!(
            "{{\"data\": {{\"numbers\": [\"3001\"], \"x\": {}1{}}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let send = |body: String| {
        Request::put(TestApp::callflows(&app.admin_account))
            .header("X-Auth-Token", &app.admin_token)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let r = app.send(send(nested(20))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["error"], "400");
    assert!(
        r.data()["json"]["invalid"]["message"].is_string(),
        "{}",
        r.text
    );
    let r = app.send(send(nested(3))).await;
    assert_ne!(r.data().get("json"), Some(&json!({})), "{}", r.text);
    assert!(r.data().get("json").is_none(), "{}", r.text);
}

#[tokio::test]
async fn page_size_and_unpaginated_listings_are_capped_with_a_next_start_key() {
    let app = TestApp::spawn_with(|a| {
        a.max_page_size = 2;
        a.max_listing_rows = 3;
    })
    .await;
    for n in 0..4 {
        app.create_ok(&app.admin_account, json!({"numbers": [format!("400{n}")]}))
            .await;
    }
    let r = app
        .list(&app.admin_token, &app.admin_account, "?page_size=50")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.data().as_array().unwrap().len(), 2);
    assert_eq!(r.body["page_size"], 2);
    assert!(r.body["next_start_key"].is_string(), "{}", r.text);

    let r = app
        .list(&app.admin_token, &app.admin_account, "?paginate=false")
        .await;
    assert_eq!(r.data().as_array().unwrap().len(), 3, "{}", r.text);
    assert!(r.body["next_start_key"].is_string(), "{}", r.text);
    // Within the cap, an unpaginated listing has no paging keys, as in Kazoo.
    let app = TestApp::spawn().await;
    app.create_ok(&app.admin_account, json!({"numbers": ["4100"]}))
        .await;
    let r = app
        .list(&app.admin_token, &app.admin_account, "?paginate=false")
        .await;
    assert!(r.body.get("next_start_key").is_none(), "{}", r.text);
    assert!(r.body.get("page_size").is_none(), "{}", r.text);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_503_in_an_envelope() {
    let app = TestApp::spawn().await;
    let mut config = (*app.state.config).clone();
    config.request_timeout = Duration::from_nanos(1);
    let state = app.state.with_config(config);
    let router = callflowd::api::router(state);
    let req = Request::get(TestApp::callflows(&app.admin_account))
        .header("X-Auth-Token", &app.admin_token)
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"], "503");
    assert_eq!(body["message"], "request_timeout");
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn metrics_move_to_their_own_listener_with_metrics_listen() {
    // Default: on the API listener, as plain text.
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    let dir = tempfile::tempdir().unwrap();
    let mut args = serve_args(database_url(&dir));
    args.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = callflowd::startup::App::build(&args).await.expect("build");
    let (api, metrics) = (server.local_addr().unwrap(), server.metrics_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let scraped = client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("# TYPE"));
    let on_api = client
        .get(format!("http://{api}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);
    let body: Value = on_api.json().await.unwrap();
    assert_eq!(body["error"], "404");
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

/// A served `App` on 127.0.0.1:0, and how to stop it.
async fn real_server() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let args = serve_args(database_url(&dir));
    let app = callflowd::startup::App::build(&args).await.expect("build");
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    (addr, stop, running, dir)
}

/// Writes `head` then `body_len` bytes (chunked when `chunked`) on one thread while another
/// reads the answer; returns what was read.
fn send_while_reading(addr: SocketAddr, head: String, body_len: usize, chunked: bool) -> String {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = stream.try_clone().unwrap();
    let read = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    // The whole answer: its head and as many body bytes as it declares.
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&got).to_string()
    });
    let mut writer = stream;
    let started = std::time::Instant::now();
    let _ = (|| -> std::io::Result<()> {
        writer.write_all(head.as_bytes())?;
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            let n = chunk.len().min(body_len - sent);
            if chunked {
                writer.write_all(format!("{n:x}\r\n").as_bytes())?;
                writer.write_all(&chunk[..n])?;
                writer.write_all(b"\r\n")?;
            } else {
                writer.write_all(&chunk[..n])?;
            }
            sent += n;
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    })();
    let answer = read.join().unwrap();
    println!(
        "limits: {body_len} byte body (chunked: {chunked}) answered after {:?}: {}",
        started.elapsed(),
        answer.lines().next().unwrap_or("")
    );
    answer
}

fn envelope_of(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_100_mb_reads_the_413() {
    let (addr, stop, running, _dir) = real_server().await;
    const HUNDRED_MB: usize = 100 * 1024 * 1024;
    for chunked in [false, true] {
        let head = if chunked {
            "PUT /v2/accounts/x/callflows HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
        } else {
            format!("PUT /v2/accounts/x/callflows HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {HUNDRED_MB}\r\n\r\n")
        };
        let answer = tokio::task::spawn_blocking(move || {
            send_while_reading(addr, head, HUNDRED_MB, chunked)
        })
        .await
        .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {answer:.200}"
        );
        let body = envelope_of(&answer);
        assert_eq!(body["error"], "413", "{answer:.400}");
        assert_eq!(body["data"]["file"]["maxSize"]["target"], 1024 * 1024);
    }
    // Just over the limit, within the drain cap: a client that writes everything before it
    // reads still gets the answer.
    let body_len = 1024 * 1024 + 1;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        stream.write_all(format!("PUT /v2/accounts/x/callflows HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {body_len}\r\n\r\n").as_bytes()).unwrap();
        stream.write_all(&vec![b'x'; body_len]).unwrap();
        let mut got = vec![0u8; 4096];
        let n = stream.read(&mut got).unwrap();
        String::from_utf8_lossy(&got[..n]).to_string()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_errors_carry_the_envelope() {
    let (addr, stop, running, _dir) = real_server().await;
    let raw = move |request: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = stream.write_all(&request);
            let mut got = Vec::new();
            let _ = stream.read_to_end(&mut got);
            String::from_utf8_lossy(&got).to_string()
        })
    };
    // A malformed request line.
    let answer = raw(b"GARBAGE\r\n\r\n".to_vec()).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    let body = envelope_of(&answer);
    assert_eq!(body["status"], "error", "{answer}");
    assert_eq!(body["error"], "400");
    assert_eq!(body["message"], "bad_request");
    assert!(
        body["request_id"].is_string() && body["node"].is_string() && body["timestamp"].is_string()
    );

    // Headers too large for hyper's buffer.
    let mut big = b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let answer = raw(big).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.300}");
    let body = envelope_of(&answer);
    assert_eq!(body["error"], "431", "{answer:.300}");
    assert_eq!(body["message"], "request_header_fields_too_large");

    // A URI longer than hyper holds.
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 70_000));
    long.extend_from_slice(b" HTTP/1.1\r\nhost: t\r\n\r\n");
    let answer = raw(long).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer:.300}");
    assert_eq!(
        envelope_of(&answer)["message"],
        "uri_too_long",
        "{answer:.300}"
    );

    // After a served request on the same connection, a malformed one still gets the envelope;
    // ordinary 4xx answers stay the router's.
    let answer = raw(b"GET /nowhere HTTP/1.1\r\nhost: t\r\n\r\nBAD LINE\r\n\r\n".to_vec())
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let second = answer.split("HTTP/1.1 ").nth(2).unwrap_or("");
    assert!(second.starts_with("400"), "{answer}");
    assert!(second.contains("\"error\":\"400\""), "{answer}");
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

#[test]
fn startup_logs_and_errors_never_show_the_database_password() {
    let bin = env!("CARGO_BIN_EXE_callflowd");
    // Nothing listens on port 1: the start fails, and says why, without the password.
    let output = std::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://callflowd:hunter2-secret@127.0.0.1:1/callflowd",
            "--admin-password",
            "admin-secret-pw",
        ])
        .env("RUST_LOG", "debug")
        .env_remove("CALLFLOWD_DATABASE_URL")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success());
    assert!(all.contains("callflowd:***@127.0.0.1:1"), "{all}");
    assert!(!all.contains("hunter2-secret"), "{all}");
    assert!(!all.contains("admin-secret-pw"), "{all}");

    // A start that succeeds logs the URL it serves, redacted too.
    let dir = tempfile::tempdir().unwrap();
    let scratch = database_url(&dir);
    if !scratch.starts_with("postgres") {
        eprintln!("SKIPPED: the successful-start leg needs CALLFLOWD_TEST_POSTGRES_URL");
        return;
    }
    let Ok(mut url) = url::Url::parse(&scratch) else {
        return;
    };
    if url.password().is_some() {
        eprintln!("SKIPPED: the test database URL already carries a password");
        return;
    }
    let _ = url.set_password(Some("hunter3-secret"));
    let mut child = std::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            url.as_str(),
        ])
        .env("RUST_LOG", "debug")
        .env("CALLFLOWD_ADMIN_PASSWORD", "admin-secret-pw")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let collected = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("callflowd listening") || text.contains("Error") {
                break;
            }
        }
        text
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !collected.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = collected.join().unwrap();
    println!("limits: secrets [postgresql] startup leg ran");
    if text.contains("callflowd listening") {
        assert!(text.contains(":***@"), "{text}");
    }
    assert!(!text.contains("hunter3-secret"), "{text}");
    assert!(!text.contains("admin-secret-pw"), "{text}");
}
