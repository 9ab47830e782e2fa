//! Bridging modules: user, device, ring_group, group, page_group, route_to_cid, resources,
//! offnet, hotdesk.
//!
//! Owns building the endpoint list the way Kazoo's endpoint builder refuses endpoints
//! (calling itself, the caller's own user, disabled, do-not-disturb), ring strategies and
//! repeats, and mapping a bridge result onto the executor: answered → stop, failed → the
//! child named by the cause then the `sip:` code (`cf_util:handle_bridge_failure`), else `_`.
//! Must not decide metaflow behaviour during an answered bridge (metaflows.rs does).

use serde_json::Value;

use crate::engine::data::{self, label, text};
use crate::engine::exec::{Action, Bridged, Ending, FlowRef, Run};
use crate::engine::metaflows;
use crate::engine::trace::{Endpoint, OutcomeKind};
use crate::engine::{Dial, Doc, Target};

/// Kazoo's `DEFAULT_TIMEOUT_S`.
const DEFAULT_TIMEOUT_S: i64 = 20;

/// A device that will ring.
pub(crate) struct Ep<'a> {
    pub id: String,
    pub doc: Option<&'a Doc>,
    /// A ring group member's own ring time and start delay, seconds.
    pub timeout: Option<i64>,
    pub delay: Option<i64>,
}

impl Ep<'_> {
    fn label(&self) -> String {
        label(self.doc, Some(&self.id))
    }
}

/// Why Kazoo's endpoint builder refuses a device, if it does
/// (`kz_endpoint:evaluate_rules_for_creation`).
fn refusal(rt: &Run<'_>, id: &str, device: &Doc, can_call_self: bool) -> Option<&'static str> {
    if !can_call_self && rt.call.caller.device_id.as_deref() == Some(id) {
        return Some("it is the calling device");
    }
    let owner = text(device, "owner_id");
    if !can_call_self && owner.is_some() && owner == rt.owner_id.as_deref() {
        return Some("its owner is the caller");
    }
    if data::is_false(device, "enabled") {
        return Some("it is disabled");
    }
    let dnd = |d: &Doc| {
        d.get("do_not_disturb")
            .and_then(Value::as_object)
            .is_some_and(|o| data::is_true(o, "enabled", false))
    };
    let owner_doc = owner.and_then(|o| rt.docs.get("users", o));
    if dnd(device) || owner_doc.is_some_and(dnd) {
        return Some("do not disturb is on");
    }
    None
}

/// Builds one device endpoint, noting refusals and missing documents.
fn device_ep<'a>(
    rt: &mut Run<'a>,
    id: &str,
    can_call_self: bool,
    skipped: &mut Vec<String>,
) -> Option<Ep<'a>> {
    let docs = rt.docs;
    let Some(doc) = docs.get("devices", id) else {
        rt.missing(
            "devices",
            id,
            "Kazoo cannot build that endpoint and leaves it out",
        );
        skipped.push(format!("{id} (missing)"));
        return None;
    };
    if let Some(why) = refusal(rt, id, doc, can_call_self) {
        skipped.push(format!("{} ({why})", label(Some(doc), Some(id))));
        return None;
    }
    Some(Ep {
        id: id.to_string(),
        doc: Some(doc),
        timeout: None,
        delay: None,
    })
}

/// A user's devices (`kz_endpoints:by_owner_id`).
fn user_eps<'a>(
    rt: &mut Run<'a>,
    user_id: &str,
    can_call_self: bool,
    skipped: &mut Vec<String>,
) -> Vec<Ep<'a>> {
    let docs = rt.docs;
    let mut out = Vec::new();
    for dev in docs.owned_by("devices", user_id) {
        let Some(id) = data::doc_id(dev) else {
            continue;
        };
        if let Some(why) = refusal(rt, id, dev, can_call_self) {
            skipped.push(format!("{} ({why})", label(Some(dev), Some(id))));
            continue;
        }
        out.push(Ep {
            id: id.to_string(),
            doc: Some(dev),
            timeout: None,
            delay: None,
        });
    }
    out
}

