//! The bad-input suite: hostile requests over real sockets, each answered with the right
//! status and Kazoo's error envelope, while a normal client keeps working beside them (its
//! latency is reported, not asserted).
//!
//! `cargo test --test attacks bad_input -- --nocapture`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::{backend, client, percentiles, Options, Server};

/// A raw request: head lines after the request line, and a body.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: callflowd\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends raw bytes and reads the whole answer (the connection is closed after it).
async fn exchange(server: &Server, bytes: &[u8]) -> (u16, Value, String) {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let (mut read, mut write) = stream.split();
    let reading = async {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut buf)).await;
        buf
    };
    let writing = async {
        // A refused body may not be read in full: stop writing, keep reading.
        let _ = write.write_all(bytes).await;
    };
    let (buf, ()) = tokio::join!(reading, writing);
    parse(&buf)
}

fn parse(buf: &[u8]) -> (u16, Value, String) {
    let text = String::from_utf8_lossy(buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::Null),
        text,
    )
}

fn json_req(method: &str, path: &str, token: &str, body: &[u8]) -> Vec<u8> {
    request(
        method,
        path,
        &[
            ("X-Auth-Token", token),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// A callflow body with `data` replaced.
fn with_data(data: Value) -> Vec<u8> {
    json!({ "data": data }).to_string().into_bytes()
}

fn flow() -> Value {
    json!({"module": "hangup", "data": {}, "children": {}})
}

fn unsigned_token(claims: Value) -> String {
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_get_the_right_error_and_others_keep_being_served() {
    let _guard = crate::exclusive().await;
    let server = Arc::new(Server::start(Options::default()).await);
    let a = server.account.clone();
    let token = server.token.clone();
    let cfs = format!("/v2/accounts/{a}/callflows");
    // A callflow the normal client reads, and one to aim writes at.
    let created = client()
        .put(server.url(&cfs))
        .header("x-auth-token", &token)
        .json(&json!({"data": {"name": "normal", "numbers": ["+15550001000"], "flow": flow()}}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let id = created.json::<Value>().await.expect("body")["data"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let item = format!("{cfs}/{id}");

    // The normal client: reads the callflow every 5 ms for as long as the attack lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let (server, stop, url, token) = (
            server.clone(),
            stop.clone(),
            server.url(&item),
            token.clone(),
        );
        tokio::spawn(async move {
            let http = client();
            let mut samples = Vec::new();
            let mut failures = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match http.get(&url).header("x-auth-token", &token).send().await {
                    Ok(r) if r.status().as_u16() == 200 => samples.push(t.elapsed()),
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(server);
            (samples, failures)
        })
    };
    // Slowloris: 64 sockets dribbling a request head for the whole run.
    let slow = {
        let (addr, stop) = (server.addr, stop.clone());
        tokio::spawn(async move {
            let mut sockets = Vec::new();
            for _ in 0..64 {
                if let Ok(mut s) = TcpStream::connect(addr).await {
                    let _ = s
                        .write_all(b"GET /v2/schemas HTTP/1.1\r\nHost: x\r\n")
                        .await;
                    sockets.push(s);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                for s in &mut sockets {
                    let _ = s.write_all(b"X-A: b\r\n").await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            sockets.len()
        })
    };

    let deep = format!(
        "{{\"data\": {}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let numbers: Vec<String> = (0..100_000).map(|i| format!("{i}")).collect();
    let many_numbers = with_data(json!({"numbers": numbers, "flow": flow()}));
    let alternation = (0..20_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("|");
    let mut bad_utf8 = br#"{"data": {"name": "caf"#.to_vec();
    bad_utf8.extend_from_slice(&[0xC3, 0x28, 0xFF]);
    bad_utf8.extend_from_slice(br#"", "numbers": ["1"], "flow": {"module": "hangup"}}}"#);
    let forged = {
        // The real token with its signature changed.
        let (head, _) = token.rsplit_once('.').expect("jwt");
        format!("{head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    };
    let none_token =
        unsigned_token(json!({"account_id": a, "method": "cb_user_auth", "exp": 4_102_444_800u64}));
    let expired = unsigned_token(json!({"account_id": a, "exp": 1u64}));
    let long_header = "a".repeat(600_000);

    // (name, request bytes, expected status)
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "truncated JSON",
            json_req(
                "PUT",
                &cfs,
                &token,
                br#"{"data": {"name": "x", "numbers": ["1"#,
            ),
            400,
        ),
        (
            "invalid JSON",
            json_req("PUT", &cfs, &token, br#"{data: {name: 'x'}}"#),
            400,
        ),
        (
            "trailing garbage after JSON",
            json_req("PUT", &cfs, &token, br#"{"data": {}} xyz"#),
            400,
        ),
        (
            "empty body on create",
            json_req("PUT", &cfs, &token, b""),
            400,
        ),
        (
            "JSON null body",
            json_req("PUT", &cfs, &token, b"null"),
            400,
        ),
        (
            "top-level array",
            json_req("PUT", &cfs, &token, b"[1,2,3]"),
            400,
        ),
        (
            "invalid UTF-8 in a string",
            json_req("PUT", &cfs, &token, &bad_utf8),
            400,
        ),
        (
            "number out of range",
            json_req(
                "PUT",
                &cfs,
                &token,
                br#"{"data": {"numbers": ["1"], "flow": {"module": "hangup"}, "x": 1e400}}"#,
            ),
            400,
        ),
        (
            "nesting 100,000 deep",
            json_req("PUT", &cfs, &token, deep.as_bytes()),
            400,
        ),
        (
            "100,000 numbers",
            json_req("PUT", &cfs, &token, &many_numbers),
            400,
        ),
        (
            "alternation of 20,000 branches",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"patterns": [format!("^({alternation})$")], "flow": flow()})),
            ),
            400,
        ),
        (
            "nested repetition too large",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"patterns": ["^((\\d{0,1000}){0,1000})$"], "flow": flow()})),
            ),
            400,
        ),
        (
            "unbalanced pattern",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"patterns": ["^(\\d+$"], "flow": flow()})),
            ),
            400,
        ),
        (
            "look-behind (not PCRE-portable here)",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"patterns": ["^(?<=1)\\d+$"], "flow": flow()})),
            ),
            400,
        ),
        (
            "NUL in a string",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"name": "a\u{0}b", "numbers": ["1"], "flow": flow()})),
            ),
            400,
        ),
        (
            "NUL in a key",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"na\u{0}me": "x", "numbers": ["1"], "flow": flow()})),
            ),
            400,
        ),
        (
            "NUL in the path",
            json_req("GET", &format!("{cfs}/abc%00def"), &token, b""),
            400,
        ),
        (
            "NUL in the query",
            json_req("GET", &format!("{cfs}?filter_name=%00"), &token, b""),
            400,
        ),
        (
            "data is an array",
            json_req("PUT", &cfs, &token, &with_data(json!([1, 2]))),
            400,
        ),
        (
            "data is a string",
            json_req("PUT", &cfs, &token, &with_data(json!("callflow"))),
            400,
        ),
        (
            "numbers is a string",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"numbers": "+15550001", "flow": flow()})),
            ),
            400,
        ),
        (
            "a number is an object",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"numbers": [{"n": 1}], "flow": flow()})),
            ),
            400,
        ),
        (
            "patterns is an object",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"patterns": {"p": "^1$"}, "flow": flow()})),
            ),
            400,
        ),
        (
            "flow is an array",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"numbers": ["+15550002"], "flow": []})),
            ),
            400,
        ),
        (
            "module is a number",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"numbers": ["+15550003"], "flow": {"module": 7}})),
            ),
            400,
        ),
        (
            "children is an array",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(
                    json!({"numbers": ["+15550004"], "flow": {"module": "hangup", "children": [1]}}),
                ),
            ),
            400,
        ),
        (
            "flow data is a string",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(
                    json!({"numbers": ["+15550005"], "flow": {"module": "hangup", "data": "x"}}),
                ),
            ),
            400,
        ),
        (
            "a child of the wrong type, deep down",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(
                    json!({"numbers": ["+15550006"], "flow": {"module": "hangup", "children": {"_": {"module": "hangup", "children": {"_": {"module": ["x"]}}}}}}),
                ),
            ),
            400,
        ),
        (
            "name is a number",
            json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(json!({"name": 5, "numbers": ["+15550007"], "flow": flow()})),
            ),
            400,
        ),
        (
            "patch with data an array",
            json_req("PATCH", &item, &token, &with_data(json!(["x"]))),
            400,
        ),
        (
            "unknown method",
            request("BREW", &cfs, &[("X-Auth-Token", &token)], b""),
            405,
        ),
        (
            "TRACE",
            request("TRACE", &cfs, &[("X-Auth-Token", &token)], b""),
            405,
        ),
        (
            "path traversal in a document id",
            json_req("GET", &format!("{cfs}/..%2F..%2Fetc%2Fpasswd"), &token, b""),
            404,
        ),
        (
            "dot segments in the path",
            json_req(
                "GET",
                &format!("/v2/accounts/{a}/../../etc/passwd"),
                &token,
                b"",
            ),
            404,
        ),
        (
            "account id that is a traversal",
            json_req("GET", "/v2/accounts/..%2F..%2Fadmin/callflows", &token, b""),
            404,
        ),
        (
            "an id of 10,000 characters",
            json_req("GET", &format!("{cfs}/{}", "f".repeat(10_000)), &token, b""),
            404,
        ),
        (
            "token in upper case",
            json_req("GET", &cfs, &token.to_uppercase(), b""),
            401,
        ),
        (
            "token with garbage appended",
            json_req("GET", &cfs, &format!("{token}=="), b""),
            401,
        ),
        (
            "token with its signature changed",
            json_req("GET", &cfs, &forged, b""),
            401,
        ),
        (
            "alg: none token",
            json_req("GET", &cfs, &none_token, b""),
            401,
        ),
        (
            "expired unsigned token",
            json_req("GET", &cfs, &expired, b""),
            401,
        ),
        (
            "Bearer with nothing",
            request("GET", &cfs, &[("Authorization", "Bearer ")], b""),
            401,
        ),
        (
            "Basic with garbage",
            request("GET", &cfs, &[("Authorization", "Basic !!!!")], b""),
            401,
        ),
        ("no credentials", request("GET", &cfs, &[], b""), 401),
        (
            "verb=DELETE tunnelled through a GET",
            json_req("GET", &format!("{item}?verb=DELETE&foo"), "", b""),
            401,
        ),
        // Kazoo's answer to a bad page size: 404 `faulty_request`.
        (
            "page_size not a number",
            json_req("GET", &format!("{cfs}?page_size=abc"), &token, b""),
            404,
        ),
        (
            "page_size negative",
            json_req("GET", &format!("{cfs}?page_size=-5"), &token, b""),
            404,
        ),
        (
            "login with the wrong types",
            json_req(
                "PUT",
                "/v2/user_auth",
                "",
                &with_data(json!({"credentials": 5, "account_name": ["x"]})),
            ),
            400,
        ),
        (
            "login for an unknown account",
            json_req(
                "PUT",
                "/v2/user_auth",
                "",
                &with_data(json!({"credentials": "0".repeat(32), "account_name": "nobody-here"})),
            ),
            401,
        ),
        (
            "schema name traversal",
            json_req("GET", "/v2/schemas/..%2F..%2Fetc%2Fpasswd", "", b""),
            404,
        ),
        (
            "600 KB header",
            request(
                "GET",
                &cfs,
                &[("X-Auth-Token", &token), ("X-Long", &long_header)],
                b"",
            ),
            431,
        ),
        (
            "malformed request line",
            b"GET /v2/schemas HTTP/1.1 extra\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
    ];
    let mut answered = 0;
    for (name, bytes, expected) in &cases {
        let (status, body, raw) = exchange(&server, bytes).await;
        assert_eq!(
            status,
            *expected,
            "{name}: expected {expected}, got {status}: {}",
            raw.chars().take(600).collect::<String>()
        );
        assert_eq!(
            body["status"],
            "error",
            "{name}: no error envelope: {}",
            raw.chars().take(600).collect::<String>()
        );
        assert_eq!(body["error"], expected.to_string(), "{name}: {body}");
        answered += 1;
    }

    // Duplicated keys: JSON's last value wins, as in Kazoo's decoder, and nothing breaks.
    let (status, body, raw) = exchange(
        &server,
        &json_req(
            "PUT",
            &cfs,
            &token,
            br#"{"data": {"name": "first", "name": "second", "numbers": ["+15550009"], "flow": {"module": "hangup"}}}"#,
        ),
    )
    .await;
    assert_eq!(status, 201, "{raw}");
    assert_eq!(body["data"]["name"], "second", "{raw}");

    // Patterns that take exponential time in a backtracking engine (PCRE, as Kazoo runs them)
    // are valid and stored; a lookup that would make them backtrack answers at once.
    let http = client();
    for (i, pattern) in ["^(\\d+)+X$", "^(1|11)+X$", "^(\\d*)*\\*$"]
        .iter()
        .enumerate()
    {
        let (status, _, raw) = exchange(
            &server,
            &json_req(
                "PUT",
                &cfs,
                &token,
                &with_data(
                    json!({"name": format!("evil {i}"), "patterns": [pattern], "flow": flow()}),
                ),
            ),
        )
        .await;
        assert_eq!(status, 201, "{pattern}: {raw}");
    }
    let started = Instant::now();
    let r = http
        .get(server.url(&format!(
            "/v2/accounts/{a}/lookup?number={}",
            "1".repeat(4000)
        )))
        .header("x-auth-token", &token)
        .send()
        .await
        .expect("lookup");
    assert_eq!(r.status().as_u16(), 404);
    let evil_lookup = started.elapsed();

    // A 100 MB body: the client reads the 413 while it is still sending.
    let mut head = format!(
        "PUT {cfs} HTTP/1.1\r\nHost: callflowd\r\nX-Auth-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        100 * 1024 * 1024
    )
    .into_bytes();
    head.extend(std::iter::repeat_n(b' ', 100 * 1024 * 1024));
    let (status, body, raw) = exchange(&server, &head).await;
    assert_eq!(
        status,
        413,
        "100 MB body: {}",
        raw.chars().take(400).collect::<String>()
    );
    assert_eq!(body["status"], "error", "{raw}");
    answered += 1;

    // A login flood from one address: throttled with 429 before any password check.
    let mut throttled = 0;
    for _ in 0..40 {
        let r = http
            .put(server.url("/v2/user_auth"))
            .json(&json!({"data": {"credentials": "0".repeat(32), "account_name": "admin"}}))
            .send()
            .await
            .expect("login");
        if r.status().as_u16() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            throttled += 1;
        }
    }
    assert!(throttled > 0, "a login flood was never throttled");
    answered += 1;

    stop.store(true, Ordering::Relaxed);
    let slow_sockets = slow.await.expect("slowloris");
    let (mut samples, failures) = normal.await.expect("normal client");
    assert_eq!(
        failures, 0,
        "the normal client's requests failed during the attack"
    );
    assert!(!samples.is_empty());
    // Still serving after all of it.
    let after = http
        .get(server.url(&item))
        .header("x-auth-token", &token)
        .send()
        .await
        .expect("after");
    assert_eq!(after.status().as_u16(), 200);
    let (p50, p99, max) = percentiles(&mut samples);
    println!(
        "bad input [{}]: {} hostile requests answered with the right status and envelope \
         (plus {slow_sockets} slowloris sockets and a login flood, {throttled}/40 throttled); \
         a normal client beside them: {} reads, 0 failed, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; \
         a 4,000-digit lookup against exponential-backtracking patterns: {:.1} ms",
        backend(),
        answered + 1,
        samples.len(),
        evil_lookup.as_secs_f64() * 1000.0
    );
}
