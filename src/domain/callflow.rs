//! Callflow document rules: private fields, listing summaries, PATCH merge, revisions,
//! metadata candidates, Kazoo's numbers/patterns pre-checks.

use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use crate::schema::{SchemaError, SchemaErrors};

use super::numbers::{normalize, Converter};

/// Top-level keys starting with `_` or `pvt_` are private: never accepted from clients and never
/// returned (nested keys are ordinary data).
pub fn is_private_key(key: &str) -> bool {
    key.starts_with('_') || key.starts_with("pvt_")
}

/// The request data without private keys.
pub fn public_part(data: &Map<String, Value>) -> Map<String, Value> {
    data.iter()
        .filter(|(k, _)| !is_private_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What clients see of a stored doc: public fields plus `id` (and a stored `_read_only`).
pub fn public_view(doc: &Map<String, Value>, id: &str) -> Map<String, Value> {
    let mut out = public_part(doc);
    out.insert("id".into(), Value::String(id.to_string()));
    if let Some(ro) = doc.get("_read_only") {
        out.insert("_read_only".into(), ro.clone());
    }
    out
}

/// The private fields of a stored doc (kept across a POST full replace).
pub fn private_part(doc: &Map<String, Value>) -> Map<String, Value> {
    doc.iter()
        .filter(|(k, _)| is_private_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// CouchDB-style revision: generation, dash, md5 of the document body.
pub fn next_revision(previous: Option<&str>, doc: &Map<String, Value>) -> String {
    let generation = previous
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let body = serde_json::to_vec(doc).unwrap_or_default();
    format!("{generation}-{}", hex::encode(Md5::digest(&body)))
}

/// `pvt_alphanum_name`: name lower-cased, only `[a-z0-9]` kept.
pub fn alphanum_name(name: &str) -> String {
    super::numbers::search_key(name)
}

/// Kazoo's PATCH merge: request wins, objects merge recursively, arrays and scalars replace,
/// `null` removes the key, an empty object replaces instead of merging.
pub fn merge_patch(stored: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = stored
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in patch {
        match value {
            Value::Null => {
                out.remove(key);
            }
            Value::Object(p) if !p.is_empty() => {
                let merged = match out.get(key) {
                    Some(Value::Object(s)) => merge_patch(s, p),
                    _ => merge_patch(&Map::new(), p),
                };
                out.insert(key.clone(), Value::Object(merged));
            }
            other => {
                out.insert(key.clone(), other.clone());
            }
        }
    }
    out
}

/// Kazoo's own checks before the schema runs: at least one number or pattern, the right
/// container types, and number normalisation. Unlike Kazoo (which crashes with a 500 on them),
/// non-string and empty numbers get a schema-shaped 400.
pub fn precheck_numbers(
    data: &mut Map<String, Value>,
    plan: &[Converter],
) -> Result<(), SchemaErrors> {
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if empty(data.get("numbers")) {
        match data.get("patterns") {
            p if empty(p) => {
                return Err(SchemaErrors::single(SchemaError::at(
                    "numbers",
                    "required",
                    "Callflows must be assigned at least one number or pattern",
                )))
            }
            Some(Value::Array(_)) => return Ok(()),
            Some(other) => return Err(SchemaErrors::single(array_type_error("patterns", other))),
            None => return Ok(()),
        }
    }
    let numbers = match data.get("numbers") {
        Some(Value::Array(a)) => a.clone(),
        Some(other) => return Err(SchemaErrors::single(array_type_error("numbers", other))),
        None => return Ok(()),
    };
    let mut errors = SchemaErrors::default();
    let mut normalized = Vec::with_capacity(numbers.len());
    for (i, n) in numbers.iter().enumerate() {
        let path = vec!["numbers".to_string(), i.to_string()];
        match n {
            Value::String(s) if s.is_empty() => errors.push(
                SchemaError::new(path, "minLength", "String must be at least 1 characters")
                    .with("target", json!(1))
                    .with("cause", n.clone())
                    .with("value", n.clone()),
            ),
            Value::String(s) => normalized.push(Value::String(normalize(s, plan))),
            other => errors.push(
                SchemaError::new(path, "type", "Value did not match type(s): string")
                    .with("target", json!("string"))
                    .with("value", other.clone()),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    data.insert("numbers".into(), Value::Array(normalized));
    Ok(())
}

fn array_type_error(field: &str, value: &Value) -> SchemaError {
    SchemaError::at(field, "type", "Value did not match type: array")
        .with("target", json!("array"))
        .with("value", value.clone())
}

/// Strings of a `numbers` or `patterns` array (non-strings ignored; validation rejects them).
pub fn string_list(doc: &Map<String, Value>, key: &str) -> Vec<String> {
    doc.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Children of a flow node in JavaScript object-key order (what CouchDB's view server uses):
/// integer-like keys ascending first, then the others in insertion order.
pub fn children_in_js_order(children: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let is_index = |k: &str| {
        !k.is_empty()
            && k.len() < 10
            && k.bytes().all(|b| b.is_ascii_digit())
            && (k == "0" || !k.starts_with('0'))
    };
    let mut numeric: Vec<(&String, &Value)> =
        children.iter().filter(|(k, _)| is_index(k)).collect();
    numeric.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0));
    numeric.extend(children.iter().filter(|(k, _)| !is_index(k)));
    numeric
}

/// The listing's `modules`: pre-order, first occurrence kept, nodes without a `data` object or
/// with `data.skip_module === true` skipped (their children still walked).
pub fn flow_modules(flow: Option<&Value>) -> Vec<String> {
    fn walk(node: &Value, out: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        if let (Some(Value::String(m)), Some(Value::Object(data))) =
            (obj.get("module"), obj.get("data"))
        {
            if data.get("skip_module") != Some(&Value::Bool(true)) && !out.contains(m) {
                out.push(m.clone());
            }
        }
        if let Some(Value::Object(children)) = obj.get("children") {
            for (_, child) in children_in_js_order(children) {
                walk(child, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(flow) = flow {
        walk(flow, &mut out);
    }
    out
}

/// One item of `GET .../callflows`.
pub fn listing_summary(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    for key in ["name", "type", "numbers", "patterns"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let featurecode = match doc.get("featurecode") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Value::Bool(false),
        Some(v) => v.clone(),
    };
    out.insert("featurecode".into(), featurecode);
    for key in ["owner_id", "group_id"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert("modules".into(), json!(flow_modules(doc.get("flow"))));
    out.insert(
        "flags".into(),
        doc.get("flags").cloned().unwrap_or_else(|| json!([])),
    );
    Value::Object(out)
}

/// Ids `GET` resolves into `metadata`: per node, `data.id` and top-level `data` keys containing
/// `_id` with a non-empty string value; branch names other than `_` of two bytes or more.
pub fn metadata_candidates(flow: Option<&Value>) -> Vec<String> {
    fn add(out: &mut Vec<String>, id: &str) {
        if !out.iter().any(|x| x == id) {
            out.push(id.to_string());
        }
    }
    fn walk(node: &Value, out: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        if let Some(Value::Object(data)) = obj.get("data") {
            for (k, v) in data {
                if k == "id" || k.contains("_id") {
                    if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                        add(out, s);
                    }
                }
            }
        }
        if let Some(Value::Object(children)) = obj.get("children") {
            for (name, child) in children_in_js_order(children) {
                if name != "_" && name.len() >= 2 {
                    add(out, name);
                }
                walk(child, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(flow) = flow {
        walk(flow, &mut out);
    }
    out
}

/// The ids of the documents a callflow's `flow` and `metaflows` name, each once, in the order
/// met: in every node's `data`, `id` and any `*_id` string, the `id` of each `endpoints` item,
/// and the `rules` list (temporal rule ids), then the node's children.
pub fn references(doc: &Map<String, Value>) -> Vec<String> {
    fn add(out: &mut Vec<String>, id: &str) {
        if !id.is_empty() && !out.iter().any(|x| x == id) {
            out.push(id.to_string());
        }
    }
    fn walk(node: &Value, out: &mut Vec<String>, depth: usize) {
        let Some(obj) = node.as_object() else { return };
        if depth > 256 {
            return;
        }
        if let Some(Value::Object(data)) = obj.get("data") {
            for (k, v) in data {
                match (k.as_str(), v) {
                    ("id", Value::String(s)) => add(out, s),
                    (k, Value::String(s)) if k.ends_with("_id") => add(out, s),
                    ("endpoints", Value::Array(items)) => {
                        for id in items.iter().filter_map(|i| i.get("id")?.as_str()) {
                            add(out, id);
                        }
                    }
                    ("rules", Value::Array(items)) => {
                        for id in items.iter().filter_map(Value::as_str) {
                            add(out, id);
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(Value::Object(children)) = obj.get("children") {
            for child in children.values() {
                walk(child, out, depth + 1);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(flow) = doc.get("flow") {
        walk(flow, &mut out, 0);
    }
    if let Some(Value::Object(metaflows)) = doc.get("metaflows") {
        for group in ["numbers", "patterns"] {
            if let Some(Value::Object(entries)) = metaflows.get(group) {
                for node in entries.values() {
                    walk(node, &mut out, 0);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_collect_every_named_document() {
        let doc = obj(json!({
            "flow": {"module": "ring_group", "data": {"endpoints": [{"id": "u1", "endpoint_type": "user"}, {"id": "d1"}]},
                "children": {"_": {"module": "temporal_route", "data": {"rules": ["r1", "r2"], "timezone": "UTC"},
                    "children": {"r1": {"module": "voicemail", "data": {"id": "vm1"}},
                                 "_": {"module": "play", "data": {"id": "m1", "owner_id": "u1"}}}}}},
            "metaflows": {"numbers": {"2": {"module": "transfer", "data": {"target": "x", "id": "cf9"}}}}
        }));
        assert_eq!(
            references(&doc),
            ["u1", "d1", "r1", "r2", "vm1", "m1", "cf9"]
        );
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn patch_null_removes_and_objects_merge() {
        let stored = obj(
            json!({"name": "a", "ringback": {"early": "x"}, "flow": {"module": "user", "data": {"id": "u", "timeout": 20}}}),
        );
        let patch = obj(json!({"name": "b", "ringback": null, "flow": {"data": {"timeout": 30}}}));
        let out = merge_patch(&stored, &patch);
        assert_eq!(
            Value::Object(out),
            json!({"name": "b", "flow": {"module": "user", "data": {"id": "u", "timeout": 30}}})
        );
    }

    #[test]
    fn patch_empty_object_replaces() {
        let out = merge_patch(&obj(json!({"a": {"b": 1}})), &obj(json!({"a": {}})));
        assert_eq!(out["a"], json!({}));
    }

    #[test]
    fn modules_are_preorder_deduplicated_and_skip_dataless_nodes() {
        let flow = json!({"module": "user", "data": {}, "children": {
            "b": {"module": "voicemail", "data": {}},
            "1": {"module": "play", "data": {"skip_module": true}, "children": {"_": {"module": "user", "data": {}}}},
            "0": {"module": "menu"}
        }});
        assert_eq!(flow_modules(Some(&flow)), vec!["user", "voicemail"]);
    }

    #[test]
    fn precheck_reports_missing_numbers_and_patterns() {
        let mut d = obj(json!({"name": "x"}));
        let e = precheck_numbers(&mut d, &[]).unwrap_err().to_json();
        assert_eq!(
            e["numbers"]["required"]["message"],
            "Callflows must be assigned at least one number or pattern"
        );
        let mut d = obj(json!({"numbers": "1000"}));
        let e = precheck_numbers(&mut d, &[]).unwrap_err().to_json();
        assert_eq!(
            e["numbers"]["type"]["message"],
            "Value did not match type: array"
        );
        let mut d = obj(json!({"numbers": [1000, ""]}));
        let e = precheck_numbers(&mut d, &[]).unwrap_err().to_json();
        assert!(e.get("numbers.0").unwrap().get("type").is_some());
        assert!(e.get("numbers.1").unwrap().get("minLength").is_some());
    }

    #[test]
    fn precheck_normalises_numbers() {
        let mut d = obj(json!({"numbers": ["4158867900", "1000"]}));
        precheck_numbers(&mut d, &[]).unwrap();
        assert_eq!(d["numbers"], json!(["+14158867900", "1000"]));
    }

    #[test]
    fn metadata_candidates_follow_kazoo() {
        let flow = json!({"module": "user", "data": {"id": "u1", "owner_id": "o1", "nested": {"id": "no"}, "vm_id": ""},
            "children": {"_": {"module": "voicemail", "data": {"id": "v1"}}, "rule1": {"module": "play", "data": {"media_id": "u1"}}}});
        assert_eq!(
            metadata_candidates(Some(&flow)),
            vec!["u1", "o1", "v1", "rule1"]
        );
    }

    #[test]
    fn revisions_count_up() {
        let d = obj(json!({"a": 1}));
        let r1 = next_revision(None, &d);
        assert!(r1.starts_with("1-"));
        assert!(next_revision(Some(&r1), &d).starts_with("2-"));
    }
}
