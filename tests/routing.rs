//! Property tests: the routing engine agrees with the plain reference implementation of
//! Kazoo's algorithm, and incremental updates agree with a rebuild.

use proptest::prelude::*;

use callflowd::routing::reference::LinearScan;
use callflowd::routing::table::{CallflowKeys, RouteTable};

/// Pattern fragments shaped like real Kazoo patterns.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,3}".prop_map(|s| s),
        Just(r"\+?".to_string()),
        Just(r"\*".to_string()),
        Just("1?".to_string()),
        Just(r"(\d{2})".to_string()),
        Just(r"(\d+)".to_string()),
        Just(r"(\d*)".to_string()),
        Just(r"([0-9]{2,})".to_string()),
        Just(r"(?<ext>\d{1,3})".to_string()),
        Just(r"(?P<code>[2-5]\d?)".to_string()),
        Just(r"\d".to_string()),
        Just(r"(?:1|22)".to_string()),
        Just(r"(0|1)?".to_string()),
        Just("#".to_string()),
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(piece(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(start, pieces, end)| {
            format!(
                "{}{}{}",
                if start { "^" } else { "" },
                pieces.concat(),
                if end { "$" } else { "" }
            )
        })
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,8}",
        r"\+[0-9]{1,10}",
        r"\*[0-9]{1,4}",
        "[0-9*#+]{1,6}",
        Just("no_match".to_string()),
    ]
}

/// `(key, callflow id)` pairs.
type Keys = Vec<(String, String)>;

fn setup() -> impl Strategy<Value = (Keys, Keys)> {
    (
        prop::collection::btree_map("[0-9]{1,4}|no_match", "cf[0-9]", 0..6),
        prop::collection::btree_map(pattern(), "cf[0-9]", 0..12),
    )
        .prop_map(|(n, p)| (n.into_iter().collect(), p.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_reference((numbers, patterns) in setup(), dialled in prop::collection::vec(number(), 1..12), allow in any::<bool>()) {
        let table = RouteTable::build(numbers.clone(), patterns.clone());
        let reference = LinearScan::new(&numbers, &patterns);
        for n in &dialled {
            let got = table.lookup(n, allow, false).map(|r| (r.callflow_id.to_string(), r.kind.as_str(), r.capture_group, r.capture_groups));
            let want = reference.lookup(n, allow);
            prop_assert_eq!(got, want, "number {:?} patterns {:?}", n, patterns);
        }
    }

    #[test]
    fn incremental_updates_agree_with_a_rebuild(
        (numbers, patterns) in setup(),
        changes in prop::collection::vec(("cf[0-9]", prop::collection::btree_set("[0-9]{1,4}", 0..3), prop::collection::btree_set(pattern(), 0..3)), 1..6),
        dialled in prop::collection::vec(number(), 1..10),
    ) {
        // Apply each change to a state map (enforcing per-account uniqueness as the store does).
        let mut state_numbers: std::collections::BTreeMap<String, String> = numbers.iter().cloned().collect();
        let mut state_patterns: std::collections::BTreeMap<String, String> = patterns.iter().cloned().collect();
        let mut table = RouteTable::build(numbers.clone(), patterns.clone());
        for (id, nums, pats) in changes {
            let nums: Vec<String> = nums.into_iter().filter(|n| state_numbers.get(n).map(|h| *h == id).unwrap_or(true)).collect();
            let pats: Vec<String> = pats.into_iter().filter(|p| state_patterns.get(p).map(|h| *h == id).unwrap_or(true)).collect();
            state_numbers.retain(|_, h| *h != id);
            state_patterns.retain(|_, h| *h != id);
            for n in &nums { state_numbers.insert(n.clone(), id.clone()); }
            for p in &pats { state_patterns.insert(p.clone(), id.clone()); }
            table = table.with_changes(&[CallflowKeys { callflow_id: id, numbers: nums, patterns: pats }]);
        }
        let fresh = RouteTable::build(state_numbers.into_iter().collect::<Vec<_>>(), state_patterns.into_iter().collect::<Vec<_>>());
        for n in &dialled {
            let a = table.lookup(n, true, false).map(|r| (r.callflow_id.to_string(), r.capture_group));
            let b = fresh.lookup(n, true, false).map(|r| (r.callflow_id.to_string(), r.capture_group));
            prop_assert_eq!(a, b, "number {:?}", n);
        }
    }
}
