//! Fuzz target: any JSON document as a callflow (plus an event script taken from its
//! `events` key) must simulate to an outcome within the step limit, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

use callflowd::engine::{parse_events, simulate, Call, DocumentSet, Route, Start};

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let events = doc
        .get("events")
        .and_then(Value::as_array)
        .and_then(|a| parse_events(a).ok())
        .unwrap_or_default();
    let mut docs = DocumentSet::new();
    // The document doubles as every referenced callflow, so jumps loop back into it.
    docs.insert("callflows", "c1", doc.clone());
    docs.insert("users", "u1", as_map(json!({"first_name": "F"})));
    docs.insert("devices", "d1", as_map(json!({"owner_id": "u1", "metaflows": {"patterns": {"(.*)": {"module": "transfer", "data": {}}}}})));
    if let Some(Value::Object(acct)) = doc.get("account") {
        docs.set_account(acct.clone());
    }
    let mut call = Call::new("2001", chrono::DateTime::default());
    call.events = events;
    call.max_steps = 300;
    call.caller.device_id = Some("d1".into());
    let plan = |n: &str| -> Option<Route> {
        (!n.is_empty()).then(|| Route { callflow_id: "c1".into(), capture_group: Some(n.to_string()), no_match: n == "0" })
    };
    let trace = simulate(
        Start { callflow_id: "c1", callflow: &doc, capture_group: Some("2001") },
        &call,
        &docs,
        &plan,
    );
    assert!(trace.steps.len() <= call.max_steps);
    let _ = serde_json::to_vec(&trace);
});

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