/// What a bridge over `eps` rings, for a routing run.
fn dial_of(eps: &[Ep<'_>], strategy: &str, timeout: i64) -> Dial {
    Dial {
        strategy: if strategy == "single" {
            "single"
        } else {
            "simultaneous"
        }
        .to_string(),
        timeout,
        targets: eps
            .iter()
            .map(|e| Target::Device {
                id: e.id.clone(),
                timeout: e.timeout,
                delay: e.delay,
            })
            .collect(),
    }
}

fn list(eps: &[Ep<'_>]) -> String {
    eps.iter().map(Ep::label).collect::<Vec<_>>().join(", ")
}

fn skipped_note(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(" (left out: {})", skipped.join(", "))
    }
}

/// How long a bridge rings, in words. A timeout of 0 (the device node's schema default) gives
/// the bridge no limit of its own: each endpoint rings for its own time.
fn ring_time(t: i64) -> String {
    if t > 0 {
        format!("for up to {t} s")
    } else {
        "with no time limit of its own (each endpoint rings for its own time)".to_string()
    }
}

fn timeout(d: &serde_json::Map<String, Value>, default: i64) -> i64 {
    data::int(d, "timeout").unwrap_or(default)
}

/// `cf_util:handle_bridge_failure`: the child named by the cause, then by the code.
pub(crate) fn failure_child(
    node: &FlowRef<'_>,
    cause: &str,
    code: Option<&str>,
) -> Option<(String, String)> {
    if node.attemptable(cause) {
        return Some((cause.to_string(), format!("\"{cause}\" matched a child")));
    }
    let code = code?;
    node.attemptable(code).then(|| {
        (
            code.to_string(),
            format!("\"{code}\" matched a child (no child \"{cause}\")"),
        )
    })
}

/// What an answered bridge leads to: metaflows may act during it; otherwise the bridged call
/// ends with the bridge and `then` is what the module does next.
pub(crate) fn answered<'a>(
    rt: &mut Run<'a>,
    endpoint: Endpoint,
    callee: Option<&'a Doc>,
    then: Action<'a>,
) -> Action<'a> {
    rt.bridged = true;
    let name = endpoint
        .name
        .clone()
        .unwrap_or_else(|| endpoint.kind.clone());
    let detail = match endpoint.kind.as_str() {
        "resources" => format!("the carrier call to {name} is answered"),
        _ => format!("the call is answered by {name}"),
    };
    rt.pending = Some(Ending::new(OutcomeKind::Connected, detail).at(endpoint));
    if let Some(action) = metaflows::during_bridge(rt, callee) {
        return action;
    }
    if rt.depth() > 0 {
        rt.assume(
            "the bridged call is taken to end when the bridge ends (the channel is gone); had the caller stayed on the line, Kazoo would resume the saved `_`",
        );
    }
    if !rt.destroyed {
        // A hangup ending the bridge is consumed here so it is not reported as unused.
        if let Some(crate::engine::Event::Hangup) = rt.peek() {
            let _ = rt.next_event("the end of the bridge", |_| false);
        }
    }
    rt.destroyed = true;
    then
}

/// The user/device/group mapping of a bridge result.
fn bridge_result<'a>(
    rt: &mut Run<'a>,
    node: &FlowRef<'a>,
    result: Bridged,
    endpoint: Endpoint,
    callee: Option<&'a Doc>,
    on_success: Action<'a>,
) -> Action<'a> {
    match result {
        Bridged::Answered => answered(rt, endpoint, callee, on_success),
        Bridged::Hangup => Action::stop("the caller hung up during the bridge"),
        Bridged::Timeout => {
            Action::next("the bridge timed out (Kazoo's bridge error): continue to `_`")
        }
        Bridged::Failed { cause, code } => {
            let cause = cause.unwrap_or_else(|| "UNSPECIFIED".into());
            let code = code.unwrap_or_else(|| "sip:600".into());
            match failure_child(node, &cause, Some(&code)) {
                Some((key, why)) => {
                    Action::child(key, format!("bridge failed ({cause}, {code}): {why}"))
                }
                None => Action::next(format!(
                    "bridge failed ({cause}, {code}); no child for either, so `_`"
                )),
            }
        }
    }
}

