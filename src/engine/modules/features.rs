//! Feature-code modules: call_forward, call_waiting, do_not_disturb, ring_group_toggle,
//! park, move, eavesdrop, intercept, group_pickup and their `_feature` forms,
//! camping_feature, directory, disa, transfer.
//!
//! Owns what each does with the caller's own settings or with another channel, and how it
//! ends (most stop after a prompt; pickups connect; park waits). Must not change documents:
//! settings changes are described, not saved.

use serde_json::{Map, Value};

use crate::engine::data::{self, label, text};
use crate::engine::events::{Event, ParkEvent};
use crate::engine::exec::{Action, Bridged, Built, Digits, Ending, FlowRef, Next, Run};
use crate::engine::modules::bridging;
use crate::engine::modules::routing::normalize;
use crate::engine::trace::{Endpoint, OutcomeKind};
use crate::engine::Doc;

/// The document holding the caller's settings: the owner user, else the calling device.
fn caller_settings<'a>(rt: &Run<'a>) -> Option<(&'a Doc, &'static str, String)> {
    let docs = rt.docs;
    if let Some(o) = rt.owner_id.as_deref() {
        if let Some(u) = docs.get("users", o) {
            return Some((u, "user", label(Some(u), Some(o))));
        }
    }
    let id = rt.call.caller.device_id.as_deref()?;
    docs.get("devices", id)
        .map(|d| (d, "device", label(Some(d), Some(id))))
}

fn no_settings<'a>(rt: &mut Run<'a>, what: &str) -> Action<'a> {
    rt.say(format!("{what}: the caller has no user or device document to change; plays \"cannot be completed\""));
    Action::stop("no settings document: Kazoo stops")
}

pub(crate) fn call_forward<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let action = text(node.data(), "action").unwrap_or("toggle");
    let Some((doc, kind, name)) = caller_settings(rt) else {
        return no_settings(rt, "call forwarding");
    };
    let cf = doc.get("call_forward").and_then(Value::as_object);
    let on = cf.is_some_and(|c| data::is_true(c, "enabled", false));
    let current = cf
        .and_then(|c| text(c, "number"))
        .unwrap_or("(none)")
        .to_string();
    let number = rt.capture_group.clone();
    match action {
        "activate" | "update" => {
            let n = match number {
                Some(n) => n,
                None => match rt.digits("the forwarding number", 15, &['#']) {
                    Digits::Hangup => return Action::stop("the caller hung up"),
                    Digits::Got(n) => n,
                },
            };
            rt.say(format!(
                "{} call forwarding of {kind} {name} to {}",
                if action == "update" {
                    "updates"
                } else {
                    "turns on"
                },
                if n.is_empty() { current.clone() } else { n }
            ));
        }
        "deactivate" => rt.say(format!("turns off call forwarding of {kind} {name}")),
        "toggle" => rt.say(format!(
            "toggles call forwarding of {kind} {name}: {}",
            if on {
                "off".to_string()
            } else {
                format!("on (to {current})")
            }
        )),
        "menu" => {
            rt.say(format!(
                "plays the call forwarding menu for {kind} {name} (1 toggle, 2 change number)"
            ));
            loop {
                if !rt.input_next() {
                    rt.assume("the call forwarding menu replays until the caller hangs up: assumed the caller hangs up");
                    rt.caller_gone = true;
                    rt.destroyed = true;
                    return Action::stop("the caller hung up in the menu");
                }
                match rt.digits("the call forwarding menu", 1, &[]) {
                    Digits::Hangup => return Action::stop("the caller hung up in the menu"),
                    Digits::Got(k) => rt.say(format!(
                        "call forwarding menu: caller presses \"{k}\"; the menu plays again"
                    )),
                }
            }
        }
        other => rt.say(format!(
            "call forwarding with action \"{other}\": nothing to do"
        )),
    }
    rt.warn(
        "not_simulated",
        "the settings change is described, not saved",
    );
    Action::next("setting changed: `_`")
}

