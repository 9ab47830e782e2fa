//! The account documents callflows point at (devices, voicemail boxes, groups, menus, temporal
//! rules and rule sets, lists, media, faxboxes, local resources): one description per type,
//! used by the one save pipeline in [`pipeline`].
//!
//! Owns: each type's URL segment, `pvt_type`, schema, listing summary and the values it keeps
//! unique per account (with Kazoo's error for a clash). Must not know about HTTP or SQL.

use serde_json::{json, Map, Value};

pub mod drafts;
pub mod pipeline;

/// A value a document type keeps unique per account.
#[derive(Debug)]
pub struct UniqueRule {
    /// The stored key kind, and the error's field path (dotted).
    pub field: &'static str,
    /// Where the value sits in the document.
    pub path: &'static [&'static str],
    /// The value as the type compares it (`None`: nothing to keep unique).
    pub normalise: fn(&str) -> Option<String>,
    /// Kazoo's message for a clash.
    pub message: &'static str,
    /// Whether Kazoo's error carries the value as `cause`.
    pub cause: bool,
}

/// One document type, as its Kazoo crossbar module serves it.
#[derive(Debug)]
pub struct DocType {
    /// The URL segment: `/v2/accounts/{A}/<segment>`.
    pub segment: &'static str,
    /// The stored `pvt_type`.
    pub pvt_type: &'static str,
    /// The schema the request data is validated with.
    pub schema: &'static str,
    /// The listing row of a document (its `crossbar_listing` view's value).
    pub summary: fn(&str, &Map<String, Value>) -> Value,
    pub unique: &'static [UniqueRule],
    /// Rewrites the module applies to the request before saving.
    pub prepare: fn(&mut Map<String, Value>),
}

impl DocType {
    /// A listing row.
    pub fn summary_row(&self, id: &str, doc: &Map<String, Value>) -> Value {
        (self.summary)(id, doc)
    }

    /// The `(kind, value)` pairs this document must hold alone in its account.
    pub fn unique_keys(&self, doc: &Map<String, Value>) -> Vec<(String, String)> {
        self.unique
            .iter()
            .filter_map(|rule| {
                let (first, rest) = rule.path.split_first()?;
                let mut cur = doc.get(*first)?;
                for seg in rest {
                    cur = cur.as_object()?.get(*seg)?;
                }
                let text = match cur {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((rule.field.to_string(), (rule.normalise)(&text)?))
            })
            .collect()
    }

    pub fn rule(&self, field: &str) -> Option<&UniqueRule> {
        self.unique.iter().find(|r| r.field == field)
    }
}

/// A listing row: `id`, then `keys` (with a default when the document lacks one).
fn row(id: &str, doc: &Map<String, Value>, keys: &[(&str, Option<Value>)]) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    for (key, default) in keys {
        match (doc.get(*key), default) {
            (Some(v), _) => {
                out.insert((*key).to_string(), v.clone());
            }
            (None, Some(d)) => {
                out.insert((*key).to_string(), d.clone());
            }
            (None, None) => {}
        }
    }
    Value::Object(out)
}

fn same(s: &str) -> Option<String> {
    Some(s.to_string())
}

fn lower(s: &str) -> Option<String> {
    Some(s.to_lowercase())
}

/// `provisioner_util:cleanse_mac_address`: hex digits only, lower-cased.
pub fn cleanse_mac(s: &str) -> Option<String> {
    let mac: String = s
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (!mac.is_empty()).then_some(mac)
}

/// `listing_by_mailbox` emits `parseInt(mailbox)`: "0100" and "100" are one mailbox.
fn mailbox_number(s: &str) -> Option<String> {
    let digits: String = s.trim().chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Some(s.to_string());
    }
    let trimmed = digits.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    })
}

fn no_prepare(_: &mut Map<String, Value>) {}

/// `cb_devices:validate_mac_address`: the MAC is stored cleansed.
fn prepare_device(doc: &mut Map<String, Value>) {
    if let Some(mac) = doc.get("mac_address").and_then(Value::as_str) {
        let clean = cleanse_mac(mac).unwrap_or_default();
        doc.insert("mac_address".into(), json!(clean));
    }
}

fn device_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out = row(
        id,
        doc,
        &[
            ("name", None),
            ("mac_address", Some(json!(""))),
            ("owner_id", None),
            ("enabled", None),
            ("device_type", Some(json!("sip_device"))),
            ("mobile", None),
            ("call_recording", None),
            ("flags", Some(json!([]))),
        ],
    );
    if let (Some(user), Value::Object(m)) = (
        doc.get("sip").and_then(|s| s.get("username")).cloned(),
        &mut out,
    ) {
        m.insert("username".into(), user);
    }
    out
}

/// A row of `devices/listing_by_owner`: the device as `owner_id` sees it.
pub fn owned_device_row(id: &str, doc: &Map<String, Value>, hotdesked: bool) -> Value {
    let mut out = row(
        id,
        doc,
        &[
            ("name", None),
            ("mac_address", Some(json!(""))),
            ("owner_id", None),
            ("enabled", None),
            ("device_type", Some(json!("sip_device"))),
            ("call_recording", None),
        ],
    );
    if let Value::Object(m) = &mut out {
        m.insert("hotdesked".into(), json!(hotdesked));
    }
    out
}

