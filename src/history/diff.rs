//! Differences between two revisions of a document: an RFC 6902 JSON Patch (what a program
//! applies), and a unified diff of the pretty-printed documents (what a person reads).
//!
//! Owns: both renderings and [`apply`], the patch's reference reader (the tests check that
//! applying a diff to the older document gives the newer one). Pure: documents in, text or
//! JSON out.

use serde_json::{json, Map, Value};

/// The JSON Patch that turns `from` into `to`: `add`, `remove` and `replace` operations, in
/// the order they must be applied. Objects are compared key by key; arrays keep their common
/// head and tail and patch only the middle, so one element inserted or removed is one
/// operation.
pub fn json_patch(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    diff_into("", from, to, &mut ops);
    ops
}

/// RFC 6901: `~` is written `~0` and `/` is written `~1` in a pointer token.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn diff_into(path: &str, from: &Value, to: &Value, ops: &mut Vec<Value>) {
    if from == to {
        return;
    }
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                ops.push(json!({"op": "remove", "path": format!("{path}/{}", token(key))}));
            }
            for (key, new) in b {
                let at = format!("{path}/{}", token(key));
                match a.get(key) {
                    Some(old) => diff_into(&at, old, new, ops),
                    None => ops.push(json!({"op": "add", "path": at, "value": new})),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            let room = a.len().min(b.len()) - head;
            let tail = a
                .iter()
                .rev()
                .zip(b.iter().rev())
                .take(room)
                .take_while(|(x, y)| x == y)
                .count();
            let (old, new) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
            let common = old.len().min(new.len());
            for i in 0..common {
                diff_into(&format!("{path}/{}", head + i), &old[i], &new[i], ops);
            }
            // Surplus old elements, from the last so the earlier indices stay put.
            for i in (common..old.len()).rev() {
                ops.push(json!({"op": "remove", "path": format!("{path}/{}", head + i)}));
            }
            for (i, value) in new.iter().enumerate().skip(common) {
                ops.push(
                    json!({"op": "add", "path": format!("{path}/{}", head + i), "value": value}),
                );
            }
        }
        _ => ops.push(json!({"op": "replace", "path": path, "value": to})),
    }
}

/// Why a patch cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    #[error("operation {0} is not an object with op and path")]
    Malformed(usize),
    #[error("operation {0}: {1} is not supported")]
    Unsupported(usize, String),
    #[error("operation {0}: no target at {1}")]
    NoTarget(usize, String),
}

/// Applies a JSON Patch of `add`, `remove`, `replace` and `test` operations (RFC 6902).
pub fn apply(doc: &Value, patch: &[Value]) -> Result<Value, PatchError> {
    let mut doc = doc.clone();
    for (i, op) in patch.iter().enumerate() {
        let (Some(name), Some(path)) = (
            op.get("op").and_then(Value::as_str),
            op.get("path").and_then(Value::as_str),
        ) else {
            return Err(PatchError::Malformed(i));
        };
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        let missing = || PatchError::NoTarget(i, path.to_string());
        if path.is_empty() {
            match name {
                "add" | "replace" => doc = value,
                "test" if doc == value => {}
                "test" => return Err(missing()),
                other => return Err(PatchError::Unsupported(i, other.to_string())),
            }
            continue;
        }
        if name == "test" {
            if doc.pointer(path) != Some(&value) {
                return Err(missing());
            }
            continue;
        }
        let (parent_path, last) = path.rsplit_once('/').ok_or_else(missing)?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let parent = doc.pointer_mut(parent_path).ok_or_else(missing)?;
        match (name, parent) {
            ("add", Value::Object(m)) | ("replace", Value::Object(m)) => {
                if name == "replace" && !m.contains_key(&last) {
                    return Err(missing());
                }
                m.insert(last, value);
            }
            ("remove", Value::Object(m)) => {
                m.remove(&last).ok_or_else(missing)?;
            }
            ("add", Value::Array(a)) => {
                let at = if last == "-" {
                    a.len()
                } else {
                    last.parse::<usize>().map_err(|_| missing())?
                };
                if at > a.len() {
                    return Err(missing());
                }
                a.insert(at, value);
            }
            ("replace", Value::Array(a)) => {
                let at = last.parse::<usize>().map_err(|_| missing())?;
                *a.get_mut(at).ok_or_else(missing)? = value;
            }
            ("remove", Value::Array(a)) => {
                let at = last.parse::<usize>().map_err(|_| missing())?;
                if at >= a.len() {
                    return Err(missing());
                }
                a.remove(at);
            }
            ("add" | "replace" | "remove", _) => return Err(missing()),
            (other, _) => return Err(PatchError::Unsupported(i, other.to_string())),
        }
    }
    Ok(doc)
}

/// The value with every object's keys sorted (a stable layout for the text diff).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let out: Map<String, Value> = keys
                .into_iter()
                .map(|k| (k.clone(), sorted(&m[k])))
                .collect();
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Lines of context around each change in the text diff.
const CONTEXT: usize = 3;
/// Above this many cells the line matcher stops looking for common lines in the changed
/// middle and shows it as removed then added (still correct, only longer).
const MAX_CELLS: usize = 4_000_000;

