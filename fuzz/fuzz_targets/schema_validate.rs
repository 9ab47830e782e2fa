//! Fuzz target: any JSON value validated against the callflow schema and a few of its
//! neighbours must not panic, and a document that validated must validate again unchanged
//! (defaults and coercions are written once and are stable).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use callflowd::schema::SchemaSet;

static SCHEMAS: LazyLock<SchemaSet> =
    LazyLock::new(|| SchemaSet::embedded().expect("embedded schemas load"));

const NAMES: &[&str] = &[
    "callflows",
    "devices",
    "users",
    "accounts",
    "conferences",
    "metaflows",
    "menus",
    "vmboxes",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let name = NAMES[selector as usize % NAMES.len()];
    if SCHEMAS.validate(name, &mut value).is_ok() {
        let mut again = value.clone();
        let second = SCHEMAS.validate(name, &mut again);
        assert!(second.is_ok(), "{name}: valid once, then {second:?} for {value}");
        assert_eq!(again, value, "{name}: a second validation changed the document");
    }
});