pub(crate) fn user<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let Some(user_id) = text(d, "id") else {
        rt.say("rings a user, but data.id is missing: no endpoints");
        return Action::next("a user node without an id has no endpoints: `_`");
    };
    let docs = rt.docs;
    let user_doc = docs.get("users", user_id);
    if user_doc.is_none() {
        rt.missing(
            "users",
            user_id,
            "its devices are still looked up by owner_id",
        );
    }
    let name = label(user_doc, Some(user_id));
    let can_self = data::is_true(d, "can_call_self", false);
    let mut skipped = Vec::new();
    let eps = user_eps(rt, user_id, can_self, &mut skipped);
    let strategy = text(d, "strategy").unwrap_or("simultaneous");
    let t = timeout(d, DEFAULT_TIMEOUT_S);
    if eps.is_empty() {
        let why = if skipped.is_empty() {
            " (the user owns no devices)".to_string()
        } else {
            skipped_note(&skipped)
        };
        rt.say(format!("rings user {name}: no device can ring{why}"));
        return Action::next("the user has no endpoints: continue to `_`");
    }
    rt.say(format!(
        "rings user {name} on {} device(s) ({}), {strategy}, {}{}",
        eps.len(),
        list(&eps),
        ring_time(t),
        skipped_note(&skipped)
    ));
    rt.dial(dial_of(&eps, strategy, t));
    let result = rt.bridge(&format!("ringing user {name}"));
    let endpoint = Endpoint::new(
        "user",
        Some(user_id),
        user_doc.and_then(data::doc_name).or(Some(name.clone())),
    );
    let callee = eps.first().and_then(|e| e.doc);
    bridge_result(
        rt,
        node,
        result,
        endpoint,
        callee,
        Action::stop("the bridge completed: Kazoo stops"),
    )
}

pub(crate) fn device<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let Some(id) = text(d, "id") else {
        rt.say("rings a device, but data.id is missing");
        return Action::next("the endpoint cannot be built: `_`");
    };
    let can_self = data::is_true(d, "can_call_self", false);
    let mut skipped = Vec::new();
    let Some(ep) = device_ep(rt, id, can_self, &mut skipped) else {
        rt.say(format!("rings device {}: not rung{}", skipped.join(""), ""));
        return Action::next("the endpoint cannot be built: continue to `_`");
    };
    let t = timeout(d, DEFAULT_TIMEOUT_S);
    let fwd = ep
        .doc
        .and_then(|doc| doc.get("call_forward"))
        .and_then(Value::as_object)
        .filter(|cf| data::is_true(cf, "enabled", false))
        .and_then(|cf| text(cf, "number"))
        .map(|n| format!(" (forwarded to {n})"))
        .unwrap_or_default();
    rt.say(format!("rings device {}{fwd} {}", ep.label(), ring_time(t)));
    rt.dial(dial_of(std::slice::from_ref(&ep), "simultaneous", t));
    let result = rt.bridge(&format!("ringing device {}", ep.label()));
    let endpoint = Endpoint::new("device", Some(id), ep.doc.and_then(data::doc_name));
    bridge_result(
        rt,
        node,
        result,
        endpoint,
        ep.doc,
        Action::stop("the bridge completed: Kazoo stops"),
    )
}

/// Members of a group document (`endpoints: {id: {type}}`), expanded to devices.
fn group_members<'a>(
    rt: &mut Run<'a>,
    group: &'a Doc,
    can_self: bool,
    skipped: &mut Vec<String>,
) -> Vec<Ep<'a>> {
    let mut out: Vec<Ep<'a>> = Vec::new();
    let Some(members) = group.get("endpoints").and_then(Value::as_object) else {
        return out;
    };
    for (id, m) in members {
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("device");
        let eps = match kind {
            "user" => user_eps(rt, id, can_self, skipped),
            _ => device_ep(rt, id, can_self, skipped).into_iter().collect(),
        };
        for ep in eps {
            if !out.iter().any(|e| e.id == ep.id) {
                out.push(ep);
            }
        }
    }
    out
}

/// `ring_group` members, expanded (`cf_ring_group:get_endpoints`).
fn ring_group_members<'a>(
    rt: &mut Run<'a>,
    d: &serde_json::Map<String, Value>,
    skipped: &mut Vec<String>,
) -> Vec<Ep<'a>> {
    let now_greg = rt.call.now.timestamp() + GREGORIAN_OFFSET;
    let mut out: Vec<Ep<'a>> = Vec::new();
    let members = d
        .get("endpoints")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for m in members {
        let Some(m) = m.as_object() else { continue };
        let Some(id) = text(m, "id") else { continue };
        if data::int(m, "disable_until").is_some_and(|t| t > now_greg) {
            skipped.push(format!("{id} (disabled until later by ring_group_toggle)"));
            continue;
        }
        let can_self =
            data::is_true(m, "can_call_self", false) || data::is_true(d, "can_call_self", false);
        let eps = match text(m, "endpoint_type").unwrap_or("device") {
            "user" => user_eps(rt, id, can_self, skipped),
            "group" => {
                let docs = rt.docs;
                match docs.get("groups", id) {
                    Some(g) => group_members(rt, g, can_self, skipped),
                    None => {
                        rt.missing("groups", id, "its members are left out");
                        skipped.push(format!("group {id} (missing)"));
                        Vec::new()
                    }
                }
            }
            _ => device_ep(rt, id, can_self, skipped).into_iter().collect(),
        };
        for mut ep in eps {
            if !out.iter().any(|e| e.id == ep.id) {
                ep.timeout = data::int(m, "timeout");
                ep.delay = data::int(m, "delay");
                out.push(ep);
            }
        }
    }
    out
}