fn vmbox_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out = row(
        id,
        doc,
        &[
            ("name", None),
            ("mailbox", None),
            ("owner_id", None),
            ("flags", Some(json!([]))),
        ],
    );
    if let Value::Object(m) = &mut out {
        m.insert("messages".into(), json!(0));
    }
    out
}

fn group_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out = row(id, doc, &[("name", None), ("flags", Some(json!([])))]);
    if let Value::Object(m) = &mut out {
        let endpoints = doc
            .get("endpoints")
            .and_then(Value::as_object)
            .map(|e| e.len())
            .unwrap_or(0);
        m.insert("endpoints".into(), json!(endpoints));
        let mut features = Vec::new();
        if doc
            .get("music_on_hold")
            .and_then(|m| m.get("media_id"))
            .is_some()
        {
            features.push("music_on_hold");
        }
        m.insert("features".into(), json!(features));
    }
    out
}

fn named_row(id: &str, doc: &Map<String, Value>) -> Value {
    row(id, doc, &[("name", None), ("flags", Some(json!([])))])
}

fn temporal_rule_row(id: &str, doc: &Map<String, Value>) -> Value {
    row(
        id,
        doc,
        &[("name", None), ("type", None), ("flags", Some(json!([])))],
    )
}

fn temporal_rule_set_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out = row(id, doc, &[("name", None), ("flags", Some(json!([])))]);
    if let (Some(rules), Value::Object(m)) = (doc.get("temporal_rules").cloned(), &mut out) {
        m.insert("rules".into(), rules);
    }
    out
}

fn list_row(id: &str, doc: &Map<String, Value>) -> Value {
    row(
        id,
        doc,
        &[("name", None), ("description", None), ("list_type", None)],
    )
}

fn media_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out = row(
        id,
        doc,
        &[
            ("name", None),
            ("media_type", None),
            ("media_source", None),
            ("is_prompt", None),
        ],
    );
    if let Value::Object(m) = &mut out {
        let language = doc
            .get("language")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        m.insert("language".into(), json!(language));
    }
    out
}

/// `cb_faxboxes` lists whole documents.
fn faxbox_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out: Map<String, Value> = doc
        .iter()
        .filter(|(k, _)| !k.starts_with('_') && !k.starts_with("pvt_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert("id".into(), json!(id));
    Value::Object(out)
}

fn resource_row(id: &str, doc: &Map<String, Value>) -> Value {
    row(
        id,
        doc,
        &[
            ("name", None),
            ("enabled", None),
            ("weight_cost", None),
            ("template_name", None),
            ("classifiers", None),
        ],
    )
}

/// A call test's listing row: its name, whether it gates writes, and its last result.
fn call_test_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out = row(id, doc, &[("name", None), ("gate", Some(json!(false)))]);
    if let Value::Object(m) = &mut out {
        let last = doc
            .get("pvt_last_result")
            .and_then(|r| r.get("result"))
            .cloned()
            .unwrap_or(Value::Null);
        m.insert("last_result".into(), last);
    }
    out
}

/// `kzd_users`: the username is kept lower-cased.
fn prepare_user(doc: &mut Map<String, Value>) {
    if let Some(name) = doc.get("username").and_then(Value::as_str) {
        let lower = name.to_lowercase();
        doc.insert("username".into(), json!(lower));
    }
}

fn user_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut out = row(
        id,
        doc,
        &[
            ("username", None),
            ("email", None),
            ("first_name", None),
            ("last_name", None),
            ("priv_level", None),
            ("presence_id", None),
            ("timezone", None),
            ("call_recording", None),
            ("service", None),
            ("flags", Some(json!([]))),
        ],
    );
    if let Value::Object(m) = &mut out {
        let mut features = Vec::new();
        let on = |path: &[&str]| {
            let mut cur = doc.get(path[0]);
            for p in &path[1..] {
                cur = cur.and_then(|c| c.get(*p));
            }
            cur.and_then(Value::as_bool).unwrap_or(false)
        };
        if on(&["call_forward", "enabled"]) {
            features.push("call_forward");
        }
        if on(&["hotdesk", "enabled"]) {
            features.push("hotdesk");
        }
        if on(&["vm_to_email_enabled"]) {
            features.push("vm_to_email");
        }
        if on(&["do_not_disturb", "enabled"]) {
            features.push("do_not_disturb");
        }
        if doc.get("caller_id").is_some() {
            features.push("caller_id");
        }
        m.insert("features".into(), json!(features));
    }
    out
}