pub(crate) fn call_waiting<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let action = text(d, "action").unwrap_or("toggle");
    let scope = text(d, "scope").unwrap_or("device");
    let docs = rt.docs;
    let target = match scope {
        "user" => rt
            .owner_id
            .as_deref()
            .and_then(|o| docs.get("users", o))
            .map(|u| (u, rt.owner_id.clone())),
        _ => rt
            .caller_device()
            .map(|dv| (dv, rt.call.caller.device_id.clone())),
    };
    let Some((doc, id)) = target else {
        return no_settings(rt, "call waiting");
    };
    rt.say(format!(
        "{action}s call waiting on {scope} {}",
        label(Some(doc), id.as_deref())
    ));
    Action::next("setting changed: `_`")
}

pub(crate) fn do_not_disturb<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let action = text(d, "action").unwrap_or("toggle");
    let docs = rt.docs;
    let target = text(d, "id")
        .and_then(|id| {
            docs.get("users", id)
                .or_else(|| docs.get("devices", id))
                .map(|doc| (doc, id.to_string()))
        })
        .or_else(|| {
            caller_settings(rt)
                .map(|(doc, _, _)| (doc, data::doc_id(doc).unwrap_or("?").to_string()))
        });
    let Some((doc, id)) = target else {
        return no_settings(rt, "do not disturb");
    };
    rt.say(format!(
        "{action}s do not disturb on {}",
        label(Some(doc), Some(&id))
    ));
    Action::next("setting changed: `_`")
}

pub(crate) fn ring_group_toggle<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let action = text(d, "action").unwrap_or("login");
    let cf = text(d, "callflow_id").unwrap_or("(no callflow_id)");
    let who = label(
        rt.owner_id.as_deref().and_then(|o| rt.docs.get("users", o)),
        rt.owner_id.as_deref(),
    );
    rt.say(format!(
        "{} user {who} {} the ring groups of callflow {cf} (sets disable_until on their member entries)",
        if action == "logout" { "takes" } else { "puts" },
        if action == "logout" { "out of" } else { "back into" }
    ));
    Action::next("ring groups toggled: `_`")
}

/// Whether a channel to act on exists (`{"channel":...}`), found by default.
fn channel(rt: &mut Run<'_>, what: &str) -> Option<bool> {
    match rt.next_event(what, |e| matches!(e, Event::Channel(_))) {
        Next::Got(Event::Channel(f)) => Some(*f),
        Next::Hangup => None,
        _ => {
            rt.assume(format!("{what}: a channel is found"));
            Some(true)
        }
    }
}

/// Kazoo's permission check for eavesdrop/intercept/group_pickup (`approved_*`).
fn approved(rt: &Run<'_>, d: &Map<String, Value>, default: bool) -> (bool, String) {
    let caller_dev = rt.call.caller.device_id.as_deref();
    if let Some(dev) = text(d, "approved_device_id") {
        return (caller_dev == Some(dev), format!("approved_device_id {dev}"));
    }
    if let Some(user) = text(d, "approved_user_id") {
        return (
            rt.owner_id.as_deref() == Some(user),
            format!("approved_user_id {user}"),
        );
    }
    if let Some(group) = text(d, "approved_group_id") {
        let ok = rt.docs.get("groups", group).is_some_and(|g| {
            g.get("endpoints")
                .and_then(Value::as_object)
                .is_some_and(|m| {
                    caller_dev.is_some_and(|dv| m.contains_key(dv))
                        || rt.owner_id.as_deref().is_some_and(|o| m.contains_key(o))
                })
        });
        return (ok, format!("approved_group_id {group}"));
    }
    (default, "no approved_* key".into())
}

fn target_of(rt: &Run<'_>, d: &Map<String, Value>) -> String {
    let docs = rt.docs;
    if let Some(id) = text(d, "device_id") {
        return format!("device {}", label(docs.get("devices", id), Some(id)));
    }
    if let Some(id) = text(d, "user_id") {
        return format!("user {}", label(docs.get("users", id), Some(id)));
    }
    if let Some(id) = text(d, "group_id") {
        return format!("group {}", label(docs.get("groups", id), Some(id)));
    }
    "(no target)".into()
}

