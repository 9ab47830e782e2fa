//! The callflow engine against real documents and random ones: every valid Kazoo example
//! reaches an outcome, and random flows with random event scripts always end (within the
//! step limit) without panicking.

use std::collections::HashMap;
use std::path::Path;

use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use callflowd::engine::modules::MODULES;
use callflowd::engine::{
    parse_events, simulate, Call, DocumentSet, Event, NoDialplan, Route, Start, Trace,
};

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2024, 3, 12, 15, 30, 0)
        .single()
        .expect("a valid date")
}

fn run(
    callflow: &Map<String, Value>,
    call: &Call,
    docs: &DocumentSet,
    plan: &dyn callflowd::engine::Dialplan,
) -> Trace {
    simulate(
        Start {
            callflow_id: "example",
            callflow,
            capture_group: Some("2001"),
        },
        call,
        docs,
        plan,
    )
}

#[test]
fn every_valid_example_reaches_an_outcome() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/kazoo/examples/valid");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        if std::env::var("CALLFLOWD_REQUIRE_REFERENCE").as_deref() == Ok("1") {
            panic!(
                "CALLFLOWD_REQUIRE_REFERENCE=1 but {} is missing",
                dir.display()
            );
        }
        println!("SKIPPED: ../shared not present");
        return;
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let docs = DocumentSet::new();
    let mut call = Call::new("2001", now());
    call.caller.id_number = Some("+14155550100".into());
    let mut ran = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable example");
        let example: Value = serde_json::from_str(&text).expect("example JSON");
        let Some(doc) = example.get("doc").and_then(Value::as_object) else {
            panic!("{}: no doc", path.display());
        };
        let trace = run(doc, &call, &docs, &NoDialplan);
        assert!(
            trace.outcome.step.is_some() || !trace.steps.is_empty() || doc.get("flow").is_none(),
            "{}: no step taken",
            path.display()
        );
        assert!(trace.steps.len() <= call.max_steps, "{}", path.display());
        serde_json::to_string(&trace).expect("the trace serialises");
        ran += 1;
    }
    assert!(ran > 0, "no examples found in {}", dir.display());
    println!("engine examples: ran {ran}, all reached an outcome");
}

// ---- random flows ----

const CHILD_KEYS: &[&str] = &[
    "_",
    "_",
    "_",
    "1",
    "2",
    "0",
    "*",
    "#",
    "match",
    "nomatch",
    "timeout",
    "max_retries",
    "USER_BUSY",
    "NO_ANSWER",
    "sip:486",
    "ON_FAX",
    "ON_VOICE",
    "5",
    "8",
    "rule1",
    "rule_set",
    "2001",
    "MAX_SLOT_EXCEEDED",
];

const IDS: &[&str] = &[
    "u1", "d1", "d2", "g1", "m1", "vm1", "c1", "c2", "l1", "rule1", "set1", "missing",
];

fn data_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(IDS).prop_map(|s| json!(s)),
        prop::sample::select(
            &[
                "login",
                "logout",
                "toggle",
                "bridge",
                "menu",
                "enable",
                "disable",
                "reset",
                "park",
                "retrieve",
                "auto",
                "direct_park",
                "compose",
                "check",
                "start",
                "stop",
                "static",
                "list",
                "lists",
                "manual",
                "user",
                "device",
                "group",
                "extension",
                "both",
                "self",
                "peer",
                "",
            ][..]
        )
        .prop_map(|s| json!(s)),
        (0i64..40).prop_map(|n| json!(n)),
        Just(json!(1_000_000_000)),
        (0i64..40).prop_map(|n| json!(n.to_string())),
        any::<bool>().prop_map(|b| json!(b)),
        Just(json!(".*")),
        Just(json!("^(\\d+")),
        Just(json!(["u1", "d1"])),
        Just(
            json!([{"id": "u1", "endpoint_type": "user"}, {"id": "d2"}, {"id": "g1", "endpoint_type": "group"}])
        ),
        Just(json!({"external": {"name": "X", "number": "+1555"}})),
        Just(Value::Null),
    ]
}

const DATA_KEYS: &[&str] = &[
    "id",
    "action",
    "timeout",
    "repeats",
    "endpoints",
    "strategy",
    "regex",
    "use_absolute_mode",
    "hunt",
    "hunt_allow",
    "variable",
    "scope",
    "rules",
    "target",
    "skip_module",
    "slot",
    "max_digits",
    "caller_id",
    "user_id",
    "lists",
    "duration",
    "max_slot_number",
    "voice_url",
    "mode",
    "pin",
    "retries",
    "to_did",
];

fn data() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(DATA_KEYS), data_value()), 0..5).prop_map(|kv| {
        let mut m = Map::new();
        for (k, v) in kv {
            m.insert(k.to_string(), v);
        }
        Value::Object(m)
    })
}

fn module() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => prop::sample::select(&MODULES[..]).prop_map(str::to_string),
        1 => Just("say".to_string()),
        1 => Just(String::new()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (module(), data()).prop_map(|(m, d)| json!({"module": m, "data": d})),
        1 => Just(json!({})),
        1 => Just(json!({"data": {}})),
        1 => Just(json!("not a node")),
    ]
}

