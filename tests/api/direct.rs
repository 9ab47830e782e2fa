//! The envelope layer serves the hottest reads (one callflow, a page of callflows, a lookup)
//! without axum's router (`src/api/direct.rs`). Every answer must be the one the router gives:
//! the same requests go to both ways, over the same store, and must get the same status,
//! headers and body (only the envelope's `timestamp` may move on between them).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{send_to as send, Resp, TestApp};

/// The answer with what may differ between two sends taken out.
fn comparable(r: &Resp) -> (StatusCode, Vec<(String, String)>, Value, String) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| *k != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    let mut body = r.body.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("timestamp");
    }
    // The text too (key order, escaping, JSONP, pretty-printing), with the timestamp blanked
    // (a JSONP answer is not JSON, so it is found in the text).
    static STAMP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#""timestamp":\s*"[^"]*""#).expect("pattern")
    });
    let text = STAMP
        .replace_all(&r.text, "\"timestamp\":\"<timestamp>\"")
        .into_owned();
    (r.status, headers, body, text)
}

#[tokio::test]
async fn direct_reads_answer_as_the_router_does() {
    let app = TestApp::spawn().await;
    let mut config = (*app.state.config).clone();
    assert!(config.direct_reads, "direct dispatch is on by default");
    config.direct_reads = false;
    let routed = callflowd::api::router(app.state.with_config(config));

    let a = app.admin_account.clone();
    let admin = app.admin_token.clone();
    let user = crate::helpers::save(
        &app,
        "users",
        json!({"first_name": "Ann", "last_name": "Lee"}),
    )
    .await;
    let cf = app
        .create_ok(
            &a,
            json!({"name": "Main", "numbers": ["+14155550100", "2001"], "patterns": ["^\\+1555(\\d{7})$"],
                   "flow": {"module": "user", "data": {"id": user}, "children": {}}}),
        )
        .await;
    let gone = app
        .create_ok(&a, json!({"name": "Old", "numbers": ["2002"], "flow": {"module": "response", "data": {}, "children": {}}}))
        .await;
    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/accounts/{a}/callflows/{gone}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (other, other_token) = app.top_level_account("elsewhere").await;
    let etag = app
        .fetch(&admin, &a, &cf)
        .await
        .header("etag")
        .expect("etag")
        .to_string();

    let missing = "0123456789abcdef0123456789abcdef";
    let paths = [
        format!("/v2/accounts/{a}/callflows/{cf}"),
        format!("/v2/accounts/{a}/callflows/{cf}?metadata=true"),
        format!("/v2/accounts/{a}/callflows/{gone}"),
        format!("/v2/accounts/{a}/callflows/{missing}"),
        format!("/v2/accounts/{a}/callflows/not-an-id"),
        format!("/v2/accounts/{a}/callflows/{cf}/"),
        format!("/v3/accounts/{a}/callflows/{cf}"),
        format!("/v2/accounts/{a}/callflows"),
        format!("/v2/accounts/{a}/callflows?page_size=1"),
        format!("/v2/accounts/{a}/callflows?filter_name=Main"),
        format!("/v2/accounts/{a}/callflows?with_deleted=true"),
        format!("/v2/accounts/{a}/callflows?number=2001"),
        format!("/v2/accounts/{a}/callflows?pretty_print=true"),
        format!("/v2/accounts/{a}/callflows?jsonp=cb"),
        format!("/v2/accounts/{a}/lookup?number=%2B14155550100"),
        format!("/v2/accounts/{a}/lookup?number=2001"),
        format!("/v2/accounts/{a}/lookup?number=%2B15551234567"),
        format!("/v2/accounts/{a}/lookup?number=999"),
        format!("/v2/accounts/{a}/lookup?number=999&allow_no_match=false"),
        format!("/v2/accounts/{a}/lookup"),
        format!("/v2/accounts/{a}/lookup?number="),
        format!("/v2/accounts/{missing}/callflows"),
        format!("/v2/accounts/{missing}/lookup?number=2001"),
        "/v2/accounts/nothex/callflows".to_string(),
        format!("/v2/accounts/{other}/callflows"),
        format!("/v2/accounts/{other}/callflows/{cf}"),
    ];
    // Who asks: the account's admin, another account, nobody, a forged token.
    let tokens: [Option<&str>; 4] = [Some(&admin), Some(&other_token), None, Some("garbage")];
    // How: plainly, from a browser (CORS), pretty-printed, revalidating.
    let extras: [&[(&str, &str)]; 4] = [
        &[],
        &[("origin", "https://ui.example.com")],
        &[("x-pretty-print", "true")],
        &[("if-none-match", etag.as_str())],
    ];
    let mut compared = 0;
    for path in &paths {
        for token in tokens {
            for extra in extras {
                let request = || {
                    let mut b = Request::builder()
                        .method(Method::GET)
                        .uri(path)
                        .header("x-request-id", "direct-check");
                    if let Some(t) = token {
                        b = b.header("x-auth-token", t);
                    }
                    for (k, v) in extra {
                        b = b.header(*k, *v);
                    }
                    b.body(Body::empty()).expect("request")
                };
                // Each way answers first once, so a reply kept by one is served to the other.
                for _ in 0..2 {
                    let direct = app.send(request()).await;
                    let via_router = send(&routed, request()).await;
                    assert_eq!(
                        comparable(&direct),
                        comparable(&via_router),
                        "GET {path} token {token:?} headers {extra:?}"
                    );
                    let via_router = send(&routed, request()).await;
                    let direct = app.send(request()).await;
                    assert_eq!(
                        comparable(&direct),
                        comparable(&via_router),
                        "GET {path} (again)"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, paths.len() * 4 * 4 * 2);
    // The comparison covered successes and refusals of every kind.
    let statuses: std::collections::BTreeSet<u16> = {
        let mut seen = std::collections::BTreeSet::new();
        for path in &paths {
            for token in tokens {
                let r = app
                    .send(
                        Request::builder()
                            .uri(path)
                            .header("x-auth-token", token.unwrap_or(""))
                            .body(Body::empty())
                            .expect("request"),
                    )
                    .await;
                seen.insert(r.status.as_u16());
            }
        }
        seen
    };
    for wanted in [200, 400, 401, 403, 404] {
        assert!(statuses.contains(&wanted), "no {wanted} among {statuses:?}");
    }
}