fn pickup_like<'a>(
    rt: &mut Run<'a>,
    node: &FlowRef<'a>,
    verb: &str,
    default_ok: bool,
) -> Action<'a> {
    let d = node.data();
    let target = target_of(rt, d);
    let (ok, why) = approved(rt, d, default_ok);
    if !ok {
        rt.say(format!("{verb} {target}: not permitted ({why})"));
        return Action::stop("permission denied: plays a prompt and stops");
    }
    rt.say(format!("{verb} a call of {target}"));
    match channel(rt, &format!("a channel to {verb}")) {
        None => Action::stop("the caller hung up"),
        Some(false) => {
            rt.add("no channel: plays \"no channel\"");
            Action::stop("nothing to pick up: stop")
        }
        Some(true) => {
            rt.bridged = true;
            rt.pending = Some(
                Ending::new(
                    OutcomeKind::Connected,
                    format!("the caller {verb}s a call of {target}"),
                )
                .at(Endpoint::new("channel", None, Some(target))),
            );
            rt.destroyed = true;
            Action::stop("the pickup ended: stop")
        }
    }
}

pub(crate) fn eavesdrop<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    pickup_like(rt, node, "eavesdrops on", false)
}

pub(crate) fn intercept<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    pickup_like(rt, node, "intercepts", true)
}

pub(crate) fn group_pickup<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    pickup_like(rt, node, "picks up", true)
}

pub(crate) fn r#move<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    rt.say("moves the caller's other active call to this device");
    match channel(rt, "the owner's other active channel") {
        None => Action::stop("the caller hung up"),
        Some(false) => Action::stop("no other channel: plays a prompt and stops"),
        Some(true) => {
            rt.pending = Some(Ending::new(
                OutcomeKind::Connected,
                "the caller's other call moved to this device",
            ));
            rt.destroyed = true;
            Action::stop("move always stops")
        }
    }
}

/// The user/device a feature's captured extension reaches: its callflow's first node.
fn feature_target<'a>(
    rt: &mut Run<'a>,
    what: &str,
) -> Result<(String, String, String), Action<'a>> {
    let Some(cg) = rt.capture_group.clone().filter(|c| !c.is_empty()) else {
        rt.say(format!("{what}: no extension captured"));
        return Err(Action::stop("no target: plays a prompt and stops"));
    };
    let Some((route, Some(flow))) = rt.lookup(&cg) else {
        rt.say(format!("{what} {cg}: no callflow for that extension"));
        return Err(Action::stop("no target: plays a prompt and stops"));
    };
    let module = flow.module().to_string();
    let id = text(flow.data(), "id").map(str::to_string);
    match (module.as_str(), id) {
        ("user" | "device", Some(id)) => Ok((module, id, route.callflow_id)),
        _ => {
            rt.say(format!(
                "{what} {cg}: callflow {} does not start with a user or device",
                route.callflow_id
            ));
            Err(Action::stop("no target: plays a prompt and stops"))
        }
    }
}

fn feature<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>, verb: &str, base: &str) -> Action<'a> {
    let (module, id, cf) = match feature_target(rt, verb) {
        Ok(t) => t,
        Err(a) => return a,
    };
    let mut data = node.data().clone();
    data.insert(format!("{module}_id"), Value::String(id.clone()));
    let built = Built {
        module: base.to_string(),
        data,
        children: Vec::new(),
    };
    rt.say(format!(
        "{verb} the extension of callflow {cf}: {module} {id}"
    ));
    Action::Branch {
        flow: FlowRef::built(built, "system", format!("{base} for {module} {id}")),
        reason: format!("branches into a {base} node for {module} {id}"),
    }
}

pub(crate) fn eavesdrop_feature<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    feature(rt, node, "eavesdrops on", "eavesdrop")
}

pub(crate) fn intercept_feature<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    feature(rt, node, "intercepts", "intercept")
}

pub(crate) fn group_pickup_feature<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let t = text(node.data(), "type").unwrap_or("extension");
    if t != "extension" {
        rt.say(format!(
            "group pickup by {t}: Kazoo does not implement that type; plays a prompt"
        ));
        rt.quirk("group_pickup_feature only implements type \"extension\"");
        return Action::stop("unimplemented type: stop");
    }
    feature(rt, node, "picks up", "group_pickup")
}

