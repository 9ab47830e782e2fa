//! Temporal route benchmark: `cargo bench --bench temporal`. Times `evaluate` on a typical
//! five-rule route (weekday hours, lunch break, two holidays, a rule set) at instants spread
//! over a year, in a zone with DST, and reports per-call percentiles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use callflowd::engine::temporal::evaluate;
use callflowd::engine::Documents;

/// Documents by type, then id (looked up without allocating, as a store snapshot would be).
struct Docs(HashMap<String, HashMap<String, Map<String, Value>>>);

impl Documents for Docs {
    fn get(&self, doc_type: &str, id: &str) -> Option<&Map<String, Value>> {
        self.0.get(doc_type)?.get(id)
    }
    fn owned_by(&self, _: &str, _: &str) -> Vec<&Map<String, Value>> {
        Vec::new()
    }
    fn all(&self, _: &str) -> Vec<&Map<String, Value>> {
        Vec::new()
    }
    fn account(&self) -> Option<&Map<String, Value>> {
        None
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

const START: i64 = 63_461_059_200; // 2011-01-01 00:00 UTC in gregorian seconds

fn docs() -> Docs {
    let mut m: HashMap<String, HashMap<String, Map<String, Value>>> = HashMap::new();
    let mut rule = |id: &str, doc: Value| {
        m.entry("temporal_rules".to_owned())
            .or_default()
            .insert(id.to_owned(), obj(doc));
    };
    rule(
        "christmas",
        json!({"name": "Christmas", "cycle": "yearly", "month": 12, "days": [25], "start_date": START}),
    );
    rule(
        "thanksgiving",
        json!({"name": "Thanksgiving", "cycle": "yearly", "month": 11, "ordinal": "fourth", "wdays": ["thursday"], "start_date": START}),
    );
    rule(
        "lunch",
        json!({"name": "Lunch", "cycle": "weekly", "wdays": ["monday", "tuesday", "wednesday", "thursday", "friday"], "time_window_start": 43200, "time_window_stop": 46800, "start_date": START}),
    );
    rule(
        "hours",
        json!({"name": "Office hours", "cycle": "weekly", "wdays": ["monday", "tuesday", "wednesday", "thursday", "friday"], "time_window_start": 32400, "time_window_stop": 61200, "start_date": START}),
    );
    rule(
        "inventory",
        json!({"name": "Inventory day", "cycle": "monthly", "ordinal": "last", "wdays": ["friday"], "start_date": START}),
    );
    m.entry("temporal_rules_sets".to_owned())
        .or_default()
        .insert(
            "holidays".to_owned(),
            obj(json!({"name": "Holidays", "temporal_rules": ["christmas", "thanksgiving"]})),
        );
    Docs(m)
}

fn main() {
    let docs = docs();
    let data =
        obj(json!({"rules": ["inventory", "lunch", "hours"], "timezone": "America/New_York"}));
    let keys = ["holidays", "inventory", "lunch", "hours", "_"];
    // 20,000 instants spread over 2026, 26 minutes apart.
    let base = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let instants: Vec<DateTime<Utc>> = (0..20_000)
        .map(|i| DateTime::<Utc>::from_timestamp(base + i * 1_577, 0).unwrap_or_default())
        .collect();
    let mut hits: HashMap<String, usize> = HashMap::new();
    for now in &instants {
        *hits
            .entry(evaluate(&data, &keys, *now, None, &docs).child_key)
            .or_default() += 1;
    }
    let mut times = Vec::with_capacity(instants.len() / 64);
    for round in 0..5 {
        for chunk in instants.chunks(64) {
            let t = Instant::now();
            for now in chunk {
                std::hint::black_box(evaluate(&data, &keys, *now, None, &docs));
            }
            if round > 0 {
                times.push(t.elapsed() / chunk.len() as u32);
            }
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let max = times.last().copied().unwrap_or(Duration::ZERO);
    println!(
        "temporal_route, 5 rules + 1 rule set, America/New_York, {} instants",
        instants.len()
    );
    println!("  outcomes: {hits:?}");
    println!(
        "  per evaluate: p50 {:?}  p99 {:?}  max {:?}",
        at(0.5),
        at(0.99),
        max
    );
}
