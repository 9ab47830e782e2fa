//! Fuzz target: the inbound half of the envelope. Arbitrary method, content type, query string
//! and body go through the same parsing the envelope layer runs (body by content type, depth
//! scan, JSON, `data` check, key normalisation, NUL refusal, token discovery, verb tunnelling).
//! It must never panic; an error is always a client error whose body serialises; a success
//! has `data` as an object or array and only normalised envelope keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

use axum::http::{Method, Request};

const METHODS: &[&str] = &["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    Some("multipart/form-data"),
];

// Input: method byte, content-type byte, query string up to the first NUL, then the body.
fuzz_target!(|data: &[u8]| {
    let [m, t, rest @ ..] = data else {
        return;
    };
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let method = Method::from_bytes(METHODS[*m as usize % METHODS.len()].as_bytes())
        .expect("known method");
    let uri = format!("/v2/accounts/0123/callflows?{query}");
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = TYPES[*t as usize % TYPES.len()] {
        builder = builder.header("content-type", ct);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    match callflowd::api::request::fuzz_parse(&parts, body, 16) {
        Ok((ctx, _method)) => {
            assert!(ctx.data.is_object() || ctx.data.is_array(), "{:?}", ctx.data);
            for key in ctx.envelope.keys() {
                assert!(
                    !key.contains('-') && !key.bytes().any(|b| b.is_ascii_uppercase()),
                    "envelope key not normalised: {key:?}"
                );
            }
        }
        Err(e) => {
            assert!(e.status().is_client_error(), "{} for {body:?}", e.status());
            let _ = serde_json::to_string(&e.data()).expect("error data serialises");
        }
    }
});
