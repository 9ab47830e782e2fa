//! The route cache's reported bytes against the resident memory its snapshots really add
//! (reliability defect 8): within a factor of 2, for plain and near-limit patterns, and the
//! budget evicts them. Each measurement runs in a child process of its own (this test binary
//! run again), so memory freed by an earlier build cannot hide what a later one costs.

use std::sync::Arc;

use callflowd::routing::pattern::compile_routing;
use callflowd::routing::{RouteCache, RouteTable};

const SCENARIO: &str = "CALLFLOWD_ROUTE_MEMORY_SCENARIO";
const REPEAT: &str = "CALLFLOWD_ROUTE_MEMORY_REPEAT";

fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// The largest `N` such that `^(\d{0,N})9...$` still compiles for routing.
fn near_limit_repeat() -> usize {
    let (mut lo, mut hi) = (1usize, 20_000usize);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if compile_routing(&format!(r"^(\d{{0,{mid}}})90000$")).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// (value, callflow id) pairs.
type Keys = Vec<(String, String)>;

/// A scenario's (patterns, numbers).
fn scenario(name: &str, near: usize) -> (Keys, Keys) {
    let heavy = |n: usize, lead: char| -> Keys {
        (0..n)
            .map(|i| {
                (
                    format!(r"^(\d{{0,{near}}}){lead}{i:04}$"),
                    format!("h{lead}{i}"),
                )
            })
            .collect()
    };
    match name {
        "plain" => (
            (0..4000)
                .map(|i| (format!(r"^\+?1?{i:04}(\d{{6}})$"), format!("cf{}", i % 50)))
                .collect(),
            Vec::new(),
        ),
        "near-limit" => (heavy(300, '9'), Vec::new()),
        _ => {
            let mut patterns: Keys = (0..1500)
                .map(|i| (format!(r"^\*{i:04}(\d+)$"), format!("cf{}", i % 40)))
                .collect();
            patterns.extend(heavy(100, '8'));
            let numbers = (0..200_000)
                .map(|i| (format!("+1212{i:07}"), format!("cf{}", i % 1000)))
                .collect();
            (patterns, numbers)
        }
    }
}

/// The child: builds one scenario's snapshot and prints reported and resident bytes.
#[test]
fn measure_one_scenario_in_a_child_process() {
    let Ok(name) = std::env::var(SCENARIO) else {
        return; // only meaningful when run by the parent test below
    };
    let near: usize = std::env::var(REPEAT).unwrap().parse().unwrap();
    let probes: Vec<String> = (0..200).map(|i| format!("+1415555{i:04}")).collect();
    // Before the inputs exist: the build consumes and frees them, and reuses that memory.
    let before = resident();
    let (patterns, numbers) = scenario(&name, near);
    let table = RouteTable::build(numbers, patterns);
    // Lookups fill the search caches, as real traffic does.
    for p in &probes {
        std::hint::black_box(table.lookup(p, true, false));
    }
    let added = resident().saturating_sub(before);
    println!(
        "MEASURED {} {} {} {}",
        table.weight(),
        added,
        table.pattern_count(),
        table.number_count()
    );
}

#[test]
fn reported_bytes_follow_resident_memory() {
    if std::env::var(SCENARIO).is_ok() {
        return;
    }
    let near = near_limit_repeat();
    println!("route memory: largest accepted \\d{{0,N}} repeat is N = {near}");
    assert!(compile_routing(r"^(\d{0,9353})9NNNN$").is_err());
    for name in ["plain", "near-limit", "mix"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "measure_one_scenario_in_a_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SCENARIO, name)
            .env(REPEAT, near.to_string())
            .output()
            .expect("child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("MEASURED ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
        let v: Vec<u64> = line
            .split_whitespace()
            .take(4)
            .map(|x| x.parse().unwrap())
            .collect();
        let (weight, added) = (v[0], v[1]);
        let ratio = weight as f64 / added as f64;
        println!(
            "route memory [{name}]: {} patterns, {} numbers: reported {:.1} MB, resident added {:.1} MB, ratio {ratio:.2}",
            v[2],
            v[3],
            weight as f64 / 1e6,
            added as f64 / 1e6
        );
        assert!(
            (0.5..=2.0).contains(&ratio),
            "{name}: reported {weight} bytes for {added} resident bytes"
        );
    }
}

#[tokio::test]
async fn the_budget_evicts_pattern_heavy_snapshots() {
    if std::env::var(SCENARIO).is_ok() {
        return;
    }
    let near = near_limit_repeat();
    let dir = tempfile::tempdir().unwrap();
    let store = callflowd::store::open(&format!("sqlite://{}", dir.path().join("m.db").display()))
        .await
        .unwrap();
    let (patterns, numbers) = scenario("near-limit", near);
    let one = RouteTable::build(numbers.clone(), patterns.clone());
    let cache = Arc::new(RouteCache::new(store, one.weight() * 3 / 2));
    cache.preload("a", one);
    cache.preload("b", RouteTable::build(numbers, patterns));
    assert_eq!(cache.cached_accounts(), 1, "the budget did not evict");
    assert!(cache.cached("b").is_some(), "the newest snapshot is kept");
}
