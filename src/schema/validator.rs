//! The evaluator: draft-04 keywords with jesse's behaviour and Kazoo's extensions.
//!
//! Rules that differ from a textbook draft-04 validator, all on purpose:
//! * keywords are applied in sorted name order (Kazoo's schema files are key-sorted and jesse
//!   walks them in file order), so `properties` writes defaults before `required` looks;
//! * keywords beside `$ref` are applied too;
//! * a missing property with a `default` gets the default, which is then validated;
//! * `kazoo-validation: true` on a property runs a check that may look at the parent object
//!   (a flow node's `data` is validated against the schema named after its `module`);
//! * when the only failures are `type` errors on `integer`/`number`/`boolean` fields whose
//!   values convert (`"20"` -> 20), the converted document is validated again and accepted.

use serde_json::{json, Map, Value};

use super::{is_client_url, SchemaError, SchemaErrors, SchemaSet};

/// Schema ids whose `kazoo-validation` property holds a client URL.
const URL_FIELDS: &[&str] = &[
    "callflows.pivot.voice_url",
    "callflows.record_call.url",
    "callflows.record_caller.url",
    "callflows.webhook.uri",
    "metaflows.pivot.voice_url",
    "metaflows.record_call.url",
];

/// Deepest `$ref` chain followed before giving up (a schema that refers to itself forever).
const MAX_DEPTH: usize = 256;

pub(super) fn validate(set: &SchemaSet, name: &str, value: &mut Value) -> Result<(), SchemaErrors> {
    let Some(schema) = set.docs.get(name).cloned() else {
        return Err(SchemaErrors::single(schema_not_found(name)));
    };
    let mut first = Walker::new(set);
    first.check(&schema, name, value, &mut Vec::new(), 0);
    if first.errors.is_empty() {
        return Ok(());
    }
    if !first.fixes.is_empty() {
        // The value as the first pass left it (with its defaults; the second pass would add
        // the same ones), converted where a type error can be fixed. Only a refused value is
        // copied.
        let mut candidate = value.clone();
        for (path, kind) in &first.fixes {
            if let Some(slot) = pointer_mut(&mut candidate, path) {
                if let Some(converted) = coerce(slot, kind) {
                    *slot = converted;
                }
            }
        }
        let mut second = Walker::new(set);
        second.check(&schema, name, &mut candidate, &mut Vec::new(), 0);
        if second.errors.is_empty() {
            *value = candidate;
            return Ok(());
        }
    }
    Err(SchemaErrors(first.errors))
}

fn schema_not_found(name: &str) -> SchemaError {
    SchemaError::at("schema", "schema", "schema not found").with("schema", json!(name))
}

struct Walker<'a> {
    set: &'a SchemaSet,
    errors: Vec<SchemaError>,
    /// Places where a `type` error could be fixed by conversion, with the wanted type.
    fixes: Vec<(Vec<String>, &'static str)>,
}

impl<'a> Walker<'a> {
    fn new(set: &'a SchemaSet) -> Self {
        Self {
            set,
            errors: Vec::new(),
            fixes: Vec::new(),
        }
    }

    fn error(&mut self, path: &[String], rule: &str, message: String, extra: &[(&str, Value)]) {
        let mut e = SchemaError::new(path.to_vec(), rule, message);
        for (k, v) in extra {
            e.detail.insert((*k).to_string(), v.clone());
        }
        self.errors.push(e);
    }

    /// Does `value` satisfy `schema` on its own? Used by `oneOf`/`anyOf`/`not`; the value is
    /// not changed and no error escapes.
    fn passes(
        &self,
        schema: &Value,
        schema_id: &str,
        value: &Value,
        path: &[String],
        depth: usize,
    ) -> bool {
        let mut sub = Walker::new(self.set);
        let mut copy = value.clone();
        sub.check(schema, schema_id, &mut copy, &mut path.to_vec(), depth + 1);
        sub.errors.is_empty()
    }

