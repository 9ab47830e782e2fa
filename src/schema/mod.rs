//! Schema registry and the Kazoo validation dialect.
//!
//! Owns: loading schema documents (our embedded set, then `--schemas-dir` overrides), and
//! validating a JSON value against one of them the way Kazoo's validator does. Must not know
//! about HTTP or storage; callers turn [`SchemaErrors`] into responses.
//!
//! Kazoo validates with a fork of the Erlang `jesse` library plus its own extensions. That
//! dialect differs from plain draft-04 in ways clients depend on (defaults written into the
//! document while `properties` is evaluated, keywords beside `$ref` applied, strings coerced to
//! numbers, module-data checks that need the sibling `module` value). No Rust schema crate
//! implements those, so the evaluator in [`validator`] is ours; it is kept small and covers
//! exactly the keywords the schema set uses.

mod errors;
mod validator;

pub use errors::{SchemaError, SchemaErrors};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use include_dir::{include_dir, Dir};
use regex::Regex;
use serde_json::Value;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/schemas");

/// Hosts a client URL may never point at (Kazoo's default client blacklist).
const URL_HOST_BLACKLIST: &[&str] = &["localhost", "127.0.0.1", "0.0.0.0"];

/// Problems loading schema documents at startup.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading schema {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("schema {path} is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("schema {name} has a pattern that does not compile ({pattern}): {reason}")]
    Pattern {
        name: String,
        pattern: String,
        reason: String,
    },
}

/// Every schema document by id, plus the compiled regexes they use.
#[derive(Debug, Clone)]
pub struct SchemaSet {
    docs: Arc<HashMap<String, Arc<Value>>>,
    regexes: Arc<HashMap<String, Regex>>,
}

impl SchemaSet {
    /// The schema set compiled into the binary.
    pub fn embedded() -> Result<Self, LoadError> {
        let mut docs = HashMap::new();
        for file in EMBEDDED.files() {
            let path = file.path().display().to_string();
            if !path.ends_with(".json") {
                continue;
            }
            let doc: Value =
                serde_json::from_slice(file.contents()).map_err(|source| LoadError::Json {
                    path: path.clone(),
                    source,
                })?;
            insert_doc(&mut docs, &path, doc);
        }
        Self::from_docs(docs)
    }

    /// The embedded set, with every `*.json` file of `dir` added or replacing the schema of the
    /// same id (`_id`, else `id`, else the file stem), as Kazoo operators customise schemas.
    pub fn with_overrides(dir: &Path) -> Result<Self, LoadError> {
        let base = Self::embedded()?;
        let mut docs: HashMap<String, Value> = base
            .docs
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().clone()))
            .collect();
        let io = |source| LoadError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let path = entry.path();
            let name = path.display().to_string();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| LoadError::Io {
                path: name.clone(),
                source,
            })?;
            let doc: Value = serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
                path: name.clone(),
                source,
            })?;
            // Kazoo's examples directory also holds an index; only schema documents count.
            if doc.get("_id").is_none() && doc.get("id").is_none() && doc.get("$schema").is_none() {
                continue;
            }
            insert_doc(&mut docs, &name, doc);
        }
        Self::from_docs(docs)
    }

    fn from_docs(docs: HashMap<String, Value>) -> Result<Self, LoadError> {
        let mut regexes = HashMap::new();
        for (name, doc) in &docs {
            collect_patterns(doc, &mut |pattern| {
                if regexes.contains_key(pattern) {
                    return Ok(());
                }
                // Kazoo matches with Erlang's `re` (PCRE): translate to its meaning first.
                let fail = |reason: String| LoadError::Pattern {
                    name: name.clone(),
                    pattern: pattern.to_string(),
                    reason,
                };
                let translated =
                    crate::pcre::translate(pattern).map_err(|e| fail(e.to_string()))?;
                let re = Regex::new(&translated).map_err(|e| fail(e.to_string()))?;
                regexes.insert(pattern.to_string(), re);
                Ok(())
            })?;
        }
        Ok(Self {
            // Keys sorted once here: the validator applies keywords and properties in name
            // order (as jesse walks Kazoo's key-sorted files) without sorting per request.
            docs: Arc::new(
                docs.into_iter()
                    .map(|(k, mut v)| {
                        v.sort_all_objects();
                        (k, Arc::new(v))
                    })
                    .collect(),
            ),
            regexes: Arc::new(regexes),
        })
    }

    /// Sorted schema ids, as `GET /v2/schemas` lists them.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.docs.keys().cloned().collect();
        names.sort();
        names
    }

    /// One schema document.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.docs.get(name).map(|d| d.as_ref())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.docs.contains_key(name)
    }

    /// Validate `value` against schema `name`, writing defaults (and, when a second pass
    /// succeeds, type coercions) into it. `Err` holds every error Kazoo would report.
    pub fn validate(&self, name: &str, value: &mut Value) -> Result<(), SchemaErrors> {
        validator::validate(self, name, value)
    }

    fn regex(&self, pattern: &str) -> Option<&Regex> {
        self.regexes.get(pattern)
    }
}

