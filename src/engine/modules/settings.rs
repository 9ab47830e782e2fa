//! Caller-id, variable and bookkeeping modules: set_cid, prepend_cid, dynamic_cid,
//! lookupcidname, set_variable, set_variables, set, set_alert_info, language,
//! manual_presence, after_bridge, edr, webhook, missed_call_alert, notification.
//!
//! Owns what each changes on the call (caller id, channel variables the later nodes read)
//! and their summaries; all continue to `_` except dynamic_cid's list modes, which route to
//! the captured destination. Must not send anything anywhere.

use serde_json::Value;

use crate::engine::data::{self, label, text};
use crate::engine::events::Event;
use crate::engine::exec::{Action, Digits, FlowRef, Next, Run};
use crate::engine::modules::routing::{list_entries, match_list, normalize, normalize_key};

pub(crate) fn set_cid<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let name = d.get("caller_id_name").and_then(Value::as_str);
    let number = d.get("caller_id_number").and_then(Value::as_str);
    let show = |v: Option<&str>| match v {
        None => "unchanged".to_string(),
        Some("") => "erased".to_string(),
        Some(s) => format!("\"{s}\""),
    };
    rt.say(format!(
        "sets the caller id name {} and number {}",
        show(name),
        show(number)
    ));
    if let Some(n) = name {
        rt.cid_name = (!n.is_empty()).then(|| n.to_string());
    }
    if let Some(n) = number {
        rt.cid_number = (!n.is_empty()).then(|| n.to_string());
    }
    Action::next("`_`")
}

pub(crate) fn prepend_cid<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    if text(d, "action") == Some("reset") {
        rt.say("removes the caller id prefixes");
        return Action::next("`_`");
    }
    let np = text(d, "caller_id_name_prefix").unwrap_or("");
    let nn = text(d, "caller_id_number_prefix").unwrap_or("");
    let mode = text(d, "apply_to").unwrap_or("current");
    rt.say(format!(
        "prefixes the caller id name with \"{np}\" and the number with \"{nn}\" ({mode})"
    ));
    if let Some(n) = rt.cid_number.as_mut() {
        n.insert_str(0, nn);
    }
    if let Some(n) = rt.cid_name.as_mut() {
        n.insert_str(0, np);
    }
    Action::next("`_`")
}

pub(crate) fn dynamic_cid<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let action = text(d, "action").unwrap_or("manual");
    let cg = rt.capture_group.clone().filter(|c| !c.is_empty());
    match (action, cg) {
        ("static", _) => {
            let cid = d.get("caller_id").and_then(Value::as_object);
            let name = cid.and_then(|c| text(c, "name"));
            let number = cid.and_then(|c| text(c, "number"));
            rt.say(format!(
                "sets a static caller id {} <{}>",
                name.unwrap_or("(default)"),
                number.unwrap_or("(default)")
            ));
            if let Some(n) = number {
                rt.cid_number = Some(n.to_string());
            }
            if let Some(n) = name {
                rt.cid_name = Some(n.to_string());
            }
            Action::next("`_`")
        }
        (a @ ("list" | "lists"), Some(cg)) => {
            let list_id = text(d, "id").unwrap_or("");
            let entries = list_entries(rt, list_id);
            rt.warn(
                "not_simulated",
                "dynamic_cid list modes are simplified: the entry whose capture_group_key equals the first capture_group_length (2) digits gives the caller id, the rest is the destination",
            );
            let found = entries.iter().find_map(|e| {
                let len = data::int(e, "capture_group_length").unwrap_or(2).max(0) as usize;
                let key: String = cg.chars().take(len).collect();
                (text(e, "capture_group_key") == Some(key.as_str()))
                    .then(|| (*e, cg.chars().skip(len).collect::<String>()))
            });
            let Some((entry, dest)) = found else {
                rt.say(format!(
                    "looks up caller id list {} ({a}) for {cg}: no entry",
                    label(rt.docs.get("lists", list_id), Some(list_id))
                ));
                return Action::stop(
                    "no list entry: plays \"cannot be completed as dialled\" and stops",
                );
            };
            if let Some(n) = text(entry, "number") {
                rt.cid_number = Some(n.to_string());
            }
            if let Some(n) = text(entry, "name") {
                rt.cid_name = Some(n.to_string());
            }
            let dest = normalize(rt, &dest);
            rt.say(format!(
                "sets caller id {} <{}> from list {list_id} and dials {dest}",
                text(entry, "name").unwrap_or(""),
                text(entry, "number").unwrap_or("")
            ));
            let permit = data::is_true(d, "permit_custom_callflow", false);
            match rt.lookup(&dest) {
                Some((route, Some(flow))) if route.no_match || permit => Action::Branch {
                    flow,
                    reason: format!("branches into callflow {} for {dest}", route.callflow_id),
                },
                _ => Action::stop(format!(
                    "no usable callflow for {dest}: plays \"invalid extension\" and stops"
                )),
            }
        }
        _ => {
            let min = data::int(d, "min_digits").unwrap_or(10).max(0) as usize;
            let max = data::int(d, "max_digits").unwrap_or(10).max(1) as usize;
            let regex = text(d, "whitelist_regex").unwrap_or(r"\d+");
            rt.say(format!("asks the caller to key in a caller id number ({min}-{max} digits matching {regex:?})"));
            match rt.digits("the new caller id number", max, &['#']) {
                Digits::Hangup => return Action::stop("the caller hung up"),
                Digits::Got(n)
                    if n.len() >= min && data::regex_matches(regex, &n) == Some(true) =>
                {
                    rt.add(&format!("caller id number set to {n}"));
                    rt.cid_number = Some(n);
                }
                Digits::Got(n) => rt.add(&format!(
                    "\"{n}\" is rejected: the caller id stays as it was"
                )),
            }
            Action::next("`_`")
        }
    }
}