fn flow() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 40, 4, |inner| {
        (
            module(),
            data(),
            prop::collection::vec((prop::sample::select(CHILD_KEYS), inner), 0..4),
        )
            .prop_map(|(m, d, kids)| {
                let mut children = Map::new();
                for (k, v) in kids {
                    children.insert(k.to_string(), v);
                }
                json!({"module": m, "data": d, "children": children})
            })
    })
}

fn event() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[0-9*#]{1,5}".prop_map(|d| json!({"dtmf": d})),
        "[0-9*#]{1,5}".prop_map(|d| json!({"dtmf": d, "leg": "a"})),
        "[0-9*#]{1,5}".prop_map(|d| json!({"dtmf": d, "leg": "b"})),
        Just(json!({"no_input": true})),
        Just(json!({"bridge": "answered"})),
        Just(json!({"bridge": "failed", "cause": "USER_BUSY", "code": "sip:486"})),
        Just(json!({"bridge": "failed"})),
        Just(json!({"bridge": "timeout"})),
        Just(json!({"hangup": true})),
        Just(json!({"pivot": {"flow": {"module": "callflow", "data": {"id": "c1"}}}})),
        Just(json!({"pivot": "failed"})),
        Just(json!({"function": {"flow": {"module": "menu", "data": {"id": "m1"}}}})),
        (0.0f64..=1.0).prop_map(|s| json!({"nomorobo": {"score": s}})),
        Just(json!({"queue": "answered"})),
        Just(json!({"queue_wait": {"average": 30}})),
        Just(json!({"fax_detect": "fax"})),
        Just(json!({"record": "done"})),
        Just(json!({"park": "timeout"})),
        Just(json!({"channel": "none"})),
        Just(json!({"camp": "busy"})),
        Just(json!({"webhook": "ok"})),
    ]
}

fn doc(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn documents(c1: Value, c2: Value) -> DocumentSet {
    let mut docs = DocumentSet::new();
    docs.insert("users", "u1", doc(json!({"first_name": "Ann", "metaflows": {"patterns": {"^3(\\d+)$": {"module": "transfer", "data": {}}}}})));
    docs.insert(
        "devices",
        "d1",
        doc(json!({"name": "Desk", "owner_id": "u1"})),
    );
    docs.insert("devices", "d2", doc(json!({"name": "Lobby", "metaflows": {"numbers": {"1": {"module": "callflow", "data": {"id": "c2"}}}}})));
    docs.insert(
        "groups",
        "g1",
        doc(
            json!({"name": "All", "endpoints": {"u1": {"type": "user"}, "d2": {"type": "device"}}}),
        ),
    );
    docs.insert(
        "menus",
        "m1",
        doc(json!({"name": "Main", "hunt": true, "retries": 2})),
    );
    docs.insert(
        "vmboxes",
        "vm1",
        doc(json!({"name": "Box", "mailbox": "3001"})),
    );
    docs.insert("lists", "l1", doc(json!({"name": "L"})));
    docs.insert(
        "list_entries",
        "e1",
        doc(json!({"list_id": "l1", "pattern": "^\\+1"})),
    );
    docs.insert("callflows", "c1", doc(json!({"flow": c1})));
    docs.insert("callflows", "c2", doc(json!({"flow": c2})));
    docs.set_account(doc(
        json!({"timezone": "Europe/London", "metaflows": {"binding_digit": "*"}}),
    ));
    docs
}

struct Plan(HashMap<&'static str, Route>);

impl callflowd::engine::Dialplan for Plan {
    fn lookup(&self, number: &str) -> Option<Route> {
        self.0.get(number).cloned()
    }
}

fn plan() -> Plan {
    let route = |id: &str, no_match: bool| Route {
        callflow_id: id.to_string(),
        capture_group: Some("2001".into()),
        no_match,
    };
    Plan(HashMap::from([
        ("2001", route("c1", false)),
        ("0", route("c2", false)),
        ("1", route("c2", false)),
        ("timeout", route("missing", true)),
    ]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_flows_and_scripts_always_end_within_the_step_limit(
        root in flow(),
        c1 in flow(),
        c2 in flow(),
        script in prop::collection::vec(event(), 0..20),
        max_steps in prop_oneof![Just(1000usize), 1usize..60],
        on_net in any::<bool>(),
    ) {
        let docs = documents(c1, c2);
        let events: Vec<Event> = parse_events(&script).expect("generated events are valid");
        let mut call = Call::new("2001", now());
        call.events = events;
        call.max_steps = max_steps;
        call.caller.id_number = Some("+14155550100".into());
        if on_net {
            call.caller.device_id = Some("d1".into());
        }
        let cf = doc(json!({"flow": root, "metaflow": {}}));
        let trace = run(&cf, &call, &docs, &plan());
        prop_assert!(trace.steps.len() <= max_steps, "{} steps > {}", trace.steps.len(), max_steps);
        if let Some(step) = trace.outcome.step {
            prop_assert!(step < trace.steps.len());
        }
        prop_assert!(serde_json::to_string(&trace).is_ok());
    }
}