/// A unified diff (`---`/`+++` headers, `@@` hunks with three lines of context) of the two
/// documents pretty-printed with sorted keys. Empty when they are equal.
pub fn text(from: &Value, to: &Value, from_label: &str, to_label: &str) -> String {
    let render = |v: &Value| serde_json::to_string_pretty(&sorted(v)).unwrap_or_default();
    let (a_text, b_text) = (render(from), render(to));
    let a: Vec<&str> = a_text.lines().collect();
    let b: Vec<&str> = b_text.lines().collect();
    let script = edit_script(&a, &b);
    if script.iter().all(|(tag, _)| *tag == ' ') {
        return String::new();
    }
    let mut out = format!("--- {from_label}\n+++ {to_label}\n");
    // Hunks: runs of changes, each with up to CONTEXT unchanged lines around it, merged
    // when their context touches.
    let changed: Vec<usize> = (0..script.len()).filter(|&i| script[i].0 != ' ').collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i];
        while i < changed.len() && changed[i] <= end + 2 * CONTEXT + 1 {
            end = changed[i];
            i += 1;
        }
        let end = (end + CONTEXT + 1).min(script.len());
        // Line numbers (1-based) where the hunk starts in each document.
        let a_start = script[..start].iter().filter(|(t, _)| *t != '+').count();
        let b_start = script[..start].iter().filter(|(t, _)| *t != '-').count();
        let hunk = &script[start..end];
        let a_len = hunk.iter().filter(|(t, _)| *t != '+').count();
        let b_len = hunk.iter().filter(|(t, _)| *t != '-').count();
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n",
            a_start + usize::from(a_len > 0),
            b_start + usize::from(b_len > 0)
        ));
        for (tag, line) in hunk {
            out.push(*tag);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The lines of `a` and `b` as kept (' '), removed ('-') and added ('+'), by longest common
/// subsequence over the part between their common head and tail.
fn edit_script<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(char, &'a str)> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let room = a.len().min(b.len()) - head;
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(room)
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut script: Vec<(char, &str)> = a[..head].iter().map(|l| (' ', *l)).collect();
    if am.len().saturating_mul(bm.len()) > MAX_CELLS {
        script.extend(am.iter().map(|l| ('-', *l)));
        script.extend(bm.iter().map(|l| ('+', *l)));
    } else {
        // lcs[i][j]: the longest common subsequence of am[i..] and bm[j..].
        let (n, m) = (am.len(), bm.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if am[i] == bm[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                script.push((' ', am[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
                // Removals before additions, as `diff -u` shows a changed line.
                script.push(('-', am[i]));
                i += 1;
            } else {
                script.push(('+', bm[j]));
                j += 1;
            }
        }
    }
    script.extend(a[a.len() - tail..].iter().map(|l| (' ', *l)));
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_patch_names_each_change_once() {
        let from = json!({"name": "Main", "numbers": ["1000", "1001"], "flow": {"module": "user"}});
        let to = json!({"name": "Main line", "numbers": ["1000", "1002", "1001"], "flow": {}});
        let patch = json_patch(&from, &to);
        assert_eq!(
            patch,
            vec![
                json!({"op": "replace", "path": "/name", "value": "Main line"}),
                json!({"op": "add", "path": "/numbers/1", "value": "1002"}),
                json!({"op": "remove", "path": "/flow/module"}),
            ]
        );
        assert_eq!(apply(&from, &patch).unwrap(), to);
    }

    #[test]
    fn keys_with_slashes_and_tildes_are_escaped() {
        let from = json!({"a/b": 1, "c~d": 2});
        let to = json!({"a/b": 2});
        let patch = json_patch(&from, &to);
        assert_eq!(patch[0]["path"], "/c~0d");
        assert_eq!(patch[1]["path"], "/a~1b");
        assert_eq!(apply(&from, &patch).unwrap(), to);
    }

    #[test]
    fn the_text_form_is_a_unified_diff() {
        let from = json!({"name": "Main", "numbers": ["1000"]});
        let to = json!({"name": "Main line", "numbers": ["1000", "1001"]});
        let t = text(&from, &to, "revision 1", "revision 2");
        assert!(t.starts_with("--- revision 1\n+++ revision 2\n@@ "), "{t}");
        assert!(
            t.contains("-  \"name\": \"Main\",\n+  \"name\": \"Main line\",\n"),
            "{t}"
        );
        assert!(t.contains("+    \"1001\"\n"), "{t}");
        assert_eq!(text(&from, &from, "a", "b"), "");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..5).prop_map(|n| json!(n)),
            "[a-c/~]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-c/~]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn applying_the_patch_to_the_old_document_gives_the_new(a in json_value(), b in json_value()) {
            let patch = json_patch(&a, &b);
            prop_assert_eq!(apply(&a, &patch).unwrap(), b.clone());
            prop_assert_eq!(json_patch(&a, &a).len(), 0);
        }

        #[test]
        fn the_text_diff_rebuilds_both_sides(a in json_value(), b in json_value()) {
            let render = |v: &Value| serde_json::to_string_pretty(&sorted(v)).unwrap();
            let (at, bt) = (render(&a), render(&b));
            let (al, bl): (Vec<&str>, Vec<&str>) = (at.lines().collect(), bt.lines().collect());
            let script = edit_script(&al, &bl);
            let old: Vec<&str> = script.iter().filter(|(t, _)| *t != '+').map(|(_, l)| *l).collect();
            let new: Vec<&str> = script.iter().filter(|(t, _)| *t != '-').map(|(_, l)| *l).collect();
            prop_assert_eq!(old, al);
            prop_assert_eq!(new, bl);
        }
    }
}