/// Every document type served under `/v2/accounts/{A}/...` besides callflows.
pub static TYPES: &[DocType] = &[
    DocType {
        segment: "users",
        pvt_type: "user",
        schema: "users",
        summary: user_row,
        // `kzd_users:validate_username_is_unique` (account-wide, lower-cased) and
        // `validate_hotdesk_id_is_unique`.
        unique: &[
            UniqueRule {
                field: "username",
                path: &["username"],
                normalise: lower,
                message: "Username must be unique within account",
                cause: true,
            },
            UniqueRule {
                field: "hotdesk.id",
                path: &["hotdesk", "id"],
                normalise: same,
                message: "Hotdesk ID must be unique within account",
                cause: true,
            },
        ],
        prepare: prepare_user,
    },
    DocType {
        segment: "devices",
        pvt_type: "device",
        schema: "devices",
        summary: device_row,
        // `cb_devices:validate_device_creds` (account-wide, case-insensitive) and
        // `check_mac_address`.
        unique: &[
            UniqueRule {
                field: "sip.username",
                path: &["sip", "username"],
                normalise: lower,
                message: "SIP credentials already in use",
                cause: true,
            },
            UniqueRule {
                field: "mac_address",
                path: &["mac_address"],
                normalise: cleanse_mac,
                message: "MAC address already in use",
                cause: true,
            },
        ],
        prepare: prepare_device,
    },
    DocType {
        segment: "vmboxes",
        pvt_type: "vmbox",
        schema: "vmboxes",
        summary: vmbox_row,
        // `cb_vmboxes:validate_mailbox` over `listing_by_mailbox` (numeric).
        unique: &[UniqueRule {
            field: "mailbox",
            path: &["mailbox"],
            normalise: mailbox_number,
            message: "Invalid mailbox number or already exists",
            cause: false,
        }],
        prepare: no_prepare,
    },
    DocType {
        segment: "groups",
        pvt_type: "group",
        schema: "groups",
        summary: group_row,
        unique: &[],
        prepare: no_prepare,
    },
    DocType {
        segment: "menus",
        pvt_type: "menu",
        schema: "menus",
        summary: named_row,
        unique: &[],
        prepare: no_prepare,
    },
    DocType {
        segment: "temporal_rules",
        pvt_type: "temporal_rule",
        schema: "temporal_rules",
        summary: temporal_rule_row,
        unique: &[],
        prepare: no_prepare,
    },
    DocType {
        segment: "temporal_rules_sets",
        pvt_type: "temporal_rule_set",
        schema: "temporal_rules_sets",
        summary: temporal_rule_set_row,
        unique: &[],
        prepare: no_prepare,
    },
    DocType {
        segment: "lists",
        pvt_type: "list",
        schema: "lists",
        summary: list_row,
        unique: &[],
        prepare: no_prepare,
    },
    DocType {
        segment: "media",
        pvt_type: "media",
        schema: "media",
        summary: media_row,
        unique: &[],
        prepare: no_prepare,
    },
    DocType {
        segment: "faxboxes",
        pvt_type: "faxbox",
        schema: "faxbox",
        summary: faxbox_row,
        unique: &[],
        prepare: no_prepare,
    },
    DocType {
        segment: "resources",
        pvt_type: "resource",
        schema: "resources",
        summary: resource_row,
        unique: &[],
        prepare: no_prepare,
    },
    // Keep last: `CALL_TESTS` points here.
    DocType {
        segment: "callflow_tests",
        pvt_type: "callflow_test",
        schema: "callflow_tests",
        summary: call_test_row,
        unique: &[],
        prepare: no_prepare,
    },
];

/// Saved call tests: ours, not Kazoo's (see [`crate::lint::calltests`]).
pub static CALL_TESTS: &DocType = &TYPES[11];

/// A list's entries (`cb_lists`): served only under their list, `/lists/{ID}/entries`.
pub static ENTRY: DocType = DocType {
    segment: "entries",
    pvt_type: "list_entry",
    schema: "list_entries",
    summary: entry_row,
    unique: &[],
    prepare: no_prepare,
};

/// `lists/entries` view rows: `{id, key: list_id, value: {...}}`.
pub fn entry_row(id: &str, doc: &Map<String, Value>) -> Value {
    let mut value = Map::new();
    for key in [
        "capture_group_key",
        "capture_group_length",
        "name",
        "number",
        "pattern",
        "prefix",
        "regexp",
        "type",
    ] {
        if let Some(v) = doc.get(key) {
            value.insert(key.into(), v.clone());
        }
    }
    json!({"id": id, "key": doc.get("list_id").cloned().unwrap_or(Value::Null), "value": value})
}

/// The type served at a URL segment.
pub fn by_segment(segment: &str) -> Option<&'static DocType> {
    TYPES.iter().find(|t| t.segment == segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_follow_each_rule() {
        let devices = by_segment("devices").unwrap();
        let doc = json!({"sip": {"username": "Alice"}, "mac_address": "00:11:22:AA:BB:CC"});
        assert_eq!(
            devices.unique_keys(doc.as_object().unwrap()),
            vec![
                ("sip.username".to_string(), "alice".to_string()),
                ("mac_address".to_string(), "001122aabbcc".to_string())
            ]
        );
        let vmboxes = by_segment("vmboxes").unwrap();
        let doc = json!({"mailbox": "03001"});
        assert_eq!(
            vmboxes.unique_keys(doc.as_object().unwrap()),
            vec![("mailbox".to_string(), "3001".to_string())]
        );
        assert!(by_segment("menus")
            .unwrap()
            .unique_keys(doc.as_object().unwrap())
            .is_empty());
    }
}