pub(crate) fn camping_feature<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    let Some(cg) = rt.capture_group.clone().filter(|c| !c.is_empty()) else {
        rt.say("camps on an extension, but none was captured");
        return Action::stop("nothing to camp on: plays a prompt and stops");
    };
    let target = rt.lookup(&cg).and_then(|(route, flow)| {
        let flow = flow?;
        let m = flow.module().to_string();
        let id = text(flow.data(), "id").map(str::to_string);
        Some((route.callflow_id, m, id))
    });
    let Some((cf, module, Some(id))) =
        target.filter(|(_, m, _)| matches!(m.as_str(), "user" | "device" | "offnet"))
    else {
        rt.say(format!(
            "camps on {cg}: its callflow does not start with a user, device or offnet node"
        ));
        return Action::stop("camping denied: plays a prompt and stops");
    };
    rt.say(format!("camps on {cg} (callflow {cf}, {module} {id})"));
    let busy = match rt.next_event("whether the extension is busy", |e| {
        matches!(e, Event::Camp(_))
    }) {
        Next::Got(Event::Camp(b)) => *b,
        Next::Hangup => return Action::stop("the caller hung up"),
        _ => {
            rt.assume("the camped-on extension is idle");
            false
        }
    };
    if busy {
        rt.add("busy: the camper application will call both parties when it frees up; plays \"accepted\"");
        return Action::end(Ending::new(
            OutcomeKind::HandedOff,
            format!("camping on {cg}: the camper application calls back"),
        ));
    }
    let mut data = Map::new();
    data.insert("id".into(), Value::String(id.clone()));
    let kind = if module == "offnet" {
        "device"
    } else {
        module.as_str()
    };
    let built = Built {
        module: kind.to_string(),
        data,
        children: Vec::new(),
    };
    Action::Branch {
        flow: FlowRef::built(built, "system", format!("camping {kind} {id}")),
        reason: format!("{cg} is idle: branches into a {kind} node"),
    }
}

pub(crate) fn park<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let action = text(d, "action").unwrap_or("park");
    let slot = text(d, "slot")
        .map(str::to_string)
        .or_else(|| rt.capture_group.clone().filter(|c| !c.is_empty()))
        .unwrap_or_else(|| "the first free slot from 101".into());
    let retrieve = |rt: &mut Run<'a>| -> Option<bool> {
        channel(rt, &format!("a call parked in slot {slot}"))
    };
    match action {
        "retrieve" => {
            rt.say(format!("retrieves the call parked in slot {slot}"));
            match retrieve(rt) {
                None => Action::stop("the caller hung up"),
                Some(true) => Action::end(
                    Ending::new(
                        OutcomeKind::Transferred,
                        format!("the parked call in slot {slot} is retrieved"),
                    )
                    .at(Endpoint::new("park_slot", Some(&slot), None)),
                ),
                Some(false) => {
                    rt.add("nobody is parked there: plays \"no caller\"");
                    Action::stop("slot empty: stop")
                }
            }
        }
        "auto" => {
            rt.say(format!(
                "retrieves the call in slot {slot}, or parks the caller there"
            ));
            match rt.peek() {
                Some(Event::Channel(true)) => {
                    let _ = retrieve(rt);
                    Action::end(
                        Ending::new(
                            OutcomeKind::Transferred,
                            format!("the parked call in slot {slot} is retrieved"),
                        )
                        .at(Endpoint::new("park_slot", Some(&slot), None)),
                    )
                }
                Some(Event::Channel(false)) => {
                    let _ = retrieve(rt);
                    rt.add("nobody is parked there: parks the caller");
                    park_and_wait(rt, node, &slot)
                }
                _ => {
                    rt.assume(format!(
                        "slot {slot} is empty (no {{\"channel\":...}} event), so the caller is parked"
                    ));
                    park_and_wait(rt, node, &slot)
                }
            }
        }
        "direct_park" => {
            let max = data::int(d, "max_slot_number");
            let n = slot.parse::<i64>().ok();
            if let (Some(max), Some(n)) = (max, n) {
                if n > max {
                    rt.say(format!(
                        "parks the caller directly in slot {slot}: above max_slot_number {max}"
                    ));
                    return Action::go("MAX_SLOT_EXCEEDED", "slot above max_slot_number");
                }
            }
            rt.say(format!("parks the caller directly in slot {slot}"));
            park_and_wait(rt, node, &slot)
        }
        _ => {
            rt.say(format!(
                "parks the caller in slot {slot} and announces the slot"
            ));
            park_and_wait(rt, node, &slot)
        }
    }
}

