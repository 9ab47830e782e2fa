//! Reading module data and documents the way Kazoo's `kz_json` getters do.
//!
//! Owns lenient value access (integers given as strings, `"true"` as true) and document
//! naming for summaries. Must not decide module behaviour, nor compile regexes (routing's
//! pattern cache does).

use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{Doc, Documents};
use crate::routing::pattern;

/// An empty object, for nodes without `data`.
pub(crate) static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

/// `kz_json:get_ne_binary_value`: a non-empty string.
pub(crate) fn text<'m>(m: &'m Map<String, Value>, key: &str) -> Option<&'m str> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// A nested non-empty string, `text_at(m, &["media", "greeting"])`.
pub(crate) fn text_at<'m>(m: &'m Map<String, Value>, path: &[&str]) -> Option<&'m str> {
    let (last, init) = path.split_last()?;
    let mut cur = m;
    for k in init {
        cur = cur.get(*k)?.as_object()?;
    }
    text(cur, last)
}

/// `kz_json:get_integer_value`: numbers (truncated) and numeric strings.
pub(crate) fn int(m: &Map<String, Value>, key: &str) -> Option<i64> {
    match m.get(key)? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok().or_else(|| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

/// `kz_json:is_true` (`true` or `"true"`), with a default for an absent or other value
/// the way `is_true/3` only defaults when the key is absent.
pub(crate) fn is_true(m: &Map<String, Value>, key: &str, default: bool) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        Some(_) => false,
    }
}

/// `kz_json:is_false`: `false` or `"false"`.
pub(crate) fn is_false(m: &Map<String, Value>, key: &str) -> bool {
    matches!(m.get(key), Some(Value::Bool(false)))
        || matches!(m.get(key), Some(Value::String(s)) if s == "false")
}

/// Strings of an array (others skipped).
pub(crate) fn strings<'m>(m: &'m Map<String, Value>, key: &str) -> Vec<&'m str> {
    m.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A JSON value as Kazoo turns it into a binary for comparisons (`kz_term:to_binary`).
pub(crate) fn to_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The id a document is known by.
pub(crate) fn doc_id(doc: &Doc) -> Option<&str> {
    text(doc, "id").or_else(|| text(doc, "_id"))
}

/// A document's human name: `name`, or a user's first and last names.
pub(crate) fn doc_name(doc: &Doc) -> Option<String> {
    if let Some(n) = text(doc, "name") {
        return Some(n.to_string());
    }
    let first = text(doc, "first_name").unwrap_or("");
    let last = text(doc, "last_name").unwrap_or("");
    let full = format!("{first} {last}");
    let full = full.trim();
    (!full.is_empty()).then(|| full.to_string())
}

/// `'Name' (id)` for a summary, or just the id when unnamed, or `(no id)`.
pub(crate) fn label(doc: Option<&Doc>, id: Option<&str>) -> String {
    match (doc.and_then(doc_name), id) {
        (Some(n), Some(id)) => format!("'{n}' ({id})"),
        (Some(n), None) => format!("'{n}'"),
        (None, Some(id)) => id.to_string(),
        (None, None) => "(no id)".to_string(),
    }
}

/// Looks a document up and names it in one go.
pub(crate) fn named<'d>(
    docs: &'d dyn Documents,
    doc_type: &str,
    id: Option<&str>,
) -> (Option<&'d Doc>, String) {
    let doc = id.and_then(|id| docs.get(doc_type, id));
    (doc, label(doc, id))
}

/// A compiled data regex (check_cid, hunt_allow, lists, metaflow patterns), from the routing
/// dialect's process-wide cache. `None`: it does not compile (Kazoo's `re:run` raises, which
/// each caller handles as Kazoo does).
pub(crate) fn regex(pattern_text: &str) -> Option<std::sync::Arc<regex::Regex>> {
    pattern::cached(pattern_text)
}

/// `re:run(Subject, Regex)` matched (an uncompilable regex is `None`).
pub(crate) fn regex_matches(pattern_text: &str, subject: &str) -> Option<bool> {
    regex(pattern_text).map(|re| re.is_match(subject))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_and_booleans_are_read_leniently() {
        let m = json!({"a": "20", "b": 3.9, "c": "x", "t": "true", "f": "false", "n": 1})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(int(&m, "a"), Some(20));
        assert_eq!(int(&m, "b"), Some(3));
        assert_eq!(int(&m, "c"), None);
        assert!(is_true(&m, "t", false));
        assert!(!is_true(&m, "n", true), "a number is not true");
        assert!(is_true(&m, "missing", true));
        assert!(is_false(&m, "f"));
    }

    #[test]
    fn regexes_are_cached_and_bad_ones_are_none() {
        assert_eq!(regex_matches(r"^\d+$", "123"), Some(true));
        assert_eq!(regex_matches(r"^\d+$", "12a"), Some(false));
        assert_eq!(regex_matches(r"^(\d+$", "1"), None);
    }
}