/// Seconds between year 0 and 1970 (Kazoo stores gregorian seconds).
pub(crate) const GREGORIAN_OFFSET: i64 = 62_167_219_200;

/// Rings a member list with repeats (`cf_ring_group:repeat/3,4`).
fn ring_members<'a>(
    rt: &mut Run<'a>,
    node: &FlowRef<'a>,
    what: &str,
    eps: Vec<Ep<'a>>,
    skipped: &[String],
    endpoint: Endpoint,
) -> Action<'a> {
    let d = node.data();
    let strategy = text(d, "strategy").unwrap_or("simultaneous");
    let repeats = data::int(d, "repeats").unwrap_or(1).max(1);
    let t = timeout(d, DEFAULT_TIMEOUT_S);
    if eps.is_empty() {
        rt.say(format!(
            "rings {what}: no member can ring{}",
            skipped_note(skipped)
        ));
        return Action::next("no endpoints: continue to `_`");
    }
    let order = if strategy == "weighted_random" {
        " (order drawn by weight at random)"
    } else {
        ""
    };
    rt.say(format!(
        "rings {what}: {} ({strategy}{order}), {t} s{}{}",
        list(&eps),
        if repeats > 1 {
            format!(", up to {repeats} times")
        } else {
            String::new()
        },
        skipped_note(skipped)
    ));
    let callee = eps.first().and_then(|e| e.doc);
    for attempt in 1..=repeats {
        rt.dial(dial_of(&eps, strategy, t));
        match rt.bridge(&format!("ringing {what}, attempt {attempt}")) {
            Bridged::Answered => {
                return answered(
                    rt,
                    endpoint,
                    callee,
                    Action::stop("the bridge completed: Kazoo stops"),
                );
            }
            Bridged::Hangup => return Action::stop("the caller hung up during the bridge"),
            Bridged::Failed { cause, code } => {
                let cause = cause.unwrap_or_else(|| "UNSPECIFIED".into());
                let code = code.unwrap_or_else(|| "sip:600".into());
                if let Some((key, why)) = failure_child(node, &cause, Some(&code)) {
                    return Action::child(key, format!("bridge failed ({cause}, {code}): {why}"));
                }
                rt.add(&format!(
                    "attempt {attempt} failed ({cause}, {code}), no failure child"
                ));
            }
            Bridged::Timeout => rt.add(&format!("attempt {attempt} timed out")),
        }
    }
    Action::next(format!(
        "{repeats} attempt(s) without an answer: continue to `_`"
    ))
}

pub(crate) fn ring_group<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let mut skipped = Vec::new();
    let eps = ring_group_members(rt, d, &mut skipped);
    let name = text(d, "name")
        .map(|n| format!("ring group '{n}'"))
        .unwrap_or_else(|| "the ring group".into());
    let endpoint = Endpoint::new("ring_group", None, text(d, "name").map(str::to_string));
    ring_members(rt, node, &name, eps, &skipped, endpoint)
}

pub(crate) fn group<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    if d.get("endpoints")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return ring_group(rt, node);
    }
    let id = text(d, "id");
    let docs = rt.docs;
    let Some(g) = id.and_then(|id| docs.get("groups", id)) else {
        if let Some(id) = id {
            rt.missing("groups", id, "Kazoo cannot open it and continues to `_`");
        }
        rt.say(format!(
            "rings group {}: the group cannot be opened",
            id.unwrap_or("(no id)")
        ));
        return Action::next("group document not found: `_`");
    };
    let name = label(Some(g), id);
    let mut skipped = Vec::new();
    let eps = group_members(rt, g, false, &mut skipped);
    let find = |k: &str| g.get(k).or_else(|| d.get(k));
    let t = find("timeout")
        .and_then(data::to_text)
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(DEFAULT_TIMEOUT_S);
    let strategy = find("strategy")
        .and_then(Value::as_str)
        .unwrap_or("simultaneous");
    if eps.is_empty() {
        // Kazoo bridges an empty list, which fails at once: no failure child matches an
        // empty result in practice, so `_`.
        rt.say(format!(
            "answers, then rings group {name}: no member can ring{}",
            skipped_note(&skipped)
        ));
        return Action::next("no endpoints to bridge: `_`");
    }
    rt.say(format!(
        "answers, then rings group {name}: {} ({strategy}), {t} s{}",
        list(&eps),
        skipped_note(&skipped)
    ));
    rt.dial(dial_of(&eps, strategy, t));
    let result = rt.bridge(&format!("ringing group {name}"));
    let endpoint = Endpoint::new("group", id, data::doc_name(g));
    let callee = eps.first().and_then(|e| e.doc);
    bridge_result(
        rt,
        node,
        result,
        endpoint,
        callee,
        Action::stop("the bridge completed: Kazoo stops"),
    )
}

