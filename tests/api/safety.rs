//! Requests that must never change anything: writes tunnelled through GET or HEAD
//! (issue: reliability defect 9), and NUL characters on their way to the store (defect 7).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// Everything a write could touch, read back through the API.
async fn snapshot(app: &TestApp, id: &str) -> Value {
    let list = app
        .list(&app.admin_token, &app.admin_account, "?paginate=false")
        .await;
    let one = app.fetch(&app.admin_token, &app.admin_account, id).await;
    let accounts = app.state.store.account_count().await.expect("count");
    json!({"list": list.body["data"], "one": one.body["data"], "rev": one.body["revision"], "accounts": accounts})
}

/// Kazoo renders on a real GET (`api_resource:to_json`) and writes only for real PUT, POST,
/// PATCH and DELETE (`api_util:execute_request`): a `verb` carried by a GET or HEAD, in the
/// query string or in a body, changes nothing.
#[tokio::test]
async fn writes_tunnelled_through_get_or_head_change_nothing() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Keep", "numbers": ["1000"], "flow": {"module": "user", "data": {}}}),
        )
        .await;
    let before = snapshot(&app, &id).await;
    let collection = TestApp::callflows(&app.admin_account);
    let one = format!("{collection}/{id}");
    let account = format!("/v2/accounts/{}", app.admin_account);
    let body = json!({"data": {"name": "Changed", "numbers": ["2000"], "flow": {"module": "user", "data": {}}}});
    // (path, tunnelled verb) for every endpoint that writes.
    let targets = [
        (collection.as_str(), "PUT"),
        (collection.as_str(), "POST"),
        (one.as_str(), "POST"),
        (one.as_str(), "PATCH"),
        (one.as_str(), "DELETE"),
        (account.as_str(), "PUT"),
    ];
    for method in [Method::GET, Method::HEAD] {
        for (path, verb) in targets {
            for in_body in [false, true] {
                let sep = if path.contains('?') { '&' } else { '?' };
                let uri = if in_body {
                    format!("{path}{sep}should_soft_delete=false")
                } else {
                    format!("{path}{sep}verb={verb}&should_soft_delete=false")
                };
                let mut envelope = body.clone();
                if in_body {
                    envelope["verb"] = json!(verb);
                }
                let req = Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .header("x-auth-token", &app.admin_token)
                    .header("content-type", "application/json")
                    .body(Body::from(envelope.to_string()))
                    .expect("request");
                let r = app.send(req).await;
                assert!(
                    !matches!(r.status, StatusCode::CREATED),
                    "{method} {uri} (verb {verb}, in body: {in_body}) created something: {}",
                    r.text
                );
                assert_eq!(
                    snapshot(&app, &id).await,
                    before,
                    "{method} {uri} (verb {verb}, in body: {in_body}) changed the store"
                );
            }
        }
    }
    // A real POST still tunnels (Kazoo's verb tunnelling for clients that cannot send DELETE).
    let r = app
        .call(
            Method::POST,
            &format!("{one}?verb=DELETE"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["_read_only"]["deleted"], true);
}

fn is_postgres(app: &TestApp) -> bool {
    app.database_url.starts_with("postgres")
}

/// A valid callflow with `bad` (a string holding U+0000) at one place.
fn callflow_with(place: &str, bad: &str) -> Value {
    let mut doc = json!({"name": "n", "numbers": ["2000"], "patterns": ["^3(\\d+)$"], "flow": {"module": "user", "data": {"id": "u"}}});
    match place {
        "name" => doc["name"] = json!(bad),
        "number" => doc["numbers"] = json!([bad]),
        "pattern" => doc["patterns"] = json!([bad]),
        "module" => doc["flow"]["module"] = json!(bad),
        "data" => doc["flow"]["data"]["id"] = json!(bad),
        "key" => {
            doc.as_object_mut()
                .unwrap()
                .insert(bad.to_string(), json!(1));
        }
        _ => unreachable!(),
    }
    doc
}