    fn check(
        &mut self,
        schema: &Value,
        schema_id: &str,
        value: &mut Value,
        path: &mut Vec<String>,
        depth: usize,
    ) {
        let Some(map) = schema.as_object() else {
            return;
        };
        if depth > MAX_DEPTH {
            self.error(
                path,
                "schema",
                "schema is invalid".into(),
                &[("schema", json!("reference loop"))],
            );
            return;
        }
        // Keys were sorted when the schema was loaded (`SchemaSet::from_docs`).
        for (key, kw) in map {
            match key.as_str() {
                "$ref" => self.check_ref(kw, value, path, depth),
                "type" => self.check_type(kw, value, path),
                "properties" => self.check_properties(kw, schema_id, value, path, depth),
                "patternProperties" => {
                    self.check_pattern_properties(kw, schema_id, value, path, depth)
                }
                "additionalProperties" => {
                    self.check_additional(map, kw, schema_id, value, path, depth)
                }
                "items" => self.check_items(map, kw, schema_id, value, path, depth),
                "required" => self.check_required(kw, value, path),
                "enum" => {
                    if let Some(list) = kw.as_array() {
                        if !list.contains(value) {
                            self.error(
                                path,
                                "enum",
                                "Value not found in enumerated list of values".into(),
                                &[("target", kw.clone()), ("value", value.clone())],
                            );
                        }
                    }
                }
                "minimum" | "maximum" => self.check_range(map, key, kw, value, path),
                "minLength" | "maxLength" => {
                    if let (Some(s), Some(n)) = (value.as_str(), kw.as_u64()) {
                        let len = s.chars().count() as u64;
                        if key == "minLength" && len < n {
                            let msg = format!("String must be at least {n} characters");
                            self.error(
                                path,
                                "minLength",
                                msg,
                                &[
                                    ("target", json!(n)),
                                    ("cause", value.clone()),
                                    ("value", value.clone()),
                                ],
                            );
                        } else if key == "maxLength" && len > n {
                            let msg = format!("String must not be more than {n} characters");
                            self.error(
                                path,
                                "maxLength",
                                msg,
                                &[
                                    ("target", json!(n)),
                                    ("cause", value.clone()),
                                    ("value", value.clone()),
                                ],
                            );
                        }
                    }
                }
                "minItems" | "maxItems" => {
                    if let (Some(items), Some(n)) = (value.as_array(), kw.as_u64()) {
                        let len = items.len() as u64;
                        if key == "minItems" && len < n {
                            let msg = format!("The list must have at least {n} items");
                            self.error(
                                path,
                                "minItems",
                                msg,
                                &[("target", json!(n)), ("value", value.clone())],
                            );
                        } else if key == "maxItems" && len > n {
                            let msg = format!("The list is more than {n} items");
                            self.error(
                                path,
                                "maxItems",
                                msg,
                                &[("target", json!(n)), ("value", value.clone())],
                            );
                        }
                    }
                }
                "minProperties" | "maxProperties" => {
                    if let (Some(obj), Some(n)) = (value.as_object(), kw.as_u64()) {
                        let len = obj.len() as u64;
                        if key == "minProperties" && len < n {
                            let msg = format!("The object must have at least {n} keys");
                            self.error(
                                path,
                                "minProperties",
                                msg,
                                &[("target", json!(n)), ("value", value.clone())],
                            );
                        } else if key == "maxProperties" && len > n {
                            self.error(
                                path,
                                "wrong_max_properties",
                                "failed to validate".into(),
                                &[("value", value.clone())],
                            );
                        }
                    }
                }
                "uniqueItems" => {
                    if let (Some(items), Some(true)) = (value.as_array(), kw.as_bool()) {
                        let duplicated = has_duplicates(items);
                        if duplicated {
                            self.error(
                                path,
                                "uniqueItems",
                                "List of items is not unique".into(),
                                &[("value", value.clone())],
                            );
                        }
                    }
                }
                "pattern" => {
                    if let (Some(s), Some(p)) = (value.as_str(), kw.as_str()) {
                        let matched = self.set.regex(p).map(|re| re.is_match(s)).unwrap_or(true);
                        if !matched {
                            let msg = format!("Failed to match pattern '{p}'");
                            self.error(
                                path,
                                "pattern",
                                msg,
                                &[("target", kw.clone()), ("value", value.clone())],
                            );
                        }
                    }
                }
                "format" => {
                    if let (Some(s), Some(f)) = (value.as_str(), kw.as_str()) {
                        if !format_ok(f, s) {
                            self.error(
                                path,
                                "wrong_format",
                                "Field is not in the correct format".into(),
                                &[("value", value.clone()), ("format", kw.clone())],
                            );
                        }
                    }
                }
                "oneOf" => {
                    if let Some(branches) = kw.as_array() {
                        let valid = branches
                            .iter()
                            .filter(|b| self.passes(b, schema_id, value, path, depth))
                            .count();
                        if valid != 1 {
                            self.error(
                                path,
                                "not_one_schema_valid",
                                "failed to validate".into(),
                                &[("value", value.clone())],
                            );
                        }
                    }
                }
                "anyOf" => {
                    if let Some(branches) = kw.as_array() {
                        if !branches
                            .iter()
                            .any(|b| self.passes(b, schema_id, value, path, depth))
                        {
                            self.error(
                                path,
                                "any_schemas_not_valid",
                                "failed to validate".into(),
                                &[("value", value.clone())],
                            );
                        }
                    }
                }
                "allOf" => {
                    if let Some(branches) = kw.as_array() {
                        if !branches
                            .iter()
                            .all(|b| self.passes(b, schema_id, value, path, depth))
                        {
                            self.error(
                                path,
                                "all_schemas_not_valid",
                                "failed to validate".into(),
                                &[("value", value.clone())],
                            );
                        }
                    }
                }
                "not" if self.passes(kw, schema_id, value, path, depth) => {
                    self.error(
                        path,
                        "not_schema_valid",
                        "failed to validate".into(),
                        &[("value", value.clone())],
                    );
                }
                "dependencies" => self.check_dependencies(kw, schema_id, value, path, depth),
                "multipleOf" | "divisibleBy" => {
                    if let (Some(v), Some(d)) = (value.as_f64(), kw.as_f64()) {
                        if d != 0.0 && (v / d).fract() != 0.0 {
                            let msg = format!("Value not divisible by {kw}");
                            self.error(
                                path,
                                "divisibleBy",
                                msg,
                                &[("target", kw.clone()), ("value", value.clone())],
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn check_ref(&mut self, kw: &Value, value: &mut Value, path: &mut Vec<String>, depth: usize) {
        let Some(reference) = kw.as_str() else { return };
        // Kazoo refers to whole documents by bare id; a trailing `#` means the same.
        let name = reference.trim_end_matches('#');
        match self.set.docs.get(name).cloned() {
            Some(target) => self.check(&target, name, value, path, depth + 1),
            None => self.errors.push(schema_not_found(name)),
        }
    }

    fn check_type(&mut self, kw: &Value, value: &Value, path: &[String]) {
        let names: Vec<&str> = match kw {
            Value::String(s) => vec![s.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => return,
        };
        if names.is_empty() || names.iter().any(|t| type_matches(t, value)) {
            return;
        }
        if let Value::String(single) = kw {
            let fixable = match single.as_str() {
                "integer" => Some("integer"),
                "number" => Some("number"),
                "boolean" => Some("boolean"),
                _ => None,
            };
            if let Some(kind) = fixable {
                if coerce(value, kind).is_some() {
                    self.fixes.push((path.to_vec(), kind));
                }
            }
        }
        let msg = format!("Value did not match type(s): {}", names.join(", "));
        let target = match kw {
            Value::String(_) => kw.clone(),
            _ => json!(names.join(", ")),
        };
        self.error(
            path,
            "type",
            msg,
            &[("target", target), ("value", value.clone())],
        );
    }

    fn check_properties(
        &mut self,
        kw: &Value,
        schema_id: &str,
        value: &mut Value,
        path: &mut Vec<String>,
        depth: usize,
    ) {
        let (Some(props), Some(obj)) = (kw.as_object(), value.as_object_mut()) else {
            return;
        };
        for (name, sub) in props {
            if !obj.contains_key(name.as_str()) {
                match sub.get("default") {
                    Some(default) => {
                        obj.insert(name.clone(), default.clone());
                    }
                    None => {
                        // Draft-03 style `"required": true` inside the property (Kazoo's
                        // envelope schema still uses it).
                        if sub.get("required") == Some(&Value::Bool(true)) {
                            path.push(name.clone());
                            self.error(
                                path,
                                "required",
                                "Field is required but missing".into(),
                                &[("value", json!(name))],
                            );
                            path.pop();
                        }
                        continue;
                    }
                }
            }
            path.push(name.clone());
            if let Some(slot) = obj.get_mut(name.as_str()) {
                self.check(sub, schema_id, slot, path, depth);
            }
            if sub.get("kazoo-validation") == Some(&Value::Bool(true)) {
                self.kazoo_extension(schema_id, name, obj, path, depth);
            }
            path.pop();
        }
    }

    /// `kazoo-validation`: module existence, module data, client URLs.
    fn kazoo_extension(
        &mut self,
        schema_id: &str,
        prop: &str,
        parent: &mut Map<String, Value>,
        path: &mut Vec<String>,
        depth: usize,
    ) {
        let key = format!("{schema_id}.{prop}");
        let (prefix, what) = match schema_id {
            "callflows.action" => ("callflows.", "callflow"),
            "metaflow" => ("metaflows.", "metaflow"),
            _ => {
                if URL_FIELDS.contains(&key.as_str()) {
                    if let Some(url) = parent.get(prop).and_then(Value::as_str) {
                        if !is_client_url(url) {
                            self.error(
                                path,
                                "error",
                                "invalid client URL".into(),
                                &[("value", json!(url))],
                            );
                        }
                    }
                }
                return;
            }
        };
        match prop {
            "module" => {
                if let Some(module) = parent.get("module").and_then(Value::as_str) {
                    if !self.set.contains(&format!("{prefix}{module}")) {
                        let msg = format!("unable to find {what} schema for module {module}");
                        self.error(path, "error", msg, &[("value", json!(module))]);
                    }
                }
            }
            "data" => {
                let Some(module) = parent.get("module").and_then(Value::as_str) else {
                    return;
                };
                let target_id = format!("{prefix}{module}");
                match self.set.docs.get(&target_id).cloned() {
                    Some(target) => {
                        if let Some(data) = parent.get_mut("data") {
                            self.check(&target, &target_id, data, path, depth + 1);
                        }
                    }
                    None => self.errors.push(schema_not_found(&target_id)),
                }
            }
            _ => {}
        }
    }

    fn check_pattern_properties(
        &mut self,
        kw: &Value,
        schema_id: &str,
        value: &mut Value,
        path: &mut Vec<String>,
        depth: usize,
    ) {
        let (Some(patterns), Some(obj)) = (kw.as_object(), value.as_object_mut()) else {
            return;
        };
        for (pattern, sub) in patterns {
            let Some(re) = self.set.regex(pattern) else {
                continue;
            };
            let keys: Vec<String> = obj.keys().filter(|k| re.is_match(k)).cloned().collect();
            for key in keys {
                path.push(key.clone());
                if let Some(slot) = obj.get_mut(&key) {
                    self.check(sub, schema_id, slot, path, depth);
                }
                path.pop();
            }
        }
    }

    fn check_additional(
        &mut self,
        schema: &Map<String, Value>,
        kw: &Value,
        schema_id: &str,
        value: &mut Value,
        path: &mut Vec<String>,
        depth: usize,
    ) {
        let Some(obj) = value.as_object_mut() else {
            return;
        };
        let declared = schema.get("properties").and_then(Value::as_object);
        let patterns = schema.get("patternProperties").and_then(Value::as_object);
        let extras: Vec<String> = obj
            .keys()
            .filter(|k| {
                !declared
                    .map(|d| d.contains_key(k.as_str()))
                    .unwrap_or(false)
            })
            .filter(|k| {
                !patterns
                    .map(|p| {
                        p.keys().any(|pat| {
                            self.set
                                .regex(pat)
                                .map(|re| re.is_match(k))
                                .unwrap_or(false)
                        })
                    })
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        if extras.is_empty() {
            return;
        }
        match kw {
            Value::Bool(false) => {
                for key in extras {
                    let extra = obj.get(&key).cloned().unwrap_or(Value::Null);
                    path.push(key);
                    self.error(
                        path,
                        "additionalProperties",
                        "Strict checking of data is enabled; only include schema-defined properties".into(),
                        &[("value", extra)],
                    );
                    path.pop();
                }
            }
            Value::Object(_) => {
                for key in extras {
                    path.push(key.clone());
                    if let Some(slot) = obj.get_mut(&key) {
                        self.check(kw, schema_id, slot, path, depth);
                    }
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn check_items(
        &mut self,
        schema: &Map<String, Value>,
        kw: &Value,
        schema_id: &str,
        value: &mut Value,
        path: &mut Vec<String>,
        depth: usize,
    ) {
        let Some(items) = value.as_array_mut() else {
            return;
        };
        match kw {
            Value::Object(_) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(i.to_string());
                    self.check(kw, schema_id, item, path, depth);
                    path.pop();
                }
            }
            Value::Array(tuple) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(i.to_string());
                    match tuple.get(i) {
                        Some(sub) => self.check(sub, schema_id, item, path, depth),
                        None => match schema.get("additionalItems") {
                            Some(Value::Bool(false)) => self.error(
                                path,
                                "additionalItems",
                                "Strict checking of data is enabled; only include schema-defined items".into(),
                                &[("value", item.clone())],
                            ),
                            Some(extra @ Value::Object(_)) => self.check(extra, schema_id, item, path, depth),
                            _ => {}
                        },
                    }
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn check_required(&mut self, kw: &Value, value: &Value, path: &mut Vec<String>) {
        let (Some(names), Some(obj)) = (kw.as_array(), value.as_object()) else {
            return;
        };
        for name in names.iter().filter_map(Value::as_str) {
            if !obj.contains_key(name) {
                path.push(name.to_string());
                self.error(
                    path,
                    "required",
                    "Field is required but missing".into(),
                    &[("value", json!(name))],
                );
                path.pop();
            }
        }
    }

    fn check_range(
        &mut self,
        schema: &Map<String, Value>,
        key: &str,
        kw: &Value,
        value: &Value,
        path: &[String],
    ) {
        let (Some(v), Some(limit)) = (value.as_f64(), kw.as_f64()) else {
            return;
        };
        if !value.is_number() {
            return;
        }
        if key == "minimum" {
            let exclusive = schema.get("exclusiveMinimum") == Some(&Value::Bool(true));
            if v < limit || (exclusive && v == limit) {
                let msg = format!("Value must be at least {kw}");
                self.error(
                    path,
                    "minimum",
                    msg,
                    &[("target", kw.clone()), ("value", value.clone())],
                );
            }
        } else {
            let exclusive = schema.get("exclusiveMaximum") == Some(&Value::Bool(true));
            if v > limit || (exclusive && v == limit) {
                let msg = format!("Value must be at most {kw}");
                self.error(
                    path,
                    "maximum",
                    msg,
                    &[("target", kw.clone()), ("value", value.clone())],
                );
            }
        }
    }

    fn check_dependencies(
        &mut self,
        kw: &Value,
        schema_id: &str,
        value: &mut Value,
        path: &mut [String],
        depth: usize,
    ) {
        let Some(deps) = kw.as_object() else { return };
        for (prop, dep) in deps {
            let present = value
                .as_object()
                .map(|o| o.contains_key(prop))
                .unwrap_or(false);
            if !present {
                continue;
            }
            let ok = match dep {
                Value::Array(names) => {
                    let obj = value.as_object();
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .all(|n| obj.map(|o| o.contains_key(n)).unwrap_or(false))
                }
                Value::String(n) => value
                    .as_object()
                    .map(|o| o.contains_key(n))
                    .unwrap_or(false),
                Value::Object(_) => self.passes(dep, schema_id, value, path, depth),
                _ => true,
            };
            if !ok {
                self.error(
                    path,
                    "dependencies",
                    "Dependencies were not validated".into(),
                    &[("value", value.clone())],
                );
            }
        }
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        "any" => true,
        _ => false,
    }
}

/// Kazoo's non-strict conversions; `None` when the value does not convert.
fn coerce(value: &Value, kind: &str) -> Option<Value> {
    match (kind, value) {
        ("integer", Value::String(s)) => {
            let s = s.trim();
            s.parse::<i64>().ok().map(Value::from).or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| Value::from(f.round() as i64))
            })
        }
        ("integer", Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| Value::from(f.round() as i64)),
        ("number", Value::String(s)) => {
            let s = s.trim();
            s.parse::<i64>().ok().map(Value::from).or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            })
        }
        ("boolean", Value::String(s)) if s == "true" => Some(Value::Bool(true)),
        ("boolean", Value::String(s)) if s == "false" => Some(Value::Bool(false)),
        _ => None,
    }
}

fn pointer_mut<'v>(mut value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    for seg in path {
        value = match value {
            Value::Object(map) => map.get_mut(seg)?,
            Value::Array(items) => items.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The formats jesse checks; others (`uri`, `hostname`, ...) always pass, as in Kazoo.
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "email" => {
            let mut parts = s.split('@');
            matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty())
        }
        "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> SchemaSet {
        SchemaSet::embedded().unwrap()
    }

    fn errors(name: &str, mut doc: Value) -> Value {
        set().validate(name, &mut doc).unwrap_err().to_json()
    }

    #[test]
    fn patterns_are_read_as_pcre_reads_them() {
        let set = set();
        let conference = |n: &str| json!({"conference_numbers": [n]});
        // `$` also matches before a final newline; `\d` and `[0-9]` are ASCII.
        assert!(set
            .validate("conferences", &mut conference("123\n"))
            .is_ok());
        assert!(set
            .validate("conferences", &mut conference("123\n\n"))
            .is_err());
        assert!(set.validate("conferences", &mut conference("١٢٣")).is_err());
        let account = |realm: &str| json!({"name": "a", "realm": realm});
        assert!(set
            .validate("accounts", &mut account("sip.example.com"))
            .is_ok());
        // `\w` with Erlang's Latin-1 tables: Latin-1 letters pass, others do not.
        assert!(set
            .validate("accounts", &mut account("sïp.example.com"))
            .is_ok());
        assert!(set
            .validate("accounts", &mut account("sαp.example.com"))
            .is_err());
        // `pattern` searches (need not match the whole string), as `re:run` does.
        let pivot = |url: &str| json!({"voice_url": "http://v.test/", "cdr_url": url});
        assert!(set
            .validate("callflows.pivot", &mut pivot("https://x.test/"))
            .is_ok());
        assert!(set
            .validate("callflows.pivot", &mut pivot(" https://x"))
            .is_err());
        let e = errors("conferences", conference("١٢٣"));
        assert!(e.to_string().contains("Failed to match pattern"), "{e}");
    }

    #[test]
    fn unknown_module_reports_the_module_and_the_missing_schema() {
        let e = errors("callflows", json!({"flow": {"module": "nope", "data": {}}}));
        assert_eq!(
            e["flow.module"]["error"]["message"],
            "unable to find callflow schema for module nope"
        );
        assert_eq!(e["schema"]["schema"]["message"], "schema not found");
    }

    #[test]
    fn nested_module_data_errors_carry_the_full_path() {
        let e = errors(
            "callflows",
            json!({"flow": {"module": "user", "data": {}, "children": {"_": {"module": "ring_group"}}}}),
        );
        assert!(e.get("flow.children._.data.endpoints").is_some(), "{e}");
    }

    #[test]
    fn strings_become_integers_when_the_second_pass_succeeds() {
        let mut doc = json!({"flow": {"module": "user", "data": {"timeout": "30"}}});
        set().validate("callflows", &mut doc).unwrap();
        assert_eq!(doc["flow"]["data"]["timeout"], json!(30));
    }

    #[test]
    fn unconvertible_values_keep_their_type_error() {
        let e = errors(
            "callflows",
            json!({"flow": {"module": "user", "data": {"timeout": "abc"}}}),
        );
        assert_eq!(
            e["flow.data.timeout"]["type"]["message"],
            "Value did not match type(s): integer"
        );
        assert_eq!(e["flow.data.timeout"]["type"]["value"], "abc");
    }

    #[test]
    fn ref_siblings_disambiguate_one_of() {
        let mut doc = json!({"macros": [{"macro": "tone", "frequencies": [400]}, {"macro": "play", "id": "x"}]});
        set().validate("callflows.audio_macro", &mut doc).unwrap();
    }

    #[test]
    fn client_url_extension_runs_inside_module_data() {
        let e = errors(
            "callflows",
            json!({"flow": {"module": "pivot", "data": {"voice_url": "http://localhost/x"}}}),
        );
        assert_eq!(
            e["flow.data.voice_url"]["error"]["message"],
            "invalid client URL"
        );
    }

    #[test]
    fn metaflow_modules_use_their_own_namespace() {
        let e = errors(
            "callflows",
            json!({"metaflow": {"numbers": {"2": {"module": "bogus"}}}}),
        );
        assert_eq!(
            e["metaflow.numbers.2.module"]["error"]["message"],
            "unable to find metaflow schema for module bogus"
        );
    }

    #[test]
    fn additional_properties_false_rejects_unknown_keys() {
        let e = errors("metaflows", json!({"numbers": {"5#": {"module": "hold"}}}));
        assert!(
            e.get("numbers.5#")
                .and_then(|v| v.get("additionalProperties"))
                .is_some(),
            "{e}"
        );
    }

    #[test]
    fn email_format_follows_jesse() {
        assert!(format_ok("email", "a@b"));
        assert!(!format_ok("email", "user"));
        assert!(!format_ok("email", "a@b@c"));
        assert!(format_ok("uri", "anything"));
    }
}

/// Whether two items of a list are equal (`uniqueItems`), in linear time: each item is hashed
/// by a canonical text (object keys sorted), so 50,000 numbers cost one pass, not a billion
/// comparisons. Equality is JSON value equality, as before.
pub(crate) fn has_duplicates(items: &[Value]) -> bool {
    if items.iter().all(Value::is_string) {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        return !items
            .iter()
            .filter_map(Value::as_str)
            .all(|s| seen.insert(s));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items.iter().any(|item| {
        let mut text = String::new();
        canonical(item, &mut text);
        !seen.insert(text)
    })
}

/// A text equal for equal JSON values: object keys sorted, everything else as serde_json
/// writes it.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(k) {
                    canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod unique_items_tests {
    use super::has_duplicates;
    use serde_json::json;

    #[test]
    fn duplicates_are_found_by_value_whatever_the_key_order() {
        assert!(!has_duplicates(json!(["1", "2", "3"]).as_array().unwrap()));
        assert!(has_duplicates(json!(["1", "2", "1"]).as_array().unwrap()));
        assert!(has_duplicates(
            json!([{"a": 1, "b": [1, {"c": 2, "d": 3}]}, {"b": [1, {"d": 3, "c": 2}], "a": 1}])
                .as_array()
                .unwrap()
        ));
        assert!(!has_duplicates(
            json!([1, "1", [1], {"1": 1}]).as_array().unwrap()
        ));
    }

    #[test]
    fn fifty_thousand_numbers_take_one_pass() {
        let items: Vec<_> = (0..50_000).map(|i| json!(format!("+1415{i:07}"))).collect();
        assert!(!has_duplicates(&items));
    }
}