pub(crate) fn page_group<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let mut skipped = Vec::new();
    let eps = ring_group_members(rt, d, &mut skipped);
    let audio = text(d, "audio").unwrap_or("one-way");
    let t = timeout(d, 5);
    if eps.is_empty() {
        rt.say(format!(
            "pages: no member can be paged{}",
            skipped_note(&skipped)
        ));
        return Action::next("no endpoints: `_`");
    }
    rt.say(format!(
        "pages {} ({audio}, auto-answer, {t} s){}",
        list(&eps),
        skipped_note(&skipped)
    ));
    match rt.bridge("the page") {
        Bridged::Answered => {
            let ep = Endpoint::new("page_group", None, text(d, "name").map(str::to_string));
            answered(
                rt,
                ep,
                None,
                Action::stop("the page completed: Kazoo stops"),
            )
        }
        Bridged::Hangup => Action::stop("the caller hung up"),
        Bridged::Failed { .. } | Bridged::Timeout => Action::next("the page failed: `_`"),
    }
}

pub(crate) fn route_to_cid<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let callee = rt.call.number.clone();
    let cid_types: Vec<&str> = data::strings(d, "cid_types");
    let endpoint_types: Vec<&str> = data::strings(d, "endpoint_types");
    let docs = rt.docs;
    let mut eps = Vec::new();
    let mut skipped = Vec::new();
    for (doc_type, ep_type) in [("devices", "device"), ("users", "user")] {
        if !endpoint_types.is_empty() && !endpoint_types.contains(&ep_type) {
            continue;
        }
        for doc in docs.all(doc_type) {
            let Some(cid) = doc.get("caller_id").and_then(Value::as_object) else {
                continue;
            };
            let hit = cid.iter().any(|(t, v)| {
                (cid_types.is_empty() || cid_types.contains(&t.as_str()))
                    && v.get("number").and_then(Value::as_str) == Some(callee.as_str())
            });
            let Some(id) = data::doc_id(doc) else {
                continue;
            };
            if !hit {
                continue;
            }
            match ep_type {
                "user" => eps.extend(user_eps(rt, id, false, &mut skipped)),
                _ => eps.extend(device_ep(rt, id, false, &mut skipped)),
            }
        }
    }
    if eps.is_empty() {
        rt.say(format!(
            "looks for endpoints whose caller id number is {callee}: none"
        ));
        return Action::next("no endpoint has that caller id: `_`");
    }
    let endpoint = Endpoint::new("number", Some(&callee), None);
    ring_members(
        rt,
        node,
        &format!("endpoints whose caller id is {callee}"),
        eps,
        &skipped,
        endpoint,
    )
}

pub(crate) fn resources<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    carriers(
        rt,
        node,
        data::is_true(node.data(), "use_local_resources", true),
    )
}

pub(crate) fn offnet<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    carriers(rt, node, false)
}

