//! Number normalisation as Kazoo applies it to a callflow's `numbers` before validation.
//!
//! Order: a leading `+` is kept as is; otherwise the account's `dial_plan` (first matching
//! regex in key order) rewrites the number, then the first matching E.164 converter does.
//! A rewrite is `prefix + <highest-numbered group that took part> + suffix` (the whole match
//! when the regex has no group), which is what Erlang's `re` returns as the last capture.

use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::Value;

/// One rewrite rule: regex plus what goes around the captured part.
#[derive(Debug, Clone)]
pub struct Converter {
    pub regex: Regex,
    pub prefix: String,
    pub suffix: String,
}

impl Converter {
    fn new(re: &str, prefix: &str) -> Self {
        Self {
            regex: Regex::new(re).expect("built-in converter regex compiles"),
            prefix: prefix.to_string(),
            suffix: String::new(),
        }
    }

    fn apply(&self, number: &str) -> Option<String> {
        let caps = self.regex.captures(number)?;
        let part = (1..caps.len())
            .rev()
            .find_map(|i| caps.get(i))
            .or_else(|| caps.get(0))
            .map(|m| m.as_str())
            .unwrap_or_default();
        Some(format!("{}{}{}", self.prefix, part, self.suffix))
    }
}

/// Kazoo's default `e164_converters`.
static DEFAULT_CONVERTERS: LazyLock<Vec<Converter>> = LazyLock::new(|| {
    vec![
        Converter::new(r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$", "+1"),
        Converter::new(r"^011(\d{5,})$|^00(\d{5,})$", "+"),
        Converter::new(r"^[2-9]\d{7,}$", "+"),
    ]
});

/// Most distinct dial plans [`dial_plan_of`] keeps compiled before starting over.
const PLAN_CACHE_CAP: usize = 1024;

static PLANS: LazyLock<std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<Converter>>>>> =
    LazyLock::new(Default::default);

/// An account's `dial_plan` (the value of its `dial_plan` key), compiled once per distinct
/// plan: keyed by the plan's JSON text, so a changed plan is a new entry and nothing can be
/// stale. Requests, writes and simulations share the compiled regexes.
pub fn dial_plan_of(plan: Option<&Value>) -> Arc<Vec<Converter>> {
    static EMPTY: LazyLock<Arc<Vec<Converter>>> = LazyLock::new(Default::default);
    let Some(plan) = plan.filter(|p| p.as_object().is_some_and(|m| !m.is_empty())) else {
        return EMPTY.clone();
    };
    let key = plan.to_string();
    // A poisoned lock only means a panic elsewhere mid-insert; the map is still a valid cache.
    let mut plans = PLANS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = plans.get(&key) {
        return hit.clone();
    }
    if plans.len() >= PLAN_CACHE_CAP {
        plans.clear();
    }
    let mut doc = serde_json::Map::new();
    doc.insert("dial_plan".into(), plan.clone());
    let compiled = Arc::new(dial_plan(&Value::Object(doc)));
    plans.insert(key, compiled.clone());
    compiled
}

/// Rules read from an account's `dial_plan` object (`{"<regex>": {"prefix", "suffix"}}`);
/// entries whose regex does not compile are skipped, as Kazoo skips them.
pub fn dial_plan(account_doc: &Value) -> Vec<Converter> {
    account_doc
        .get("dial_plan")
        .and_then(Value::as_object)
        .map(|plan| {
            plan.iter()
                .filter_map(|(re, rule)| {
                    let regex = Regex::new(re).ok()?;
                    let field = |k: &str| {
                        rule.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    Some(Converter {
                        regex,
                        prefix: field("prefix"),
                        suffix: field("suffix"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Normalise one number with an account dial plan and the default converters.
pub fn normalize(number: &str, plan: &[Converter]) -> String {
    if number.starts_with('+') {
        return number.to_string();
    }
    let dialed = plan
        .iter()
        .find_map(|c| c.apply(number))
        .unwrap_or_else(|| number.to_string());
    DEFAULT_CONVERTERS
        .iter()
        .find_map(|c| c.apply(&dialed))
        .unwrap_or(dialed)
}

/// The key Kazoo's number search indexes: lower-case, only `[a-z0-9]` kept.
pub fn search_key(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dial_plan_is_compiled_once_per_distinct_plan() {
        let plan = serde_json::json!({"^(\\d{7})$": {"prefix": "+1415"}});
        let first = dial_plan_of(Some(&plan));
        let again = dial_plan_of(Some(&plan));
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same plan is not compiled twice"
        );
        assert_eq!(normalize("5550100", &first), "+14155550100");
        let other = serde_json::json!({"^(\\d{7})$": {"prefix": "+1212"}});
        assert_eq!(
            normalize("5550100", &dial_plan_of(Some(&other))),
            "+12125550100"
        );
        assert!(dial_plan_of(None).is_empty());
        assert!(dial_plan_of(Some(&serde_json::json!({}))).is_empty());
    }

    #[test]
    fn kazoo_worked_examples() {
        let cases = [
            ("4158867900", "+14158867900"),
            ("14158867900", "+14158867900"),
            ("+14158867900", "+14158867900"),
            ("1001", "1001"),
            ("*97", "*97"),
            ("no_match", "no_match"),
            ("011441234567890", "+441234567890"),
            ("00441234567890", "+441234567890"),
            ("441234567890", "+441234567890"),
            ("4151234567", "+4151234567"),
            ("23456789", "+23456789"),
            ("12345678", "12345678"),
            ("1234567", "1234567"),
            ("0123", "0123"),
            ("+1001", "+1001"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input, &[]), want, "input {input}");
        }
    }

    #[test]
    fn account_dial_plan_runs_first() {
        let plan =
            dial_plan(&serde_json::json!({"dial_plan": {"^(\\d{7})$": {"prefix": "+1415"}}}));
        assert_eq!(normalize("8867900", &plan), "+14158867900");
    }

    #[test]
    fn search_key_strips_symbols() {
        assert_eq!(search_key("+1415-886 7900"), "14158867900");
        assert_eq!(search_key("Main Line"), "mainline");
    }
}