/// `wait_for_pickup`: picked up, hung up, or the ringback timeout calling the parker back.
fn park_and_wait<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>, slot: &str) -> Action<'a> {
    let ringback = data::int(node.data(), "default_ringback_timeout").unwrap_or(120_000) / 1000;
    loop {
        match rt.next_event("what happens to the parked call", |e| {
            matches!(e, Event::Park(_))
        }) {
            Next::Hangup => return Action::stop("the parked caller hung up"),
            Next::Nothing => {
                rt.assume(format!("the call stays parked in slot {slot}"));
                return Action::end(
                    Ending::new(
                        OutcomeKind::Park,
                        format!("the caller waits in park slot {slot}"),
                    )
                    .at(Endpoint::new("park_slot", Some(slot), None)),
                );
            }
            Next::Got(Event::Park(ParkEvent::PickedUp)) => {
                rt.add("someone picks the call up");
                return Action::end(
                    Ending::new(
                        OutcomeKind::Transferred,
                        format!("the call parked in slot {slot} is picked up"),
                    )
                    .at(Endpoint::new("park_slot", Some(slot), None)),
                );
            }
            Next::Got(Event::Park(ParkEvent::Occupied)) => {
                rt.add(&format!(
                    "slot {slot} is already taken: the parker is called back"
                ));
            }
            Next::Got(_) => {
                rt.add(&format!(
                    "nobody picks up within {ringback} s: the parker is called back"
                ));
            }
        }
        match rt.bridge("calling the parker back") {
            Bridged::Answered => {
                let ep = Endpoint::new("park_slot", Some(slot), Some("the parker".into()));
                return bridging::answered(
                    rt,
                    ep,
                    None,
                    Action::next("the parker took the call back: `_`"),
                );
            }
            Bridged::Hangup => return Action::stop("the parked caller hung up"),
            Bridged::Failed { .. } | Bridged::Timeout => {
                if node.child(slot).is_some() || node.child("_").is_some() {
                    return Action::go(
                        slot.to_string(),
                        format!("the parker did not answer: child \"{slot}\" (else `_`)"),
                    );
                }
                rt.add("the parker did not answer and there is no child: the call stays parked");
            }
        }
    }
}

pub(crate) fn directory<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let id = text(node.data(), "id").unwrap_or("");
    let docs = rt.docs;
    let dir = docs.get("directories", id);
    if dir.is_none() && !id.is_empty() {
        rt.missing(
            "directories",
            id,
            "its users are taken from the users' `directories` keys",
        );
    }
    let users: Vec<(&'a Doc, String)> = docs
        .all("users")
        .into_iter()
        .filter_map(|u| {
            let cf = u
                .get("directories")
                .and_then(|m| m.get(id))
                .and_then(Value::as_str)?;
            Some((u, cf.to_string()))
        })
        .collect();
    if users.is_empty() {
        rt.say(format!(
            "dial-by-name directory {}: no users",
            label(dir, Some(id))
        ));
        return Action::next("empty directory: `_`");
    }
    let sort_by = dir.and_then(|d| text(d, "sort_by")).unwrap_or("last_name");
    rt.say(format!(
        "dial-by-name directory {} ({} users): the caller spells the {}",
        label(dir, Some(id)),
        users.len(),
        sort_by.replace('_', " ")
    ));
    for attempt in 1..=3 {
        let digits = match rt.digits("the name being spelled", 32, &['#']) {
            Digits::Hangup => return Action::stop("the caller hung up"),
            Digits::Got(d) => d,
        };
        if digits.is_empty() {
            rt.add(&format!("nothing entered (try {attempt} of 3)"));
            continue;
        }
        if digits == "0" {
            rt.quirk("in the directory only a follow-up \"0\" leaves to `_`; a first digit \"0\" is taken as a letter key");
        }
        let hit = users.iter().find(|(u, _)| {
            let name = text(u, sort_by).unwrap_or("");
            let keys: String = name.chars().filter_map(letter_key).collect();
            !keys.is_empty() && keys.starts_with(&digits)
        });
        match hit {
            Some((u, cf)) => {
                rt.add(&format!(
                    "\"{digits}\" matches {}",
                    label(Some(u), data::doc_id(u))
                ));
                return match docs
                    .get("callflows", cf)
                    .and_then(|doc| FlowRef::from_callflow(cf, doc))
                {
                    Some(flow) => Action::Branch {
                        flow,
                        reason: format!("branches into the user's callflow {cf}"),
                    },
                    None => {
                        rt.missing("callflows", cf, "the directory continues to `_`");
                        Action::next("the user's callflow is not available: `_`")
                    }
                };
            }
            None => rt.add(&format!("\"{digits}\" matches nobody")),
        }
    }
    Action::stop("no match after three tries: stop")
}

