//! `missing_reference`: a flow names a document (callflow, user, device, voicemail box, menu,
//! temporal rule or rule set, group, list, media, faxbox) that does not exist, was deleted, or
//! is of another type. Kazoo saves such flows; the call falls to `_` or stops.

use serde_json::Value;

use super::{Ctx, Doc, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "missing_reference",
    severity: Severity::Error,
    summary: "a reference to a missing, deleted or mistyped document",
};

const CALLFLOW: &[&str] = &["callflow"];
const USER: &[&str] = &["user"];
const DEVICE: &[&str] = &["device"];
const GROUP: &[&str] = &["group"];
const ENDPOINT: &[&str] = &["device", "user", "group"];

/// `(id, allowed pvt_types, field path)` for every id a flow names.
pub fn references(doc: &Doc) -> Vec<(String, &'static [&'static str], String)> {
    let mut out = Vec::new();
    for node in super::nodes(doc) {
        let Some(data) = node.data else {
            continue;
        };
        let mut add = |id: &str, types: &'static [&'static str], path: String| {
            if !id.is_empty() {
                out.push((id.to_string(), types, path));
            }
        };
        let at = |field: &str| format!("{}.data.{field}", node.path);
        let id_types: Option<&'static [&'static str]> = match node.module {
            "callflow" => Some(CALLFLOW),
            "user" | "hotdesk" => Some(USER),
            "device" => Some(DEVICE),
            "voicemail" => Some(&["vmbox"]),
            "menu" => Some(&["menu"]),
            "group" => Some(GROUP),
            "cidlistmatch" => Some(&["list"]),
            "faxbox" => Some(&["faxbox"]),
            "play" => Some(&["media"]),
            _ => None,
        };
        if let (Some(types), Some(id)) = (id_types, data.get("id").and_then(Value::as_str)) {
            // `play` also takes a URL or a system prompt path.
            if !(node.module == "play" && (id.contains('/') || id.contains("://"))) {
                add(id, types, at("id"));
            }
        }
        for (field, types) in [
            ("user_id", USER),
            ("device_id", DEVICE),
            ("group_id", GROUP),
            ("approved_user_id", USER),
            ("approved_device_id", DEVICE),
            ("approved_group_id", GROUP),
            ("owner_id", USER),
            ("callflow_id", CALLFLOW),
        ] {
            if let Some(id) = data.get(field).and_then(Value::as_str) {
                add(id, types, at(field));
            }
        }
        if matches!(node.module, "ring_group" | "page_group" | "group") {
            for (i, e) in data
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let types = match e.get("endpoint_type").and_then(Value::as_str) {
                    Some("user") => USER,
                    Some("group") => GROUP,
                    Some("device") => DEVICE,
                    _ => ENDPOINT,
                };
                if let Some(id) = e.get("id").and_then(Value::as_str) {
                    add(id, types, at(&format!("endpoints.{i}.id")));
                }
            }
        }
        if node.module == "temporal_route" {
            for (i, id) in data
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(id) = id.as_str() {
                    add(id, &["temporal_rule"], at(&format!("rules.{i}")));
                }
            }
            if let Some(id) = data.get("rule_set").and_then(Value::as_str) {
                add(id, &["temporal_rule_set"], at("rule_set"));
            }
        }
        if node.module == "lookupcidname" {
            for (i, id) in data
                .get("lists")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(id) = id.as_str() {
                    add(id, &["list"], at(&format!("lists.{i}")));
                }
            }
        }
    }
    out
}

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (id, types, path) in references(ctx.doc) {
        let wanted = types.join(" or ");
        let known = if ctx.snapshot.callflows.contains_key(&id) {
            Some(("callflow", false))
        } else {
            ctx.snapshot
                .docs
                .get(&id)
                .map(|k| (k.pvt_type.as_str(), k.deleted))
        };
        let message = match known {
            None => format!("{id} names a {wanted} that does not exist"),
            Some((_, true)) => format!("{id} names a {wanted} that was deleted"),
            Some((t, false)) if !types.contains(&t) => {
                format!("{id} is a {t}, not a {wanted}")
            }
            Some(_) => continue,
        };
        out.push(ctx.finding(
            &RULE,
            path,
            message,
            Some(format!(
                "point it at an existing {wanted}, or remove the node"
            )),
        ));
    }
}