/// NUL (U+0000) cannot be stored by PostgreSQL and means nothing in a callflow: every string
/// field, key, path and query value holding it answers 400 naming where, on every store, and
/// nothing is written.
#[tokio::test]
async fn nul_characters_are_refused_everywhere_with_a_400() {
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Keep", "numbers": ["1000"]}),
        )
        .await;
    let before = snapshot(&app, &id).await;
    let bad = "12\u{0}34";
    let path = TestApp::callflows(&app.admin_account);
    for place in ["name", "number", "pattern", "module", "data", "key"] {
        let body = json!({"data": callflow_with(place, bad)});
        for (method, target) in [
            (Method::PUT, path.clone()),
            (Method::POST, format!("{path}/{id}")),
            (Method::PATCH, format!("{path}/{id}")),
        ] {
            let r = app
                .call(
                    method.clone(),
                    &target,
                    Some(&app.admin_token),
                    Some(body.clone()),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{method} {place}: {}",
                r.text
            );
            let errors = r.data().as_object().expect("error map");
            let (field, rule) = errors.iter().next().expect("one error");
            assert!(
                rule.get("invalid_characters").is_some(),
                "{method} {place}: {field} {rule}"
            );
        }
    }
    // Query values and the path.
    for query in [
        "?number=1%002",
        "?start_key=a%00b",
        "?filter_name=x%00",
        "?has_key=na%00me",
        "?paginate=true&page_size=1%00",
    ] {
        let r = app.list(&app.admin_token, &app.admin_account, query).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
    }
    let r = app
        .call(
            Method::GET,
            &format!(
                "/v2/accounts/{}/search?t=callflow&q=number&v=1%002",
                app.admin_account
            ),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{}/lookup?number=1%002", app.admin_account),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .call(
            Method::GET,
            &format!("{path}/abc%00def"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // A start key that decodes to a NUL is treated as text, never sent to the store as is.
    use base64::Engine;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([131, 109, 0, 0, 0, 1, 0]);
    let r = app
        .list(
            &app.admin_token,
            &app.admin_account,
            &format!("?start_key={key}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A sub-account named with a NUL, and a login.
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}", app.admin_account),
            Some(&app.admin_token),
            Some(json!({"data": {"name": "sub\u{0}acct", "realm": "sub.example.com"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .call(
            Method::PUT,
            "/v2/user_auth",
            None,
            Some(json!({"data": {"credentials": "abc", "account_name": "ad\u{0}min"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(
        snapshot(&app, &id).await,
        before,
        "a refused request changed the store"
    );
}

/// A small deterministic fuzzer: 2,000 requests with random methods, paths, query values and
/// bodies (wrong types at every level, odd characters, NULs, huge and tiny numbers). No answer
/// may be a 5xx, on either store.
#[tokio::test]
async fn two_thousand_fuzzed_requests_get_no_server_error() {
    use rand::{Rng, SeedableRng};
    let app = TestApp::spawn().await;
    let id = app
        .create_ok(
            &app.admin_account,
            json!({"name": "Fuzz", "numbers": ["1000"]}),
        )
        .await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0000_ca11_f10d);
    let strings = [
        "",
        "\u{0}",
        "a\u{0}b",
        "+14155550100",
        "no_match",
        "^(\\d+)$",
        "*55(\\d+)",
        "((((",
        "%00",
        "null",
        "true",
        "\u{202e}",
        "١٢٣",
        "🙂",
        "' OR 1=1 --",
        "../../etc/passwd",
        "\\",
    ];
    let random_value = |rng: &mut rand::rngs::StdRng, depth: u32| -> Value {
        fn go(rng: &mut rand::rngs::StdRng, depth: u32, strings: &[&str]) -> Value {
            match rng.gen_range(0..if depth > 3 { 5 } else { 8 }) {
                0 => Value::Null,
                1 => json!(rng.gen::<bool>()),
                2 => json!(rng.gen::<i64>()),
                3 => json!(rng.gen::<f64>() * 1e300),
                4 => json!(strings[rng.gen_range(0..strings.len())]),
                5 | 6 => {
                    let keys = [
                        "name",
                        "numbers",
                        "patterns",
                        "flow",
                        "module",
                        "data",
                        "children",
                        "_",
                        "id",
                        "metaflows",
                        "\u{0}",
                    ];
                    let mut m = serde_json::Map::new();
                    for _ in 0..rng.gen_range(0..5) {
                        m.insert(
                            keys[rng.gen_range(0..keys.len())].to_string(),
                            go(rng, depth + 1, strings),
                        );
                    }
                    Value::Object(m)
                }
                _ => Value::Array(
                    (0..rng.gen_range(0..4))
                        .map(|_| go(rng, depth + 1, strings))
                        .collect(),
                ),
            }
        }
        go(rng, depth, &strings)
    };
    let account = app.admin_account.clone();
    let paths = [
        format!("/v2/accounts/{account}/callflows"),
        format!("/v2/accounts/{account}/callflows/{id}"),
        format!("/v2/accounts/{account}/callflows/nope"),
        format!("/v2/accounts/{account}"),
        format!("/v2/accounts/{account}/search"),
        format!("/v2/accounts/{account}/lookup"),
        "/v2/schemas/callflows/validation".to_string(),
        "/v2/user_auth".to_string(),
        "/v2/api_auth".to_string(),
    ];
    let params = [
        "number",
        "start_key",
        "page_size",
        "filter_name",
        "has_key",
        "t",
        "q",
        "v",
        "paginate",
        "descending",
        "verb",
        "created_from",
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..2000 {
        let method = [
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
        ][rng.gen_range(0..5)]
        .clone();
        let mut uri = paths[rng.gen_range(0..paths.len())].clone();
        if rng.gen_bool(0.6) {
            let p = params[rng.gen_range(0..params.len())];
            let v = strings[rng.gen_range(0..strings.len())];
            let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            uri = format!("{uri}?{p}={v}");
        }
        let body = match rng.gen_range(0..4) {
            0 => None,
            1 => Some(json!({"data": random_value(&mut rng, 0)})),
            2 => Some(random_value(&mut rng, 0)),
            _ => Some(
                json!({"data": {"numbers": [random_value(&mut rng, 2)], "flow": random_value(&mut rng, 1)}}),
            ),
        };
        let r = app
            .call(method.clone(), &uri, Some(&app.admin_token), body.clone())
            .await;
        assert!(
            !r.status.is_server_error(),
            "request {i}: {method} {uri} {body:?} -> {} {}",
            r.status,
            r.text
        );
        *statuses.entry(r.status.as_u16()).or_insert(0) += 1;
    }
    println!(
        "fuzz [{}]: 2000 requests, no 5xx; statuses {statuses:?}",
        if is_postgres(&app) {
            "postgresql"
        } else {
            "sqlite"
        }
    );
}

/// `/healthz` follows what requests need: 503 while no write transaction can be opened or
/// the schema is gone, 200 again when the writer is free.
#[tokio::test]
async fn healthz_answers_503_while_the_writer_is_unusable_or_the_schema_is_missing() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    async fn health(app: &TestApp) -> crate::helpers::Resp {
        app.call(Method::GET, "/healthz", None, None).await
    }
    assert_eq!(health(&app).await.status, StatusCode::OK);
    // Another process holds the write lock (SQLite) or the change table (PostgreSQL).
    let blocker: Box<dyn std::any::Any + Send> = if is_postgres(&app) {
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("LOCK TABLE changes IN ACCESS EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .unwrap();
        Box::new(conn)
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut conn)
            .await
            .unwrap();
        Box::new(conn)
    };
    // A probe's answer is reused for a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = health(&app).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.body["message"], "datastore_unreachable");
    drop(blocker);
    let mut healed = false;
    for _ in 0..50 {
        if health(&app).await.status == StatusCode::OK {
            healed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(healed, "healthz did not recover once the writer was free");
    // The schema disappears (a database re-created empty, a bad restore).
    if is_postgres(&app) {
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::query("DROP TABLE changes")
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::query("DROP TABLE changes")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = health(&app).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
}

/// A full disk (SQLite's "database or disk is full", injected at the store by capping the
/// database's pages) answers 503 while it lasts and heals by itself, without a restart.
#[tokio::test]
async fn a_full_disk_answers_503_and_heals_without_restart() {
    if std::env::var("CALLFLOWD_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        println!("SKIPPED: the injected full disk is SQLite's (the PostgreSQL run covers connection loss in tests/attacks)");
        return;
    }
    let sqlite: std::sync::Arc<std::sync::Mutex<Option<callflowd::store::SqliteStore>>> =
        Default::default();
    let keep = sqlite.clone();
    let app = TestApp::spawn_with_store(
        |_| {},
        |url| async move {
            let store = callflowd::store::SqliteStore::connect(&url).await.unwrap();
            *keep.lock().unwrap() = Some(store.clone());
            std::sync::Arc::new(store) as callflowd::store::DynStore
        },
    )
    .await;
    let store = sqlite.lock().unwrap().clone().unwrap();
    let mut conn = {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .unwrap()
    };
    let pages: (i64,) = sqlx::query_as("PRAGMA page_count")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    drop(conn);
    store
        .limit_pages_for_test(Some(pages.0 as u64 + 2))
        .await
        .unwrap();
    let big = "x".repeat(3000);
    let mut full_at = None;
    for i in 0..200 {
        let r = app
            .create(
                &app.admin_token,
                &app.admin_account,
                json!({"name": big, "numbers": [format!("+1555{i:07}")]}),
            )
            .await;
        match r.status {
            StatusCode::CREATED => continue,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.body["message"], "datastore_unreachable", "{}", r.text);
                full_at = Some(i);
                break;
            }
            other => panic!("create {i} on a full disk: {other} {}", r.text),
        }
    }
    let full_at = full_at.expect("the page cap never filled");
    for i in 0..5 {
        let r = app
            .create(
                &app.admin_token,
                &app.admin_account,
                json!({"name": big, "numbers": [format!("+1666{i:07}")]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    }
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    store.limit_pages_for_test(None).await.unwrap();
    let freed = std::time::Instant::now();
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"numbers": ["+17770000000"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    println!(
        "full disk [sqlite, injected page cap]: 503 from write {full_at} on; 201 {:.0} ms after space returned",
        freed.elapsed().as_secs_f64() * 1000.0
    );
}

/// The per-callflow caps on numbers and patterns, and the per-account cap on patterns,
/// answer Kazoo-shaped 400s naming the field and the rule.
#[tokio::test]
async fn per_callflow_and_per_account_limits_answer_400() {
    let app = TestApp::spawn_with(|a| {
        a.max_numbers_per_callflow = 5;
        a.max_patterns_per_callflow = 3;
        a.max_patterns_per_account = 4;
    })
    .await;
    let numbers: Vec<String> = (0..6).map(|i| format!("10{i}")).collect();
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"numbers": numbers}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.data()["numbers"]["maxItems"]["target"], 5, "{}", r.text);
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"patterns": ["^1$", "^2$", "^3$", "^4$"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.data()["patterns"]["maxItems"]["target"], 3, "{}", r.text);
    app.create_ok(
        &app.admin_account,
        json!({"patterns": ["^1$", "^2$", "^3$"]}),
    )
    .await;
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"patterns": ["^5$", "^6$"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.data()["patterns"]["maxItems"]["target"], 4, "{}", r.text);
    app.create_ok(&app.admin_account, json!({"patterns": ["^5$"]}))
        .await;
    // A pattern too large for routing once compiled is refused with the reason.
    let r = app
        .create(
            &app.admin_token,
            &app.admin_account,
            json!({"numbers": ["9"], "patterns": ["^(\\d{0,9353})91234$"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("too large"), "{}", r.text);
}

/// PostgreSQL backends terminated under the server (a failover, an administrator's
/// `pg_terminate_backend`): requests caught by it answer 503, never 500, and the pool heals by
/// itself.
#[tokio::test]
async fn terminated_postgresql_backends_answer_503_then_heal() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    if !is_postgres(&app) {
        println!("SKIPPED: terminated backends are a PostgreSQL condition (this run is SQLite)");
        return;
    }
    let mut admin = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..5 {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .unwrap();
        for i in 0..4 {
            let r = app
                .create(
                    &app.admin_token,
                    &app.admin_account,
                    json!({"numbers": [format!("+1888{round}{i:06}")]}),
                )
                .await;
            assert!(
                matches!(
                    r.status,
                    StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE
                ),
                "round {round}: {} {}",
                r.status,
                r.text
            );
            *statuses.entry(r.status.as_u16()).or_insert(0) += 1;
        }
    }
    // Healed: every write succeeds again.
    let mut ok = 0;
    for i in 0..10 {
        let r = app
            .create(
                &app.admin_token,
                &app.admin_account,
                json!({"numbers": [format!("+1999{i:07}")]}),
            )
            .await;
        if r.status == StatusCode::CREATED {
            ok += 1;
        }
    }
    println!("terminated backends [postgresql]: answers while terminating {statuses:?}; afterwards {ok}/10 writes succeed");
    assert_eq!(ok, 10);
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
}

/// A handler that panics answers 500 in Kazoo's error shape, and the server goes on.
#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_service_goes_on() {
    use tower::ServiceExt;
    let app = TestApp::spawn().await;
    let routes = axum::Router::new().route(
        "/v2/boom",
        axum::routing::get(|| async {
            if std::hint::black_box(true) {
                panic!("a handler bug");
            }
            "never"
        }),
    );
    let service = callflowd::api::ApiService::with_routes(app.state.clone(), routes);
    let request = || {
        axum::http::Request::builder()
            .uri("/v2/boom")
            .body(axum::body::Body::empty())
            .expect("request")
    };
    for _ in 0..2 {
        let response = service
            .clone()
            .oneshot(request())
            .await
            .expect("infallible");
        assert_eq!(
            response.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(body["status"], "error", "{body}");
        assert_eq!(body["error"], "500", "{body}");
    }
    // The real routes still answer.
    let r = app
        .call(axum::http::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(r.status, axum::http::StatusCode::OK);
}