pub(crate) fn lookupcidname<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let number = rt.cid_number.clone().unwrap_or_default();
    let lists: Vec<String> = data::strings(d, "lists")
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut found = None;
    for l in &lists {
        let entries = list_entries(rt, l);
        if let Some((e, how)) = match_list(&entries, &number) {
            found = Some((
                text(e, "displayname")
                    .or_else(|| text(e, "name"))
                    .unwrap_or("")
                    .to_string(),
                how,
            ));
            break;
        }
    }
    match found {
        Some((name, how)) => {
            rt.say(format!(
                "looks caller id {number} up in {} list(s): \"{name}\" ({how})",
                lists.len()
            ));
            rt.quirk("lookupcidname passes the renamed call only to continue, so Kazoo discards the new caller id name");
        }
        None => rt.say(format!(
            "looks caller id {number} up in {} list(s): not found",
            lists.len()
        )),
    }
    Action::next("`_`")
}

pub(crate) fn set_variable<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let var = text(d, "variable").unwrap_or("");
    let value = d.get("value").and_then(data::to_text).unwrap_or_default();
    let channel = text(d, "channel").unwrap_or("a");
    let ccv = match var {
        "call_priority" => Some("Call-Priority"),
        "group_id" => Some("Group-ID"),
        _ => None,
    };
    match ccv {
        Some(name) => {
            rt.say(format!(
                "sets channel variable {name} = {value} on leg {channel}"
            ));
            let key = normalize_key(name);
            rt.ccvs.retain(|(k, _)| *k != key);
            rt.ccvs.push((key, value));
        }
        None => {
            rt.say(format!("set_variable \"{var}\": Kazoo only knows call_priority and group_id, so nothing useful is set"));
        }
    }
    Action::next("`_`")
}

pub(crate) fn set_variables<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let cavs = node
        .data()
        .get("custom_application_vars")
        .and_then(Value::as_object);
    let names: Vec<&str> = cavs
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    rt.say(format!(
        "sets custom application variables: {}",
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    ));
    Action::next("`_`")
}

pub(crate) fn set<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let keys: Vec<&str> = node.data().keys().map(String::as_str).collect();
    rt.say(format!("stores ACDc agent skills: {}", keys.join(", ")));
    Action::next("`_`")
}

pub(crate) fn set_alert_info<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    rt.say(format!(
        "sets Alert-Info to \"{}\"",
        text(node.data(), "alert_info").unwrap_or("")
    ));
    Action::next("`_`")
}

pub(crate) fn language<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    rt.say(format!(
        "sets the call's language to {}",
        text(node.data(), "language").unwrap_or("(none)")
    ));
    Action::next("`_`")
}

pub(crate) fn manual_presence<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    rt.say(format!(
        "answers and sets presence of {} to {}",
        text(d, "presence_id").unwrap_or("(none)"),
        text(d, "status").unwrap_or("idle")
    ));
    Action::next("`_`")
}

pub(crate) fn after_bridge<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let what = match text(d, "action") {
        Some("park") => "park the other party",
        Some("transfer") => "transfer the other party",
        Some("hangup") => "hang up",
        _ => "do what data says",
    };
    rt.say(format!(
        "arranges that after the next bridge ends the call will {what}"
    ));
    Action::next("`_`")
}

pub(crate) fn edr<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    rt.say("emits an event record with the node's data");
    Action::next("`_`")
}

pub(crate) fn webhook<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let uri = text(d, "uri").unwrap_or("(no uri)");
    let verb = text(d, "http_verb").unwrap_or("post");
    rt.say(format!(
        "fires a webhook ({verb} {uri}) and carries on without waiting"
    ));
    if let Some(Event::Webhook(ok)) = rt.peek() {
        let ok = *ok;
        if let Next::Got(_) =
            rt.next_event("the webhook's delivery", |e| matches!(e, Event::Webhook(_)))
        {
            rt.add(if ok {
                "delivered"
            } else {
                "delivery failed (it does not change the path)"
            });
        }
    }
    Action::next("`_`")
}

pub(crate) fn missed_call_alert<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    if rt.call.caller.on_net() {
        rt.say("missed-call alert: the caller is on-net, so no alert is armed");
    } else {
        rt.say("arms a missed-call alert: sent at hangup if the call was never bridged and no voicemail was left");
    }
    Action::next("`_`")
}

pub(crate) fn notification<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let when = text(d, "send_at").unwrap_or("channel_destroy");
    let template = text(d, "template_id");
    rt.say(match (template, when) {
        (None, _) => "notification without a template_id: nothing is sent".into(),
        (Some(t), "callflow_exec") => format!("sends notification {t} now"),
        (Some(t), "channel_destroy") => format!("arms notification {t} for when the call ends"),
        (Some(_), other) => {
            format!("notification with send_at \"{other}\": Kazoo logs a warning, nothing is sent")
        }
    });
    Action::next("`_`")
}