/// `cf_resources`: an offnet request to stepswitch and its response.
fn carriers<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>, local: bool) -> Action<'a> {
    let d = node.data();
    let to = text(d, "to_did")
        .map(str::to_string)
        .unwrap_or_else(|| rt.call.number.clone());
    let via = if local {
        let docs = rt.docs;
        let names: Vec<String> = docs
            .all("resources")
            .into_iter()
            .filter(|r| !data::is_false(r, "enabled"))
            .map(|r| label(Some(r), data::doc_id(r)))
            .collect();
        if names.is_empty() {
            "the account's own carriers".to_string()
        } else {
            format!("the account's own carriers ({})", names.join(", "))
        }
    } else {
        "the system's global carriers".to_string()
    };
    let hunt = text(d, "hunt_account_id")
        .map(|a| format!(", hunting in account {a}"))
        .unwrap_or_default();
    rt.say(format!("calls {to} out through {via}{hunt}"));
    let endpoint = Endpoint::new("resources", None, Some(to.clone()));
    rt.dial(Dial {
        strategy: "single".into(),
        timeout: 0,
        targets: vec![Target::Carrier {
            number: to.clone(),
            local,
        }],
    });
    match rt.bridge(&format!("the outbound call to {to}")) {
        Bridged::Answered => answered(
            rt,
            endpoint,
            None,
            Action::stop("the carrier call completed (SUCCESS): Kazoo stops"),
        ),
        Bridged::Hangup => Action::stop("the caller hung up"),
        Bridged::Timeout => {
            rt.warn(
                "default_assumed",
                "resources waits for stepswitch without a time limit; a bridge timeout is read as stepswitch reporting NO_ANSWER",
            );
            carrier_failure(rt, node, "NO_ANSWER".into(), None)
        }
        Bridged::Failed { cause, code } => {
            let cause = cause.unwrap_or_else(|| "UNSPECIFIED".into());
            match (cause.as_str(), code.as_deref()) {
                ("TRANSFER", _) => Action::end(
                    Ending::new(
                        OutcomeKind::Transferred,
                        format!("the carrier call to {to} was transferred"),
                    )
                    .at(endpoint),
                ),
                ("NORMAL_CLEARING", Some("sip:200") | None) => {
                    rt.quirk("a NORMAL_CLEARING result without another code counts as success for resources");
                    answered(
                        rt,
                        endpoint,
                        None,
                        Action::stop("NORMAL_CLEARING counts as a completed call: Kazoo stops"),
                    )
                }
                _ => carrier_failure(rt, node, cause, code),
            }
        }
    }
}

fn carrier_failure<'a>(
    rt: &mut Run<'a>,
    node: &FlowRef<'a>,
    cause: String,
    code: Option<String>,
) -> Action<'a> {
    if let Some((key, why)) = failure_child(node, &cause, code.as_deref()) {
        return Action::child(key, format!("carrier call failed ({cause}): {why}"));
    }
    if node.attemptable("_") {
        rt.quirk("resources never falls back to `_` when the carrier call fails (unlike user and device): it stops with the cause");
    }
    let default = if node.wildcard_is_empty() {
        "; Kazoo sends the default SIP response for that cause"
    } else {
        ""
    };
    Action::Stop {
        cause: Some(cause.clone()),
        reason: format!(
            "carrier call failed ({cause}{}), no failure child: stop with the cause{default}",
            code.map(|c| format!(", {c}")).unwrap_or_default()
        ),
    }
}