/// The phone key a letter is on.
fn letter_key(c: char) -> Option<char> {
    let c = c.to_ascii_lowercase();
    Some(match c {
        'a'..='c' => '2',
        'd'..='f' => '3',
        'g'..='i' => '4',
        'j'..='l' => '5',
        'm'..='o' => '6',
        'p'..='s' => '7',
        't'..='v' => '8',
        'w'..='z' => '9',
        _ => return None,
    })
}

pub(crate) fn disa<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let pin = text(d, "pin").unwrap_or("");
    let retries = data::int(d, "retries").unwrap_or(3).max(1);
    let max_digits = data::int(d, "max_digits").unwrap_or(15).max(1) as usize;
    rt.say(format!(
        "dial-through (DISA){}: the caller dials a number",
        if pin.is_empty() { "" } else { ", after a PIN" }
    ));
    if !pin.is_empty() {
        let mut ok = false;
        for attempt in 1..=retries {
            if attempt > 1 && !rt.input_next() {
                rt.add("no more entries: the remaining tries time out the same way");
                break;
            }
            match rt.digits("the DISA PIN", 15, &['#']) {
                Digits::Hangup => return Action::stop("the caller hung up"),
                Digits::Got(p) if p == pin => {
                    rt.add("PIN accepted");
                    ok = true;
                    break;
                }
                Digits::Got(_) => rt.add(&format!("wrong PIN (try {attempt} of {retries})")),
            }
        }
        if !ok {
            return Action::stop("too many wrong PINs: plays a prompt and stops");
        }
    }
    for attempt in 1..=retries {
        if !rt.input_next() {
            rt.assume(
                "DISA asks for a number until the caller hangs up: assumed the caller hangs up",
            );
            rt.caller_gone = true;
            rt.destroyed = true;
            return Action::stop("the caller hung up");
        }
        let number = match rt.digits("the number to dial through", max_digits, &['#']) {
            Digits::Hangup => return Action::stop("the caller hung up"),
            Digits::Got(n) => n,
        };
        if number.is_empty() {
            rt.quirk("DISA asks again on an empty entry without spending a retry");
            continue;
        }
        let number = normalize(rt, &number);
        match rt.lookup(&number) {
            Some((route, Some(flow))) => {
                rt.add(&format!("dials {number}: callflow {}", route.callflow_id));
                return Action::Branch {
                    flow,
                    reason: format!("branches into callflow {} for {number}", route.callflow_id),
                };
            }
            _ => rt.add(&format!(
                "no callflow for {number} (try {attempt} of {retries})"
            )),
        }
    }
    Action::next("retries exhausted: `_`")
}

pub(crate) fn transfer<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let target = text(d, "target")
        .map(str::to_string)
        .or_else(|| rt.capture_group.clone())
        .unwrap_or_else(|| "no_match".into());
    let kind = text(d, "transfer_type").unwrap_or("blind");
    rt.say(format!("{kind} transfer to {target}"));
    Action::end(
        Ending::new(
            OutcomeKind::Transferred,
            format!("{kind} transfer to {target}"),
        )
        .at(Endpoint::new("number", Some(&target), None)),
    )
}
