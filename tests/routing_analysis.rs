//! The routing analysis on a realistic account (the routing benchmark's generator: 10,000
//! patterns plus numbers), timed, with every verdict checked by a real lookup; and a property
//! test over random small accounts: every witness wins, every "never wins" example is a number
//! the pattern matches that routes elsewhere.

use std::time::Instant;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use callflowd::routing::analysis::{analyse, PatternReport};
use callflowd::routing::table::MatchKind;
use callflowd::routing::RouteTable;

/// Checks one report against the table: panics with the reason when it does not hold.
fn check(table: &RouteTable, r: &PatternReport) {
    let matches = |n: &str| {
        callflowd::routing::pattern::compile(&r.pattern)
            .map(|re| re.is_match(n))
            .unwrap_or(false)
    };
    if let Some(w) = &r.witness {
        let route = table.lookup(w, true, false).expect("a witness routes");
        assert_eq!(
            (route.kind, route.value, route.callflow_id),
            (
                MatchKind::Pattern,
                r.pattern.as_str(),
                r.callflow_id.as_str()
            ),
            "witness {w} of {} does not win",
            r.pattern
        );
        assert!(r.never_wins.is_none());
    } else {
        let nw = r.never_wins.as_ref().expect("a verdict");
        if let Some(example) = &nw.example {
            assert!(
                matches(example),
                "{} does not match its example {example}",
                r.pattern
            );
            let route = table
                .lookup(example, true, false)
                .expect("the example routes");
            assert!(
                !(route.kind == MatchKind::Pattern
                    && route.value == r.pattern
                    && route.callflow_id == r.callflow_id),
                "example {example} of {} routes to it",
                r.pattern
            );
            let winner = nw.winner.as_ref().expect("who wins the example");
            assert_eq!(route.callflow_id, winner.callflow_id);
            assert_eq!(route.value, winner.value);
        } else {
            assert!(matches!(nw.reason, "no_number" | "does_not_compile"));
        }
    }
}

#[test]
fn ten_thousand_realistic_patterns_are_analysed_in_under_ten_seconds() {
    let mut rng = StdRng::seed_from_u64(13);
    let (patterns, _) = callflowd::routing::generator::realistic_patterns(&mut rng, 10_000);
    let numbers: Vec<(String, String)> = (0..10_000)
        .map(|i| {
            (
                format!("+1{}", rng.gen_range(2_000_000_000u64..9_999_999_999)),
                format!("cf-number-{:03}", i % 100),
            )
        })
        .collect();
    let table = RouteTable::build(numbers, patterns.clone());
    let started = Instant::now();
    let reports = analyse(&table);
    let elapsed = started.elapsed();
    assert_eq!(reports.len(), patterns.len());
    for r in &reports {
        check(&table, r);
    }
    let wins = reports.iter().filter(|r| r.witness.is_some()).count();
    let exact_never = reports
        .iter()
        .filter(|r| r.never_wins.is_some() && r.exact)
        .count();
    let sampled_never = reports
        .iter()
        .filter(|r| r.never_wins.is_some() && !r.exact)
        .count();
    println!(
        "routing analysis: {} patterns in {:.2} s ({wins} with a witness, {exact_never} proved never to win, {sampled_never} never won in sampling)",
        reports.len(),
        elapsed.as_secs_f64()
    );
    // The time is reported, not asserted (tests never assert on timings): BENCHMARKS.md
    // records it against the issue's 10 s target, with the machine and the command.
    // The generator's DID blocks capture 4 digits under the 10-digit catch-all: proved shadowed.
    let did = reports
        .iter()
        .find(|r| r.pattern.starts_with(r"^\+1") && r.pattern.ends_with(r"(\d{4})$"))
        .unwrap();
    assert_eq!(did.method, "dfa_inclusion");
}

/// A small random pattern over a few shapes numbers take.
fn pattern() -> impl Strategy<Value = String> {
    let digits = "[0-9]{1,3}";
    prop_oneof![
        digits.prop_map(|d| format!("^{d}$")),
        (digits, 1u32..5).prop_map(|(d, n)| format!(r"^{d}(\d{{{n}}})$")),
        (digits, 0u32..3).prop_map(|(d, n)| format!(r"^{d}(\d{{{n},}})$")),
        digits.prop_map(|d| format!(r"^\*{d}(\d*)$")),
        (digits, digits).prop_map(|(a, b)| format!("^({a}|{b})$")),
        digits.prop_map(|d| format!(r"^\+?{d}(\d+)$")),
        digits.prop_map(|d| d.to_string()),
        Just(r"^\+?1?(\d{10})$".to_string()),
        Just(r"^(\d{3,4})$".to_string()),
        Just(r"^1$2".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn every_witness_wins_and_every_never_wins_example_routes_elsewhere(
        patterns in proptest::collection::vec((pattern(), 0usize..4), 1..12),
        numbers in proptest::collection::vec(("[0-9]{1,5}", 0usize..3), 0..12),
    ) {
        let table = RouteTable::build(
            numbers.into_iter().map(|(n, c)| (n, format!("n{c}"))),
            patterns.into_iter().map(|(p, c)| (p, format!("p{c}"))),
        );
        for r in analyse(&table) {
            check(&table, &r);
        }
    }
}