pub(crate) fn hotdesk<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let action = text(d, "action").unwrap_or("");
    let id = text(d, "id")
        .map(str::to_string)
        .or_else(|| (action == "logout").then(|| rt.owner_id.clone()).flatten());
    let docs = rt.docs;
    let Some(user) = id.as_deref().and_then(|id| docs.get("users", id)) else {
        if let Some(id) = id.as_deref() {
            rt.missing(
                "users",
                id,
                "Kazoo finds no hotdesk profile and continues to `_`",
            );
        }
        rt.say(format!("hotdesk {action}: no hotdesk profile"));
        return Action::next("no hotdesk profile: `_`");
    };
    let uid = id.as_deref().unwrap_or_default();
    let name = label(Some(user), Some(uid));
    let hd = user
        .get("hotdesk")
        .and_then(Value::as_object)
        .unwrap_or(&data::EMPTY);
    match action {
        "bridge" => {
            if !data::is_true(hd, "enabled", false) {
                rt.say(format!(
                    "hotdesk bridge to {name}: hotdesking is off for that user"
                ));
                return Action::next("hotdesk disabled: `_`");
            }
            let mut eps = Vec::new();
            for dev in docs.all("devices") {
                let logged = dev
                    .get("hotdesk")
                    .and_then(|h| h.get("users"))
                    .and_then(Value::as_object)
                    .is_some_and(|u| u.contains_key(uid));
                if let (true, Some(did)) = (logged, data::doc_id(dev)) {
                    eps.push(Ep {
                        id: did.to_string(),
                        doc: Some(dev),
                        timeout: None,
                        delay: None,
                    });
                }
            }
            rt.say(format!(
                "rings the devices {name} is hotdesked on: {}",
                if eps.is_empty() {
                    "none".into()
                } else {
                    list(&eps)
                }
            ));
            let result = rt.bridge(&format!("the hotdesk bridge to {name}"));
            let endpoint = Endpoint::new("user", Some(uid), data::doc_name(user));
            let callee = eps.first().and_then(|e| e.doc);
            if matches!(result, Bridged::Answered) {
                rt.quirk("hotdesk continues to `_` even after a successful bridge (unlike user and device)");
            }
            bridge_result(
                rt,
                node,
                result,
                endpoint,
                callee,
                Action::next("the hotdesk bridge completed: Kazoo continues to `_`"),
            )
        }
        "login" | "logout" | "toggle" => {
            let logged_in = rt.caller_device().is_some_and(|dev| {
                dev.get("hotdesk")
                    .and_then(|h| h.get("users"))
                    .and_then(Value::as_object)
                    .is_some_and(|u| !u.is_empty())
            });
            let effective = match action {
                "toggle" if logged_in => "logout",
                "toggle" => "login",
                a => a,
            };
            if effective == "login" && data::is_true(hd, "require_pin", false) {
                let pin = text(hd, "pin").unwrap_or("");
                for attempt in 1..=3 {
                    match rt.digits("the hotdesk PIN", 10, &['#']) {
                        crate::engine::exec::Digits::Hangup => {
                            return Action::stop("the caller hung up")
                        }
                        crate::engine::exec::Digits::Got(p) if p == pin && !pin.is_empty() => {
                            rt.say(format!(
                                "logs {name} in on the calling device (PIN accepted)"
                            ));
                            return Action::next("hotdesk login done: `_`");
                        }
                        crate::engine::exec::Digits::Got(_) => {
                            rt.say(format!("asks for {name}'s hotdesk PIN: wrong or empty (attempt {attempt} of 3)"));
                        }
                    }
                }
                rt.add("too many wrong PINs: goodbye");
                return Action::next("hotdesk login failed: `_`");
            }
            let how = if effective == "login" {
                "in on"
            } else {
                "out of"
            };
            rt.say(format!("logs {name} {how} the calling device"));
            Action::next(format!("hotdesk {effective} done: `_`"))
        }
        other => {
            rt.say(format!(
                "hotdesk with action \"{other}\": Kazoo has no such action (the process crashes)"
            ));
            Action::next("a crashed module continues to `_`")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engine::testkit::{codes, walk, Sim};
    use crate::engine::OutcomeKind;

    fn sim() -> Sim {
        Sim::new()
            .doc(
                "users",
                "u1",
                json!({"first_name": "Ann", "last_name": "Lee"}),
            )
            .doc("devices", "d1", json!({"name": "Desk", "owner_id": "u1"}))
            .doc(
                "devices",
                "d2",
                json!({"name": "Cell", "owner_id": "u1", "enabled": false}),
            )
            .doc("devices", "d3", json!({"name": "Lobby"}))
    }

    #[test]
    fn a_busy_user_takes_the_user_busy_child() {
        let flow = json!({"module": "user", "data": {"id": "u1"}, "children": {
            "USER_BUSY": {"module": "play", "data": {"id": "busy"}},
            "_": {"module": "voicemail", "data": {"id": "vm1"}}
        }});
        let t = sim()
            .events(json!([{"bridge": "failed", "cause": "USER_BUSY", "code": "sip:486"}]))
            .run(flow.clone());
        assert_eq!(walk(&t), ["user->USER_BUSY", "play"]);
        assert!(
            t.steps[0].summary.contains("'Desk' (d1)"),
            "{}",
            t.steps[0].summary
        );
        assert!(
            t.steps[0].summary.contains("it is disabled"),
            "{}",
            t.steps[0].summary
        );
        // Keyed by the SIP code when the cause has no child.
        let mut by_code = flow.clone();
        by_code["children"] = json!({"sip:486": {"module": "hangup", "data": {}}});
        let t = sim()
            .events(json!([{"bridge": "failed", "cause": "USER_BUSY", "code": "sip:486"}]))
            .run(by_code);
        assert_eq!(walk(&t), ["user->sip:486", "hangup"]);
        // Neither: `_`.
        let t = sim().events(json!([{"bridge": "failed"}])).run(flow);
        assert_eq!(walk(&t), ["user->_", "voicemail"]);
        assert!(t.steps[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("UNSPECIFIED, sip:600"));
    }

    #[test]
    fn a_device_node_without_a_timeout_says_the_bridge_has_no_limit() {
        let t = sim().run(json!({"module": "device", "data": {"id": "d3", "timeout": 0}}));
        assert!(
            t.steps[0].summary.contains("no time limit of its own"),
            "{}",
            t.steps[0].summary
        );
        let t = sim().run(json!({"module": "device", "data": {"id": "d3", "timeout": 15}}));
        assert!(
            t.steps[0].summary.ends_with("for up to 15 s"),
            "{}",
            t.steps[0].summary
        );
    }

    #[test]
    fn an_answered_user_ends_the_call_connected() {
        let flow = json!({"module": "user", "data": {"id": "u1"}, "children": {"_": {"module": "voicemail", "data": {}}}});
        let t = sim().run(flow);
        assert_eq!(walk(&t), ["user"]);
        assert_eq!(t.outcome.kind, OutcomeKind::Connected);
        assert_eq!(
            t.outcome.endpoint.as_ref().unwrap().name.as_deref(),
            Some("Ann Lee")
        );
        assert_eq!(codes(&t), ["default_assumed"]);
    }

    #[test]
    fn a_user_calling_themselves_has_no_endpoints() {
        let mut s = sim();
        s.call.caller.device_id = Some("d1".into());
        let flow = json!({"module": "user", "data": {"id": "u1"}, "children": {"_": {"module": "hangup", "data": {}}}});
        let t = s.run(flow);
        assert_eq!(walk(&t), ["user->_", "hangup"]);
        assert!(t.steps[0].summary.contains("calling device"));
    }

    #[test]
    fn a_ring_group_without_answer_falls_over_to_the_wildcard_after_its_repeats() {
        let flow = json!({"module": "ring_group", "data": {"name": "Sales", "repeats": 2, "endpoints": [
            {"id": "u1", "endpoint_type": "user"}, {"id": "d3", "endpoint_type": "device"}
        ]}, "children": {"_": {"module": "voicemail", "data": {"id": "vm1"}}}});
        let t = sim()
            .events(json!([{"bridge": "timeout"}, {"bridge": "failed", "cause": "NO_ANSWER", "code": "sip:480"}]))
            .run(flow);
        assert_eq!(walk(&t), ["ring_group", "ring_group->_", "voicemail"]);
        assert!(
            t.steps[0].summary.contains("'Desk' (d1), 'Lobby' (d3)"),
            "{}",
            t.steps[0].summary
        );
        assert!(t.steps[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("2 attempt(s)"));
    }

    #[test]
    fn resources_failing_never_takes_the_wildcard() {
        let flow = json!({"module": "resources", "data": {}, "children": {"_": {"module": "voicemail", "data": {}}}});
        let t = sim()
            .events(
                json!([{"bridge": "failed", "cause": "NO_ROUTE_DESTINATION", "code": "sip:404"}]),
            )
            .run(flow.clone());
        assert_eq!(walk(&t), ["resources"]);
        assert_eq!(t.outcome.kind, OutcomeKind::Hangup);
        assert_eq!(t.outcome.cause.as_deref(), Some("NO_ROUTE_DESTINATION"));
        assert!(codes(&t).contains(&"kazoo_quirk"));
        // Inside a branch, the stop returns to the parent's `_`.
        let s = sim().doc("callflows", "out", json!({"flow": flow}));
        let parent = json!({"module": "callflow", "data": {"id": "out"}, "children": {"_": {"module": "play", "data": {"id": "sorry"}}}});
        let t = s
            .events(json!([{"bridge": "failed", "cause": "NO_ROUTE_DESTINATION"}]))
            .run(parent);
        assert_eq!(walk(&t), ["callflow", "resources", "play"]);
        assert!(t.steps[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("cause NO_ROUTE_DESTINATION is dropped"));
    }

    #[test]
    fn resources_failure_children_match_the_cause() {
        let flow = json!({"module": "resources", "data": {"to_did": "+15555550100"}, "children": {"NO_ROUTE_DESTINATION": {"module": "hangup", "data": {}}}});
        let t = sim()
            .events(json!([{"bridge": "failed", "cause": "NO_ROUTE_DESTINATION"}]))
            .run(flow);
        assert_eq!(walk(&t), ["resources->NO_ROUTE_DESTINATION", "hangup"]);
        assert!(t.steps[0].summary.contains("+15555550100"));
    }

    #[test]
    fn a_group_document_rings_its_members_and_a_missing_one_continues() {
        let s = sim().doc(
            "groups",
            "g1",
            json!({"name": "Support", "endpoints": {"d3": {"type": "device"}}}),
        );
        let t = s.run(json!({"module": "group", "data": {"id": "g1"}}));
        assert!(t.steps[0].summary.contains("'Support' (g1)"));
        assert_eq!(t.outcome.kind, OutcomeKind::Connected);
        let t = sim().run(json!({"module": "group", "data": {"id": "nope"}, "children": {"_": {"module": "hangup", "data": {}}}}));
        assert_eq!(walk(&t), ["group->_", "hangup"]);
        assert!(codes(&t).contains(&"document_missing"));
    }
}
