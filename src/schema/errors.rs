//! Validation errors in Kazoo's shape: `{"<dotted.path>": {"<rule>": {message, target, value, cause}}}`.

use serde_json::{Map, Value};

/// One failed rule at one place in the document.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError {
    /// Path segments from the document root; array indexes are decimal strings.
    pub path: Vec<String>,
    /// Kazoo rule name (`type`, `required`, `maxLength`, `error`, `unique`, ...).
    pub rule: String,
    /// The detail object (`message` and, depending on the rule, `target`, `value`, `cause`).
    pub detail: Map<String, Value>,
}

impl SchemaError {
    pub fn new(path: Vec<String>, rule: &str, message: impl Into<String>) -> Self {
        let mut detail = Map::new();
        detail.insert("message".into(), Value::String(message.into()));
        Self {
            path,
            rule: rule.to_string(),
            detail,
        }
    }

    /// A single-segment path, for checks on top-level fields.
    pub fn at(field: &str, rule: &str, message: impl Into<String>) -> Self {
        Self::new(vec![field.to_string()], rule, message)
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.detail.insert(key.to_string(), value);
        self
    }

    /// The dotted key Kazoo uses: segments joined with `.`, a literal `.` written `%2E`.
    pub fn key(&self) -> String {
        self.path
            .iter()
            .map(|s| s.replace('.', "%2E"))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Every error of one validation run, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemaErrors(pub Vec<SchemaError>);

impl SchemaErrors {
    pub fn single(error: SchemaError) -> Self {
        Self(vec![error])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn push(&mut self, error: SchemaError) {
        self.0.push(error);
    }

    pub fn extend(&mut self, other: SchemaErrors) {
        self.0.extend(other.0);
    }

    /// Kazoo's error map. Errors merge by dotted key only, so one rule per key survives: the
    /// first one found (jesse collects errors newest-first and Kazoo's merge lets the later
    /// list entry win, which is the earliest found).
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for e in &self.0 {
            let key = e.key();
            if out.contains_key(&key) {
                continue;
            }
            let mut rule = Map::new();
            rule.insert(e.rule.clone(), Value::Object(e.detail.clone()));
            out.insert(key, Value::Object(rule));
        }
        Value::Object(out)
    }
}

impl std::fmt::Display for SchemaErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl std::error::Error for SchemaErrors {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dots_inside_segments_are_escaped() {
        let e = SchemaError::new(vec!["a.b".into(), "c".into()], "type", "x");
        assert_eq!(e.key(), "a%2Eb.c");
    }

    #[test]
    fn first_error_on_the_same_key_wins() {
        let errs = SchemaErrors(vec![
            SchemaError::at("numbers", "required", "first"),
            SchemaError::at("numbers", "type", "second"),
        ]);
        assert_eq!(
            errs.to_json(),
            json!({"numbers": {"required": {"message": "first"}}})
        );
    }
}
