//! Engine benchmark: `cargo bench --bench engine`. Simulates every valid Kazoo example
//! (`../shared/reference/kazoo/examples/valid`) with a 20-event script and the documents its
//! nodes name, and reports the time per simulation (p50, p99) against a baseline measured in
//! the same run: deserialising the same callflow document from its JSON text.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::TimeZone;
use serde_json::{json, Map, Value};

use callflowd::engine::{parse_events, simulate, Call, DocumentSet, Route, Start};

/// Simulations per example per round.
const ITERATIONS: usize = 2_000;

fn percentile(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Documents for every id a node names, so bridges have devices to ring, menus and boxes
/// have names, and `callflow` nodes have somewhere to go.
fn documents_for(flow: &Value, docs: &mut DocumentSet) {
    let Some(node) = flow.as_object() else { return };
    let module = node.get("module").and_then(Value::as_str).unwrap_or("");
    if let Some(id) = node
        .get("data")
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
    {
        match module {
            "user" => {
                docs.insert(
                    "users",
                    id,
                    obj(json!({"first_name": "Bench", "last_name": "User"})),
                );
                docs.insert(
                    "devices",
                    &format!("{id}-desk"),
                    obj(json!({"name": "Desk", "owner_id": id})),
                );
                docs.insert(
                    "devices",
                    &format!("{id}-cell"),
                    obj(json!({"name": "Cell", "owner_id": id})),
                );
            }
            "device" => docs.insert("devices", id, obj(json!({"name": "Bench device"}))),
            "voicemail" => docs.insert(
                "vmboxes",
                id,
                obj(json!({"name": "Bench box", "mailbox": "3001"})),
            ),
            "menu" => docs.insert(
                "menus",
                id,
                obj(json!({"name": "Bench menu", "retries": 3})),
            ),
            "group" => docs.insert(
                "groups",
                id,
                obj(json!({"name": "Bench group", "endpoints": {}})),
            ),
            "callflow" => docs.insert(
                "callflows",
                id,
                obj(json!({"flow": {"module": "play", "data": {"id": "x"}}})),
            ),
            _ => {}
        }
    }
    if let Some(children) = node.get("children").and_then(Value::as_object) {
        for child in children.values() {
            documents_for(child, docs);
        }
    }
}

/// A mixed 20-event script: digits, silence, bridge results, in-bridge metaflow digits,
/// external answers.
fn script() -> Vec<Value> {
    vec![
        json!({"dtmf": "1"}),
        json!({"no_input": true}),
        json!({"bridge": "failed", "cause": "USER_BUSY", "code": "sip:486"}),
        json!({"dtmf": "2"}),
        json!({"bridge": "answered"}),
        json!({"dtmf": "*2", "leg": "a"}),
        json!({"record": "done"}),
        json!({"dtmf": "1234"}),
        json!({"nomorobo": {"score": 0.3}}),
        json!({"pivot": "failed"}),
        json!({"fax_detect": "voice"}),
        json!({"no_input": true}),
        json!({"bridge": "timeout"}),
        json!({"dtmf": "0"}),
        json!({"channel": "found"}),
        json!({"park": "timeout"}),
        json!({"bridge": "answered"}),
        json!({"queue": "answered"}),
        json!({"webhook": "ok"}),
        json!({"hangup": true}),
    ]
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/kazoo/examples/valid");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("SKIPPED: ../shared not present");
        return;
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();

    let now = chrono::Utc
        .with_ymd_and_hms(2024, 3, 12, 15, 30, 0)
        .single()
        .expect("a valid date");
    let mut call = Call::new("2001", now);
    call.caller.id_number = Some("+14155550100".into());
    call.caller.device_id = Some("caller-device".into());
    call.events = parse_events(&script()).expect("the bench script is valid");

    let plan = |n: &str| -> Option<Route> {
        (n == "2001" || n == "0").then(|| Route {
            callflow_id: "target".into(),
            capture_group: None,
            no_match: false,
        })
    };

    let mut sim_times = Vec::with_capacity(files.len() * ITERATIONS);
    let mut base_times = Vec::with_capacity(files.len() * ITERATIONS);
    let mut per_example = Vec::new();
    let mut steps_total = 0usize;
    let mut events_used = 0usize;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable example");
        let example: Value = serde_json::from_str(&text).expect("example JSON");
        let doc = example
            .get("doc")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let doc_text = serde_json::to_string(&doc).expect("serialisable");
        let mut docs = DocumentSet::new();
        docs.set_account(obj(json!({"name": "Bench", "timezone": "America/New_York",
            "metaflows": {"binding_digit": "*", "numbers": {"2": {"module": "hold", "data": {}}}}})));
        docs.insert("devices", "caller-device", obj(json!({"name": "Caller"})));
        docs.insert(
            "callflows",
            "target",
            obj(json!({"flow": {"module": "user", "data": {"id": "target-user"}}})),
        );
        docs.insert(
            "devices",
            "target-desk",
            obj(json!({"name": "Target", "owner_id": "target-user"})),
        );
        if let Some(flow) = doc.get("flow") {
            documents_for(flow, &mut docs);
        }
        let start = Start {
            callflow_id: "bench",
            callflow: &doc,
            capture_group: Some("2001"),
        };
        // Warm up (regex cache, allocator).
        let first = simulate(start, &call, &docs, &plan);
        steps_total += first.steps.len();
        events_used += first.steps.iter().filter(|s| s.event.is_some()).count();
        let mut mine = Vec::with_capacity(ITERATIONS);
        for _ in 0..ITERATIONS {
            let t0 = Instant::now();
            let trace = simulate(black_box(start), black_box(&call), &docs, &plan);
            let dt = t0.elapsed();
            black_box(trace);
            mine.push(dt);
            let t1 = Instant::now();
            let parsed: Map<String, Value> =
                serde_json::from_str(black_box(&doc_text)).expect("valid JSON");
            let db = t1.elapsed();
            black_box(parsed);
            base_times.push(db);
        }
        sim_times.extend_from_slice(&mine);
        let p50 = percentile(&mut mine, 0.5);
        per_example.push((
            p50,
            path.file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default(),
        ));
    }
    // A flow that takes all 20 events: 18 invalid menu entries, a valid one, a bridge.
    let menu_cf = obj(
        json!({"flow": {"module": "menu", "data": {"id": "m1"}, "children": {
        "9": {"module": "user", "data": {"id": "u1"}},
        "_": {"module": "voicemail", "data": {"id": "vm1"}}}}}),
    );
    let mut menu_docs = DocumentSet::new();
    menu_docs.insert("menus", "m1", obj(json!({"name": "Main", "retries": 25})));
    menu_docs.insert(
        "users",
        "u1",
        obj(json!({"first_name": "Ann", "last_name": "Lee"})),
    );
    menu_docs.insert(
        "devices",
        "d1",
        obj(json!({"name": "Desk", "owner_id": "u1"})),
    );
    menu_docs.insert(
        "vmboxes",
        "vm1",
        obj(json!({"name": "Box", "mailbox": "3001"})),
    );
    let mut menu_script: Vec<Value> = (0..18).map(|_| json!({"dtmf": "1"})).collect();
    menu_script.push(json!({"dtmf": "9"}));
    menu_script.push(json!({"bridge": "answered"}));
    let mut menu_call = call.clone();
    menu_call.events = parse_events(&menu_script).expect("valid menu script");
    let menu_start = Start {
        callflow_id: "menu",
        callflow: &menu_cf,
        capture_group: None,
    };
    let check = simulate(menu_start, &menu_call, &menu_docs, &plan);
    assert_eq!(
        check.steps.iter().filter(|s| s.event.is_some()).count(),
        20,
        "all 20 events taken"
    );
    let mut menu_times = Vec::with_capacity(ITERATIONS * 5);
    for _ in 0..ITERATIONS * 5 {
        let t0 = Instant::now();
        let trace = simulate(
            black_box(menu_start),
            black_box(&menu_call),
            &menu_docs,
            &plan,
        );
        menu_times.push(t0.elapsed());
        black_box(trace);
    }
    let (m50, m99) = (
        percentile(&mut menu_times, 0.5),
        percentile(&mut menu_times, 0.99),
    );

    let n = files.len();
    let (s50, s99) = (
        percentile(&mut sim_times, 0.5),
        percentile(&mut sim_times, 0.99),
    );
    let (b50, b99) = (
        percentile(&mut base_times, 0.5),
        percentile(&mut base_times, 0.99),
    );
    per_example.sort();
    let slowest = per_example.last().cloned().unwrap_or_default();

    println!("engine bench: {n} examples x {ITERATIONS} simulations, 20-event script each");
    println!(
        "  steps per simulation (avg): {:.1}; events consumed per simulation (avg): {:.1}",
        steps_total as f64 / n as f64,
        events_used as f64 / n as f64
    );
    println!(
        "  simulate:                  p50 {:>8.2} us   p99 {:>8.2} us",
        us(s50),
        us(s99)
    );
    println!(
        "  baseline (parse the doc):  p50 {:>8.2} us   p99 {:>8.2} us",
        us(b50),
        us(b99)
    );
    println!(
        "  ratio simulate/baseline:   p50 {:.2}x   p99 {:.2}x",
        s50.as_secs_f64() / b50.as_secs_f64().max(1e-12),
        s99.as_secs_f64() / b99.as_secs_f64().max(1e-12)
    );
    println!(
        "  slowest example (p50):     {:.2} us  {}",
        us(slowest.0),
        slowest.1
    );
    println!(
        "  menu taking all 20 events (20 steps): p50 {:>8.2} us   p99 {:>8.2} us",
        us(m50),
        us(m99)
    );
    println!(
        "  target: p50 < 50 us -> {}",
        if us(s50) < 50.0 && us(m50) < 50.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("machine: {}", shell("uname", &["-a"]));
    println!("cores: {}", shell("nproc", &[]));
    println!(
        "commit: {}",
        shell("git", &["rev-parse", "--short", "HEAD"])
    );
    println!("command: cargo bench --bench engine");
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