fn insert_doc(docs: &mut HashMap<String, Value>, path: &str, doc: Value) {
    let id = doc
        .get("_id")
        .or_else(|| doc.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let file = path.rsplit('/').next().unwrap_or(path);
            file.trim_end_matches(".json").to_string()
        });
    docs.insert(id, doc);
}

/// Calls `f` with every `pattern` value and `patternProperties` key found in a schema.
fn collect_patterns(
    schema: &Value,
    f: &mut dyn FnMut(&str) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match key.as_str() {
                    "pattern" => {
                        if let Some(p) = value.as_str() {
                            f(p)?;
                        }
                    }
                    "patternProperties" => {
                        if let Some(props) = value.as_object() {
                            for (p, sub) in props {
                                f(p)?;
                                collect_patterns(sub, f)?;
                            }
                        }
                    }
                    "properties" | "definitions" => {
                        if let Some(props) = value.as_object() {
                            for sub in props.values() {
                                collect_patterns(sub, f)?;
                            }
                        }
                    }
                    "enum" | "default" | "required" => {}
                    _ => collect_patterns(value, f)?,
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| collect_patterns(v, f)),
        _ => Ok(()),
    }
}

/// Kazoo's client-URL rule: http or https, and a host outside the blacklist.
pub fn is_client_url(value: &str) -> bool {
    match url::Url::parse(value) {
        Ok(url) => {
            matches!(url.scheme(), "http" | "https")
                && url
                    .host_str()
                    .map(|h| !URL_HOST_BLACKLIST.contains(&h.trim_matches(['[', ']'])))
                    .unwrap_or(false)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedded_set_has_every_module_and_compiles() {
        let set = SchemaSet::embedded().expect("embedded schemas load");
        assert!(set.contains("callflows"));
        assert!(set.contains("callflows.user"));
        assert!(set.contains("metaflows.transfer"));
        assert!(set.names().len() > 100);
    }

    #[test]
    fn client_urls_follow_the_blacklist() {
        assert!(is_client_url("https://example.com/x"));
        assert!(!is_client_url("ftp://example.com/x"));
        assert!(!is_client_url("http://localhost/x"));
        assert!(!is_client_url("http://127.0.0.1:8080/x"));
        assert!(!is_client_url("not a url"));
    }

    #[test]
    fn user_defaults_are_written_into_module_data() {
        let set = SchemaSet::embedded().unwrap();
        let mut doc =
            json!({"numbers": ["1000"], "flow": {"module": "user", "data": {"id": "u1"}}});
        set.validate("callflows", &mut doc).unwrap();
        assert_eq!(doc["flow"]["data"]["timeout"], json!(20));
        assert_eq!(doc["flow"]["data"]["strategy"], json!("simultaneous"));
        assert_eq!(doc["patterns"], json!([]));
    }
}
