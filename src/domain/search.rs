//! The rows of the account's `_design/search` views (`search_by_name`,
//! `search_by_name_and_number`, `search_by_number`) as Kazoo's JavaScript map functions emit
//! them, and the keys the store indexes so a search reads only candidate documents.
//!
//! Owns: the view emulation and the index keys. Must not know about HTTP or SQL.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::numbers::search_key;

/// The keys a document is indexed under: `("name", key)` for its name row and
/// `("number", key)` for each number row, each folded as the search's collation compares
/// them at the first level (every character lower-cased). A row whose key, under that
/// collation, lies between `[v]` and `[v + "Z"]` (the range a search reads) has a folded
/// key that starts with `v`: so the index, read by prefix, has no false negatives.
pub fn index_keys(id: &str, doc: &Map<String, Value>) -> Vec<(&'static str, String)> {
    let mut keys = BTreeSet::new();
    for view in ["name", "number"] {
        for (key, _) in view_rows(view, id, doc) {
            if let Value::String(s) = key {
                keys.insert((view, fold(&s)));
            }
        }
    }
    keys.into_iter().collect()
}

/// A key as the search compares it at the first level.
pub fn fold(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// JavaScript truthiness of a document field.
fn js_truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// `(doc.field || '')` followed by `.toLowerCase()`: `None` where JavaScript would throw.
fn js_text_or_empty(v: Option<&Value>) -> Option<String> {
    if !js_truthy(v) {
        return Some(String::new());
    }
    v.and_then(Value::as_str).map(str::to_string)
}

/// The rows the account's `_design/search` map functions emit for one live document, as
/// `(key after the type, value)`. A map function that throws (a field of the wrong type)
/// emits nothing for the document, as CouchDB discards its rows.
pub fn view_rows(
    view: &str,
    id: &str,
    doc: &Map<String, Value>,
) -> Vec<(Value, Map<String, Value>)> {
    view_rows_or_throw(view, id, doc).unwrap_or_default()
}

fn view_rows_or_throw(
    view: &str,
    id: &str,
    doc: &Map<String, Value>,
) -> Option<Vec<(Value, Map<String, Value>)>> {
    if js_truthy(doc.get("pvt_deleted")) || !js_truthy(doc.get("pvt_type")) {
        return Some(Vec::new());
    }
    let mut rows = Vec::new();
    let numbers = doc.get("numbers");
    // `for (var i in doc.numbers)` then `doc.numbers[i].toLowerCase()`.
    let number_keys = || -> Option<Vec<String>> {
        let items: Vec<Value> = match numbers {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Object(o)) => o.values().cloned().collect(),
            Some(Value::String(s)) => s.chars().map(|c| Value::String(c.into())).collect(),
            _ => Vec::new(),
        };
        items.iter().map(|n| n.as_str().map(search_key)).collect()
    };
    if view == "number" {
        for key in number_keys()? {
            let mut value = Map::new();
            value.insert("id".into(), json!(id));
            if let Some(name) = doc.get("name") {
                value.insert("name".into(), name.clone());
            }
            value.insert("numbers".into(), numbers.cloned().unwrap_or(Value::Null));
            rows.push((Value::String(key), value));
        }
        return Some(rows);
    }
    // `search_by_name` and the name row of `search_by_name_and_number`.
    let mut value = Map::new();
    let mut name = Value::String(String::new());
    let mut actual_name = String::new();
    if doc.contains_key("first_name") || doc.contains_key("last_name") {
        let first = js_text_or_empty(doc.get("first_name"))?;
        let last = js_text_or_empty(doc.get("last_name"))?;
        let (first_key, last_key) = (search_key(&first), search_key(&last));
        name = Value::String(format!("{first_key}{last_key}"));
        value.insert("first_name".into(), json!(first_key));
        value.insert("last_name".into(), json!(last_key));
        let gap = if !first.is_empty() && !last.is_empty() {
            " "
        } else {
            ""
        };
        actual_name = format!("{first}{gap}{last}");
    }
    if let Some(alphanum) = doc.get("pvt_alphanum_name") {
        name = alphanum.clone();
    } else if let Some(doc_name) = doc.get("name") {
        let doc_name = doc_name.as_str()?;
        name = Value::String(search_key(doc_name));
        actual_name = doc_name.to_string();
    } else if name.as_str() == Some("") {
        name = Value::String(search_key(id));
    }
    value.insert("id".into(), json!(id));
    let shown = if !actual_name.is_empty() {
        json!(actual_name)
    } else {
        doc.get("name").cloned().unwrap_or_else(|| name.clone())
    };
    value.insert("name".into(), shown);
    if view == "name" {
        rows.push((name, value));
        return Some(rows);
    }
    if let Some(n) = numbers {
        value.insert("numbers".into(), n.clone());
    }
    rows.push((name, value));
    if numbers.is_some() {
        for key in number_keys()? {
            let mut value = Map::new();
            value.insert("id".into(), json!(id));
            value.insert("name".into(), json!(actual_name));
            value.insert("numbers".into(), numbers.cloned().unwrap_or(Value::Null));
            rows.push((Value::String(key), value));
        }
    }
    Some(rows)
}
