//! The switch's endpoints (`/v2/sip/route`, `/v2/sip/credentials`) through the real router and
//! store: the secret, HA1s, and routing decisions (devices, users, failover on a busy answer
//! replayed from the failures, media nodes, carriers, challenges, unknown numbers). The same
//! decisions with a real Kamailio and sipp are in tests/sip/run.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::helpers::{save, Resp, TestApp};

const SECRET: &str = "the-switch-secret";
const MEDIA: &str = "sip:media@10.0.0.9:5080";

async fn app() -> TestApp {
    TestApp::spawn_with(|args| {
        args.sip_secret = Some(SECRET.into());
        args.sip_media_uri = Some(MEDIA.into());
    })
    .await
}

async fn switch(app: &TestApp, path_and_query: &str, secret: Option<&str>) -> Resp {
    let mut req = Request::builder().method(Method::GET).uri(path_and_query);
    if let Some(s) = secret {
        req = req.header("authorization", format!("Bearer {s}"));
    }
    app.send(req.body(Body::empty()).expect("request")).await
}

async fn route(app: &TestApp, query: &str) -> Resp {
    switch(
        app,
        &format!("/v2/sip/route?rdomain=localhost&{query}"),
        Some(SECRET),
    )
    .await
}

/// A device with SIP credentials `username` / `pw-{username}`; answers its id.
async fn device(app: &TestApp, name: &str, username: &str) -> String {
    save(
        app,
        "devices",
        json!({"name": name, "sip": {"username": username, "password": format!("pw-{username}")}}),
    )
    .await
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn the_switch_endpoints_need_the_configured_secret() {
    let off = TestApp::spawn().await;
    let r = switch(
        &off,
        "/v2/sip/route?ruser=1&rdomain=localhost",
        Some(SECRET),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.body["message"], "sip_disabled");

    let app = app().await;
    for secret in [None, Some("wrong"), Some("the-switch-secre")] {
        let r = switch(
            &app,
            "/v2/sip/credentials?username=a&realm=localhost",
            secret,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{secret:?}: {}", r.text);
    }
    // A user's token is not the switch's secret.
    let r = app
        .call(
            Method::GET,
            "/v2/sip/route?ruser=1&rdomain=localhost",
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = route(&app, "ruser=").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = route(&app, "ruser=1&failures=486,banana").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("banana"));
}

#[tokio::test]
async fn credentials_are_the_ha1_of_an_enabled_device_never_its_password() {
    let app = app().await;
    let id = save(
        &app,
        "devices",
        json!({"name": "Desk", "sip": {"username": "Desk100", "password": "s3cret-pw"}}),
    )
    .await;
    save(
        &app,
        "devices",
        json!({"name": "Off", "enabled": false, "sip": {"username": "off1", "password": "s3cret-pw"}}),
    )
    .await;
    let r = switch(
        &app,
        "/v2/sip/credentials?username=desk100&realm=LOCALHOST",
        Some(SECRET),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The username and realm exactly as the switch sends them (the phone hashed those).
    assert_eq!(r.body["ha1"], md5_hex("desk100:LOCALHOST:s3cret-pw"));
    assert_eq!(r.body["device_id"], id.as_str());
    assert!(!r.text.contains("s3cret-pw"));
    for q in [
        "username=off1&realm=localhost",
        "username=nobody&realm=localhost",
        "username=desk100&realm=elsewhere.example",
    ] {
        let r = switch(&app, &format!("/v2/sip/credentials?{q}"), Some(SECRET)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{q}: {}", r.text);
    }
}

#[tokio::test]
async fn a_busy_user_fails_over_to_voicemail_at_the_media_server() {
    let app = app().await;
    let bob = save(
        &app,
        "users",
        json!({"first_name": "Bob", "last_name": "B"}),
    )
    .await;
    let desk = save(
        &app,
        "devices",
        json!({"name": "Bob desk", "owner_id": bob, "sip": {"username": "bob-desk", "password": "pw-bob-1"}}),
    )
    .await;
    save(
        &app,
        "devices",
        json!({"name": "Bob phone", "owner_id": bob, "sip": {"username": "bob-phone", "password": "pw-bob-2", "invite_format": "route", "route": "sip:bob@192.0.2.7:5062"}}),
    )
    .await;
    device(&app, "Caller", "caller").await;
    let vm = save(&app, "vmboxes", json!({"name": "Bob", "mailbox": "3000"})).await;
    let cf = save(
        &app,
        "callflows",
        json!({"numbers": ["3000"], "flow": {"module": "user", "data": {"id": bob, "timeout": 15},
            "children": {"USER_BUSY": {"module": "voicemail", "data": {"id": vm}, "children": {}}}}}),
    )
    .await;

    // The caller is not authenticated and not a carrier: challenge.
    let r = route(&app, "ruser=3000&src_ip=198.51.100.1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["action"], "challenge");

    // Both of Bob's devices at once: one to look up, one static.
    let r = route(&app, "ruser=3000&auth_user=caller").await;
    assert_eq!(r.body["action"], "route", "{}", r.text);
    assert_eq!(r.body["routing"], "parallel");
    assert_eq!(r.body["callflow_id"], cf.as_str());
    assert_eq!(r.body["node"], format!("{cf}:flow"));
    assert_eq!(r.body["on_net"], true);
    // Devices come in the store's order (by id): find each by its URI.
    let routes = r.body["routes"].as_array().expect("routes");
    let by_uri = |uri: &str| {
        routes
            .iter()
            .find(|r| r["uri"] == uri)
            .unwrap_or_else(|| panic!("no route {uri} in {routes:?}"))
    };
    assert_eq!(routes.len(), 2);
    let desk_route = by_uri("sip:bob-desk@localhost;cfd_lookup=1");
    let phone_route = by_uri("sip:bob@192.0.2.7:5062");
    assert!(desk_route.get("dst_uri").is_none());
    assert_eq!(phone_route["dst_uri"], "sip:bob@192.0.2.7:5062");
    assert_eq!(desk_route["fr_inv_timer"], 15000);
    let extra = desk_route["headers"]["extra"].as_str().expect("headers");
    assert!(
        extra.contains(&format!("X-Callflowd-Device: {desk}\r\n")),
        "{extra}"
    );
    assert!(extra.contains("X-Callflowd-Module: user\r\n"));

    // Bob is busy (486 = USER_BUSY): the USER_BUSY child, a voicemail, at the media server.
    let r = route(
        &app,
        &format!("ruser=3000&auth_user=caller&failures=486&node={cf}:flow"),
    )
    .await;
    assert_eq!(r.body["action"], "route", "{}", r.text);
    assert_eq!(r.body["module"], "voicemail");
    assert_eq!(r.body["node"], format!("{cf}:flow.children.USER_BUSY"));
    assert_eq!(r.body["routes"][0]["uri"], MEDIA);
    let extra = r.body["routes"][0]["headers"]["extra"]
        .as_str()
        .unwrap_or("");
    assert!(
        extra.contains("X-Callflowd-Node: flow.children.USER_BUSY\r\n"),
        "{extra}"
    );

    // No answer has no child: `_` is empty, so Kazoo hangs up; the switch answers 480.
    let r = route(&app, "ruser=3000&auth_user=caller&failures=timeout").await;
    assert_eq!(r.body["action"], "reply", "{}", r.text);
    assert_eq!(r.body["code"], 480);
}

#[tokio::test]
async fn carriers_get_the_number_as_their_gateway_wants_it_and_are_known_by_address() {
    let app = app().await;
    device(&app, "Caller", "caller").await;
    save(
        &app,
        "resources",
        json!({"name": "Carrier", "weight_cost": 10, "rules": ["^\\+1(\\d{10})$"],
               "gateways": [{"server": "203.0.113.5", "port": 5070, "invite_format": "1npan", "prefix": "#"}]}),
    )
    .await;
    let out = save(
        &app,
        "callflows",
        json!({"patterns": ["^\\+?1?([2-9]\\d{9})$"], "flow": {"module": "resources", "data": {}, "children": {}}}),
    )
    .await;
    let desk = device(&app, "Desk", "desk").await;
    save(
        &app,
        "callflows",
        json!({"numbers": ["+14155550100"], "flow": {"module": "device", "data": {"id": desk}, "children": {}}}),
    )
    .await;

    let r = route(&app, "ruser=4155550123&auth_user=caller").await;
    assert_eq!(r.body["callflow_id"], out.as_str(), "{}", r.text);
    assert_eq!(r.body["routing"], "serial");
    assert_eq!(
        r.body["routes"][0]["uri"],
        "sip:#14155550123@203.0.113.5:5070"
    );

    // The carrier's own call in: off-net, the number normalised to E.164 before the lookup.
    let r = route(&app, "ruser=4155550100&src_ip=203.0.113.5").await;
    assert_eq!(r.body["action"], "route", "{}", r.text);
    assert_eq!(r.body["on_net"], false);
    assert_eq!(
        r.body["routes"][0]["uri"],
        "sip:desk@localhost;cfd_lookup=1"
    );

    // Unknown numbers and realms: 404 with the reason in a header.
    let r = route(&app, "ruser=999&auth_user=caller").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.body["code"], 404);
    assert!(r
        .header("x-callflowd-explain")
        .is_some_and(|h| h.contains("999")));
    let r = switch(
        &app,
        "/v2/sip/route?ruser=1&rdomain=nowhere.example",
        Some(SECRET),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_serial_ring_group_and_a_response_node() {
    let app = app().await;
    device(&app, "Caller", "caller").await;
    let a = device(&app, "A", "a1").await;
    let b = device(&app, "B", "b1").await;
    save(
        &app,
        "callflows",
        json!({"numbers": ["4000"], "flow": {"module": "ring_group", "data": {"strategy": "single", "timeout": 30,
            "endpoints": [{"id": a, "endpoint_type": "device", "timeout": 5}, {"id": b, "endpoint_type": "device", "timeout": 12}]},
            "children": {"_": {"module": "response", "data": {"code": 503, "message": "Closed"}, "children": {}}}}}),
    )
    .await;
    let r = route(&app, "ruser=4000&auth_user=caller").await;
    assert_eq!(r.body["routing"], "serial", "{}", r.text);
    let timers: Vec<i64> = r.body["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r["fr_inv_timer"].as_i64())
        .collect();
    assert_eq!(timers, [5000, 12000]);
    let r = route(&app, "ruser=4000&auth_user=caller&failures=timeout").await;
    assert_eq!(r.body["action"], "reply", "{}", r.text);
    assert_eq!(r.body["code"], 503);
}

/// A bridge with nothing to ring fails at once, as in Kazoo: the failure child takes the call
/// without a round trip to the switch, or the call is answered with the cause's code.
#[tokio::test]
async fn a_bridge_with_nothing_to_ring_fails_over_at_once() {
    let app = app().await;
    device(&app, "Caller", "caller").await;
    let desk = device(&app, "Desk", "desk").await;
    // No resources at all: no carrier takes +44 numbers.
    save(
        &app,
        "callflows",
        json!({"patterns": ["^\\+44(\\d+)$"], "flow": {"module": "resources", "data": {},
            "children": {"NO_ROUTE_DESTINATION": {"module": "device", "data": {"id": desk}, "children": {}}}}}),
    )
    .await;
    save(
        &app,
        "callflows",
        json!({"patterns": ["^\\+33(\\d+)$"], "flow": {"module": "resources", "data": {}, "children": {}}}),
    )
    .await;
    let r = route(&app, "ruser=%2B442079460000&auth_user=caller").await;
    assert_eq!(r.body["action"], "route", "{}", r.text);
    assert_eq!(r.body["module"], "device");
    assert_eq!(
        r.body["routes"][0]["uri"],
        "sip:desk@localhost;cfd_lookup=1"
    );
    let r = route(&app, "ruser=%2B33140000000&auth_user=caller").await;
    assert_eq!(r.body["action"], "reply", "{}", r.text);
    assert_eq!(r.body["code"], 404);
}
