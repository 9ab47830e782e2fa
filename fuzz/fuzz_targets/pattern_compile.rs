//! Fuzz target: any string as a callflow pattern (input before the first NUL; what follows is
//! one more number to look up). Translation and compilation must not panic; a pattern the
//! routing engine accepts must also compile for the engine's own matching, and the routing
//! table (prefix index, lazy DFA) must agree with the plain reference scan on every number.
#![no_main]

use libfuzzer_sys::fuzz_target;

use callflowd::routing::pattern;
use callflowd::routing::reference::LinearScan;
use callflowd::routing::RouteTable;

const NUMBERS: &[&str] = &[
    "+14155550100",
    "14155550100",
    "*7101",
    "*55123",
    "0123456789",
    "911",
    "1\n",
    "{",
    "no_match",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (p, extra) = text.split_once('\u{0}').unwrap_or((text, "2001"));
    let translated = callflowd::pcre::translate(p);
    let routing = pattern::compile_routing(p);
    if routing.is_ok() {
        assert!(translated.is_ok(), "routing compiled what translation refused: {p:?}");
        assert!(pattern::compile(p).is_ok(), "routing accepts, engine refuses: {p:?}");
    } else {
        return;
    }
    let patterns = vec![
        (p.to_string(), "fuzzed".to_string()),
        (r"^\*7(\d+)$".to_string(), "feature".to_string()),
    ];
    let numbers = vec![("911".to_string(), "emergency".to_string())];
    let table = RouteTable::build(numbers.clone(), patterns.clone());
    let reference = LinearScan::new(&numbers, &patterns);
    for number in NUMBERS.iter().copied().chain([extra]) {
        let got = table.lookup(number, false, false).map(|r| {
            (
                r.callflow_id.to_string(),
                r.kind.as_str(),
                r.capture_group,
                r.capture_groups,
            )
        });
        let want = reference.lookup(number, false);
        assert_eq!(got, want, "pattern {p:?}, number {number:?}");
    }
});
