//! Kazoo's routing algorithm written the plain way (`cf_flow`): exact number, else try every
//! pattern in Kazoo's order keeping the first longest capture, else `no_match`. Kept for the
//! property tests and as the benchmark baseline; production uses [`super::table`].

use std::collections::BTreeMap;

use regex::Regex;

use super::pattern;

/// Patterns compiled once, in Kazoo's iteration order (as Kazoo caches its compiled list).
pub struct LinearScan {
    numbers: std::collections::HashMap<String, String>,
    patterns: Vec<(String, String, Regex)>,
}

/// What the reference decides: callflow id, kind, capture group, named captures.
pub type Decision = (
    String,
    &'static str,
    Option<String>,
    BTreeMap<String, String>,
);

impl LinearScan {
    pub fn new(numbers: &[(String, String)], patterns: &[(String, String)]) -> Self {
        let mut compiled: Vec<(String, String, Regex)> = patterns
            .iter()
            .filter_map(|(p, id)| {
                pattern::compile(p)
                    .ok()
                    .map(|re| (p.clone(), id.clone(), re))
            })
            .collect();
        compiled.sort_by(|a, b| {
            b.0.as_bytes()
                .cmp(a.0.as_bytes())
                .then_with(|| b.1.cmp(&a.1))
        });
        Self {
            numbers: numbers.iter().cloned().collect(),
            patterns: compiled,
        }
    }

    pub fn lookup(&self, number: &str, allow_no_match: bool) -> Option<Decision> {
        let decision = self.resolve(number)?;
        let no_match_holder = self.numbers.get("no_match");
        let digits = number.strip_prefix('+').unwrap_or(number);
        match decision {
            Some(d) if !allow_no_match && no_match_holder == Some(&d.0) => None,
            Some(d) => Some(d),
            None if allow_no_match && digits.bytes().all(|b| b.is_ascii_digit()) => {
                no_match_holder.map(|id| (id.clone(), "no_match", None, BTreeMap::new()))
            }
            None => None,
        }
    }

    /// `Some(None)`: nothing matched but `no_match` may apply; `None`: definitely not found.
    fn resolve(&self, number: &str) -> Option<Option<Decision>> {
        if number.is_empty() {
            return None;
        }
        if let Some(id) = self.numbers.get(number) {
            return Some(Some((id.clone(), "number", None, BTreeMap::new())));
        }
        if number == "no_match" {
            return None;
        }
        let mut best: Option<(usize, &(String, String, Regex), String)> = None;
        for entry in &self.patterns {
            let Some(caps) = entry.2.captures(number) else {
                continue;
            };
            let capture = if caps.len() > 1 {
                caps.iter()
                    .skip(1)
                    .map(|m| m.map(|m| m.as_str()).unwrap_or(""))
                    .fold("", |acc, c| if c.len() > acc.len() { c } else { acc })
                    .to_string()
            } else {
                caps.get(0)
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default()
            };
            if best.as_ref().map(|b| capture.len() > b.0).unwrap_or(true) {
                best = Some((capture.len(), entry, capture));
            }
        }
        Some(best.map(|(_, (_, id, re), capture)| {
            let mut named = BTreeMap::new();
            if let Some(caps) = re.captures(number) {
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name).filter(|m| !m.as_str().is_empty()) {
                        named.insert(name.to_string(), m.as_str().to_string());
                    }
                }
            }
            (
                id.clone(),
                "pattern",
                Some(capture).filter(|c| !c.is_empty()),
                named,
            )
        }))
    }
}
