//! Routing modules: callflow, temporal_route (glue), check_cid, cidlistmatch, branch_bnumber,
//! branch_variable, fax_detect, nomorobo, privacy, intercom, function, pivot.
//!
//! Owns choosing a child (or a sub-flow) from the caller id, the dialled capture group, a
//! variable, the clock, or an external answer. Must not evaluate temporal rules itself
//! ([`crate::engine::temporal`] does) nor compile regexes (the routing pattern cache does).

use serde_json::{Map, Value};

use crate::engine::data::{self, label, text};
use crate::engine::events::{Event, FlowReply};
use crate::engine::exec::{Action, Digits, Ending, FlowRef, Next, Run};
use crate::engine::temporal;
use crate::engine::trace::OutcomeKind;

/// `cf_util:normalize_capture_group`: E.164 with the account's dial plan.
pub(crate) fn normalize(rt: &Run<'_>, number: &str) -> String {
    let plan = crate::domain::numbers::dial_plan_of(rt.account().and_then(|a| a.get("dial_plan")));
    crate::domain::numbers::normalize(number, &plan)
}

pub(crate) fn callflow<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let Some(id) = text(node.data(), "id") else {
        rt.say("jumps to another callflow, but data.id is missing");
        return Action::next("no callflow to open: `_`");
    };
    let docs = rt.docs;
    match docs.get("callflows", id) {
        Some(doc) => {
            let name = label(Some(doc), Some(id));
            rt.say(format!("jumps into callflow {name}"));
            let flow = FlowRef::from_callflow(id, doc)
                .unwrap_or_else(|| FlowRef::json(&Value::Null, id, "flow"));
            Action::Branch {
                flow,
                reason: format!("branches into callflow {id}"),
            }
        }
        None => {
            rt.missing("callflows", id, "Kazoo cannot open it and continues to `_`");
            rt.say(format!("jumps into callflow {id}: not found"));
            Action::next("callflow not found: `_`")
        }
    }
}

pub(crate) fn temporal_route<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let rules: Vec<&str> = data::strings(d, "rules");
    match text(d, "action") {
        Some(a @ ("enable" | "disable" | "reset")) => {
            let what = match a {
                "enable" => "forces on (enabled: true)",
                "disable" => "forces off (enabled: false)",
                _ => "returns to their schedule (removes enabled)",
            };
            rt.say(format!(
                "{what} the rules {}; plays a confirmation",
                rule_names(rt, &rules)
            ));
            rt.warn(
                "not_simulated",
                "the rule change is not saved: later temporal_route nodes in this simulation still see the rules as given",
            );
            return Action::next("rule override saved: `_`");
        }
        Some("menu") => {
            rt.say(format!(
                "plays the temporal override menu for {} (1 enable, 2 disable, 3 reset)",
                rule_names(rt, &rules)
            ));
            loop {
                if !rt.input_next() {
                    rt.assume("the temporal menu replays on a timeout until the caller hangs up: assumed the caller hangs up");
                    rt.caller_gone = true;
                    rt.destroyed = true;
                    return Action::stop("the caller hung up in the temporal menu");
                }
                match rt.digits("the temporal override menu", 1, &[]) {
                    Digits::Hangup => {
                        return Action::stop("the caller hung up in the temporal menu")
                    }
                    Digits::Got(k) => match k.as_str() {
                        "1" | "2" | "3" => {
                            let what = ["enables", "disables", "resets"]
                                [k.as_bytes()[0] as usize - b'1' as usize];
                            rt.say(format!("{what} the rules {}", rule_names(rt, &rules)));
                            rt.warn(
                                "not_simulated",
                                "the rule change is not saved for the rest of this simulation",
                            );
                            return Action::next("rule override chosen: `_`");
                        }
                        other => {
                            rt.say(format!(
                                "temporal menu: \"{other}\" is not 1, 2 or 3: the menu replays"
                            ));
                            rt.quirk("the temporal override menu replays on any other key or a timeout; only a hangup leaves it");
                        }
                    },
                }
            }
        }
        _ => {}
    }
    let keys = node.child_keys();
    let tz = rt.account().and_then(|a| text(a, "timezone"));
    let decision = temporal::evaluate(d, &keys, rt.call.now, tz, rt.docs);
    let checks: Vec<String> = decision
        .checks
        .iter()
        // The reason already names the rule; the id follows it.
        .map(|c| format!("{} [rule {}]", c.reason, c.rule_id))
        .collect();
    rt.say(format!(
        "checks the time against {} rule(s){}",
        decision.checks.len(),
        if checks.is_empty() {
            String::new()
        } else {
            format!(": {}", checks.join("; "))
        }
    ));
    for q in &decision.quirks {
        rt.quirk(format!("{}: {}", q.id, q.explanation));
    }
    if decision.crashed {
        return Action::next("Kazoo's temporal_route crashes on a rule it cannot evaluate: the executor continues to `_`");
    }
    if decision.stalled {
        // Kazoo's date search never ends for this rule: the call sits on the node, silent,
        // until the caller gives up.
        rt.quirk("temporal_stalled: a rule's next date can never be found (an ordinal Kazoo does not know, or a yearly weekday no year of the interval has): Kazoo's search loops and the call waits in silence until the caller hangs up".to_string());
        rt.caller_gone = true;
        rt.destroyed = true;
        return Action::stop("Kazoo's rule search never ends: the caller hangs up on the silence");
    }
    let reason = match &decision.matched_rule {
        Some(rule) => {
            let n = decision
                .checks
                .iter()
                .find(|c| &c.rule_id == rule)
                .and_then(|c| c.name.clone())
                .map(|n| format!("'{n}'"))
                .unwrap_or_else(|| rule.clone());
            format!("rule {n} active")
        }
        None => "no rule active".to_string(),
    };
    Action::go(decision.child_key, reason)
}

fn rule_names(rt: &Run<'_>, rules: &[&str]) -> String {
    if rules.is_empty() {
        return "(none listed in data.rules)".into();
    }
    rules
        .iter()
        .map(|id| label(rt.docs.get("temporal_rules", id), Some(id)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn check_cid<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let regex = text(d, "regex").unwrap_or(".*");
    let Some(number) = rt.cid_number.clone() else {
        rt.say(format!(
            "tests the caller id number against {regex:?}: the call has no caller id number"
        ));
        rt.quirk(
            "check_cid crashes when the caller id number is missing: the executor continues to `_`",
        );
        return Action::next("the module crashed: `_`");
    };
    let Some(matched) = data::regex_matches(regex, &number) else {
        rt.say(format!(
            "tests caller id {number} against {regex:?}: the regex does not compile"
        ));
        rt.quirk(
            "check_cid crashes on a regex that does not compile: the executor continues to `_`",
        );
        return Action::next("the module crashed: `_`");
    };
    let absolute = data::is_true(d, "use_absolute_mode", false);
    rt.say(format!(
        "tests caller id {number} against {regex:?}: {}",
        if matched { "match" } else { "no match" }
    ));
    if !matched {
        return if node.attemptable("nomatch") {
            Action::child("nomatch", format!("{number} does not match {regex:?}"))
        } else {
            Action::next(format!(
                "{number} does not match {regex:?}; no \"nomatch\" child: `_`"
            ))
        };
    }
    let key = if absolute {
        number.clone()
    } else {
        "match".to_string()
    };
    if !node.attemptable(&key) {
        return Action::next(format!(
            "{number} matches {regex:?}; no child \"{key}\"{}: `_`",
            if absolute {
                " (absolute mode uses the number as the key)"
            } else {
                ""
            }
        ));
    }
    // The caller id rewrite happens after the child was launched (§2.8).
    let cid = d
        .get("caller_id")
        .and_then(|c| c.get("external"))
        .and_then(Value::as_object);
    let (name, num) = (
        cid.and_then(|c| text(c, "name")),
        cid.and_then(|c| text(c, "number")),
    );
    if let (Some(name), Some(num), Some(user)) = (name, num, text(d, "user_id")) {
        rt.add(&format!(
            "sets caller id to {name} <{num}> and owner to {user}"
        ));
        rt.quirk("check_cid updates the caller id after the matched child was launched: that child still sees the old caller id, only later nodes see the new one");
        rt.cid_name = Some(name.to_string());
        rt.cid_number = Some(num.to_string());
        rt.owner_id = Some(user.to_string());
    }
    Action::child(key, format!("{number} matches {regex:?}"))
}

/// Entries of a list: embedded `entries` (old lists) or `list_entries` documents whose
/// `list_id` is the list.
pub(crate) fn list_entries<'a>(rt: &mut Run<'a>, list_id: &str) -> Vec<&'a Map<String, Value>> {
    let docs = rt.docs;
    if let Some(list) = docs.get("lists", list_id) {
        if let Some(e) = list.get("entries").and_then(Value::as_object) {
            return e.values().filter_map(Value::as_object).collect();
        }
    } else {
        rt.missing(
            "lists",
            list_id,
            "its entries are looked up by list_id anyway",
        );
    }
    docs.all("list_entries")
        .into_iter()
        .filter(|e| text(e, "list_id") == Some(list_id))
        .collect()
}

/// A list entry matching a number: prefix entries (`number`, or `prefix`) against every
/// leading part of the number (leading `+` dropped), then regex entries (`pattern`).
pub(crate) fn match_list<'e>(
    entries: &[&'e Map<String, Value>],
    number: &str,
) -> Option<(&'e Map<String, Value>, String)> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    for e in entries {
        if let Some(p) = text(e, "number").or_else(|| text(e, "prefix")) {
            if !digits.is_empty() && digits.starts_with(p) {
                return Some((e, format!("prefix {p}")));
            }
        }
    }
    for e in entries {
        if let Some(p) = text(e, "pattern") {
            if data::regex_matches(p, number) == Some(true) {
                return Some((e, format!("pattern {p:?}")));
            }
        }
    }
    None
}

pub(crate) fn cidlistmatch<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let number = rt.cid_number.clone().unwrap_or_default();
    let Some(list_id) = text(d, "id") else {
        rt.say("matches the caller id against a list, but data.id is missing: no match");
        return if node.attemptable("nomatch") {
            Action::child("nomatch", "no list")
        } else {
            Action::next("no list, no \"nomatch\" child: `_`")
        };
    };
    let entries = list_entries(rt, list_id);
    let list_name = label(rt.docs.get("lists", list_id), Some(list_id));
    let hit = match_list(&entries, &number);
    rt.say(format!(
        "matches caller id {number} against list {list_name} ({} entries): {}",
        entries.len(),
        hit.as_ref()
            .map(|(_, how)| format!("matched by {how}"))
            .unwrap_or_else(|| "no match".into())
    ));
    let key = if hit.is_some() { "match" } else { "nomatch" };
    if node.attemptable(key) {
        Action::child(
            key,
            format!(
                "caller id {}",
                if hit.is_some() {
                    "is in the list"
                } else {
                    "is not in the list"
                }
            ),
        )
    } else {
        Action::next(format!("no \"{key}\" child: `_`"))
    }
}

fn hunt_allowed(d: &Map<String, Value>, number: &str) -> Result<(), String> {
    if let Some(allow) = text(d, "hunt_allow") {
        match data::regex_matches(allow, number) {
            Some(true) => {}
            Some(false) => return Err(format!("{number} does not match hunt_allow {allow:?}")),
            None => {
                return Err(format!(
                    "hunt_allow {allow:?} does not compile, so nothing is allowed"
                ))
            }
        }
    }
    if let Some(deny) = text(d, "hunt_deny") {
        if data::regex_matches(deny, number) == Some(true) {
            return Err(format!("{number} matches hunt_deny {deny:?}"));
        }
    }
    Ok(())
}

pub(crate) fn branch_bnumber<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let Some(cg) = rt.capture_group.clone().filter(|c| !c.is_empty()) else {
        rt.say("branches on the dialled capture group, but there is none");
        return Action::next("no capture group: `_`");
    };
    let number = normalize(rt, &cg);
    if !data::is_true(d, "hunt", false) {
        rt.say(format!(
            "branches on the dialled number {number} (capture {cg}, normalised)"
        ));
        return Action::go(
            number.clone(),
            format!("child keyed by the normalised capture group {number}"),
        );
    }
    if let Err(why) = hunt_allowed(d, &number) {
        rt.say(format!("hunts for a callflow for {number}: not allowed"));
        return Action::next(format!("{why}: `_`"));
    }
    match rt.lookup(&number) {
        Some((route, _)) if route.no_match && !rt.call.caller.on_net() => {
            rt.say(format!(
                "hunts for a callflow for {number}: only no_match, which this caller may not use"
            ));
            Action::next("hunt found nothing usable: `_`")
        }
        Some((route, Some(flow))) => {
            rt.say(format!(
                "hunts for a callflow for {number}: callflow {}",
                route.callflow_id
            ));
            rt.capture_group = route.capture_group.clone();
            Action::Branch {
                flow,
                reason: format!("branches into callflow {}", route.callflow_id),
            }
        }
        _ => {
            rt.say(format!("hunts for a callflow for {number}: none"));
            Action::next("hunt failed: `_`")
        }
    }
}

/// Kazoo's `kz_json:normalize` of a key: lower case, `-` as `_`.
pub(crate) fn normalize_key(k: &str) -> String {
    k.to_ascii_lowercase().replace('-', "_")
}

pub(crate) fn branch_variable<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let scope = text(d, "scope").unwrap_or("custom_channel_vars");
    let variable: Option<Vec<String>> = match d.get("variable") {
        Some(Value::String(s)) if !s.is_empty() => Some(vec![s.clone()]),
        Some(Value::Array(a)) if !a.is_empty() => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    };
    let Some(path) = variable else {
        rt.say("branches on a variable, but data.variable is missing");
        return Action::next("no variable: `_`");
    };
    let shown = path.join(".");
    let from_doc = |doc: Option<&Map<String, Value>>| -> Option<String> {
        let mut cur = doc?;
        let (last, init) = path.split_last()?;
        for k in init {
            cur = cur.get(k)?.as_object()?;
        }
        cur.get(last)
            .and_then(data::to_text)
            .filter(|s| !s.is_empty())
    };
    let ccv = || {
        let key = normalize_key(&path.join("."));
        rt.ccvs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    };
    let docs = rt.docs;
    let device = rt.caller_device();
    let value = match scope {
        "custom_channel_vars" => ccv(),
        "account" => from_doc(rt.account()),
        "device" => from_doc(device),
        "user" => from_doc(rt.owner_id.as_deref().and_then(|o| docs.get("users", o))),
        _ => from_doc(device)
            .filter(|v| node.child_keys().contains(&v.as_str()))
            .or_else(ccv),
    };
    let Some(value) = value else {
        rt.say(format!("branches on {scope} variable {shown}: not set"));
        return Action::next(format!("{shown} has no value: `_`"));
    };
    rt.say(format!("branches on {scope} variable {shown} = {value}"));
    if value != "_" && node.child_keys().contains(&value.as_str()) {
        Action::go(
            value.clone(),
            format!("{shown} is \"{value}\", a child key"),
        )
    } else {
        Action::next(format!("no child \"{value}\": `_`"))
    }
}

pub(crate) fn fax_detect<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let secs = data::int(node.data(), "duration").unwrap_or(5);
    rt.say(format!("listens for fax tones for {secs} s"));
    let fax = match rt.next_event("fax detection", |e| matches!(e, Event::FaxDetect(_))) {
        Next::Got(Event::FaxDetect(f)) => *f,
        Next::Hangup => return Action::go("ON_VOICE", "the caller hung up (no fax detected)"),
        _ => {
            rt.assume("fax detection hears no fax tone: voice");
            false
        }
    };
    if fax {
        Action::go("ON_FAX", "fax tones detected")
    } else {
        Action::go("ON_VOICE", "no fax tones: voice")
    }
}

pub(crate) fn nomorobo<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let score = match rt.next_event("a nomorobo score", |e| matches!(e, Event::Nomorobo(_))) {
        Next::Got(Event::Nomorobo(s)) => *s,
        Next::Hangup => None,
        _ => {
            rt.assume("the nomorobo lookup fails (no score)");
            None
        }
    };
    // Numeric child keys (and `_` as -1), ascending.
    let mut keys: Vec<i64> = node
        .child_keys()
        .iter()
        .filter_map(|k| {
            if *k == "_" {
                Some(-1)
            } else {
                k.parse::<i64>().ok()
            }
        })
        .collect();
    keys.sort_unstable();
    let as_key = |k: i64| {
        if k == -1 {
            "_".to_string()
        } else {
            k.to_string()
        }
    };
    match score {
        None => {
            rt.say("asks nomorobo for a robocall score: no score");
            match keys.first() {
                Some(-1) => Action::next("no score: `_`"),
                Some(0) => Action::go("0", "no score: child \"0\""),
                _ => Action::stop("no score and neither `_` nor \"0\": Kazoo stops"),
            }
        }
        Some(raw) => {
            let s = (raw * 10.0).trunc() as i64;
            rt.say(format!(
                "asks nomorobo for a robocall score: {raw} (score {s} of 10)"
            ));
            let Some(&lowest) = keys.first() else {
                rt.quirk("nomorobo crashes when the node has no numeric or `_` child");
                return Action::next("the module crashed: `_`");
            };
            let pick = keys.iter().copied().filter(|k| *k <= s).max();
            match pick {
                Some(k) => Action::go(as_key(k), format!("the highest threshold not above {s}")),
                None => {
                    rt.quirk(format!(
                        "score {s} is below every threshold: nomorobo takes the lowest child ({})",
                        as_key(lowest)
                    ));
                    Action::go(as_key(lowest), "below every threshold: the lowest child")
                }
            }
        }
    }
}

pub(crate) fn privacy<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let mode = text(d, "mode").unwrap_or("full");
    let Some(cg) = rt.capture_group.clone() else {
        rt.say(format!(
            "sets caller privacy ({mode}); no capture group to dial"
        ));
        return Action::next("privacy set: `_`");
    };
    let number = normalize(rt, &cg);
    match rt.lookup(&number) {
        Some((route, flow)) => {
            rt.say(format!(
                "sets caller privacy ({mode}) and dials {number}: callflow {}",
                route.callflow_id
            ));
            let flow =
                flow.unwrap_or_else(|| FlowRef::json(&Value::Null, &route.callflow_id, "flow"));
            rt.capture_group = route.capture_group.clone();
            Action::Branch {
                flow,
                reason: format!("branches into callflow {} for {number}", route.callflow_id),
            }
        }
        None => {
            rt.say(format!(
                "sets caller privacy ({mode}) and dials {number}: no callflow"
            ));
            Action::stop("no callflow for the number: Kazoo stops")
        }
    }
}

pub(crate) fn intercom<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let barge = data::is_true(node.data(), "barge_calls", false);
    let Some(cg) = rt.capture_group.clone() else {
        rt.say("intercom: no extension captured; plays \"cannot be completed as dialled\"");
        return Action::stop("bad destination: Kazoo stops");
    };
    let number = normalize(rt, &cg);
    match rt.lookup(&number) {
        Some((route, Some(flow))) if !route.no_match => {
            rt.say(format!(
                "intercom to {number} (auto-answer{}): callflow {}",
                if barge { ", barging" } else { "" },
                route.callflow_id
            ));
            Action::Branch {
                flow,
                reason: format!("branches into callflow {}", route.callflow_id),
            }
        }
        _ => {
            rt.say(format!("intercom to {number}: no callflow"));
            Action::next("no callflow for the extension: `_`")
        }
    }
}

/// A flow an event returned, as a node to run (`events.N` in the trace).
fn event_flow<'a>(rt: &Run<'a>, flow: &'a Value) -> FlowRef<'a> {
    let idx = rt
        .steps
        .last()
        .and_then(|s| s.event_index)
        .map(|i| format!("events.{i}"))
        .unwrap_or_else(|| "events".into());
    FlowRef::json(flow, &idx, "flow")
}

pub(crate) fn function<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let id = text(node.data(), "id").unwrap_or("(no id)");
    rt.say(format!("runs stored function {id} for a callflow"));
    match rt.next_event("the function's reply", |e| matches!(e, Event::Function(_))) {
        Next::Got(Event::Function(FlowReply::Flow(f))) => {
            if f.get("module").and_then(Value::as_str).is_none() {
                return Action::next("the returned flow does not validate: `_`");
            }
            let flow = event_flow(rt, f);
            Action::Branch {
                flow,
                reason: "branches into the flow the function returned".into(),
            }
        }
        Next::Hangup => Action::next("the caller hung up"),
        Next::Got(_) => Action::next("the function failed: `_`"),
        Next::Nothing => {
            rt.assume("the function fails (no flow)");
            Action::next("the function failed: `_`")
        }
    }
}

pub(crate) fn pivot<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let url = text(d, "voice_url").unwrap_or("(no voice_url)");
    let method = text(d, "method").unwrap_or("get");
    rt.say(format!(
        "asks the Pivot application at {url} ({method}) what to do"
    ));
    match rt.next_event("the Pivot reply", |e| matches!(e, Event::Pivot(_))) {
        Next::Got(Event::Pivot(FlowReply::Flow(f))) => {
            let flow = event_flow(rt, f);
            Action::Replace {
                flow,
                reason: "the Pivot application returned a callflow: it replaces the current node (continue_with_flow)".into(),
            }
        }
        Next::Got(Event::Pivot(FlowReply::Processing)) => Action::end(Ending::new(
            OutcomeKind::HandedOff,
            format!("the Pivot application at {url} drives the call"),
        )),
        Next::Got(_) => Action::next("the Pivot request failed: `_`"),
        Next::Hangup => Action::stop("the caller hung up"),
        Next::Nothing => {
            rt.assume("the Pivot application does not answer within 10 s");
            Action::next("no Pivot reply within 10 s: `_`")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engine::testkit::{codes, walk, Sim};
    use crate::engine::OutcomeKind;

    #[test]
    fn a_callflow_jump_returns_to_the_parents_wildcard() {
        let s = Sim::new().doc(
            "callflows",
            "sub",
            json!({"name": "After hours", "flow": {"module": "play", "data": {"id": "closed"}}}),
        );
        let flow = json!({"module": "callflow", "data": {"id": "sub"}, "children": {"_": {"module": "hangup", "data": {}}}});
        let t = s.run(flow);
        assert_eq!(walk(&t), ["callflow", "play", "hangup"]);
        assert_eq!(t.steps[1].callflow_id, "sub");
        assert_eq!(t.steps[1].depth, 1);
        assert!(t.steps[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("returns to the `_` saved by the branch at step 0"));
        assert!(t.steps[0].summary.contains("'After hours' (sub)"));
        assert_eq!(t.steps[2].path, "flow.children._");
    }

    #[test]
    fn a_rule_kazoo_searches_forever_leaves_the_caller_waiting_until_hangup() {
        let s = Sim::new().doc(
            "temporal_rules",
            "odd",
            json!({"name": "Odd", "cycle": "monthly", "ordinal": "sixth", "wdays": ["monday"]}),
        );
        let flow = json!({"module": "temporal_route", "data": {"rules": ["odd"]},
            "children": {"odd": {"module": "play", "data": {"id": "open"}},
                         "_": {"module": "play", "data": {"id": "closed"}}}});
        let t = s.run(flow);
        assert_eq!(walk(&t), ["temporal_route"], "{t:?}");
        assert_eq!(t.outcome.kind, OutcomeKind::CallerHangup);
        assert!(codes(&t).contains(&"kazoo_quirk"));
    }

    #[test]
    fn check_cid_takes_match_or_nomatch() {
        let flow = json!({"module": "check_cid", "data": {"regex": "^\\+1415"}, "children": {
            "match": {"module": "play", "data": {"id": "local"}},
            "nomatch": {"module": "hangup", "data": {}}
        }});
        let t = Sim::new().run(flow.clone());
        assert_eq!(walk(&t), ["check_cid->match", "play"]);
        let mut s = Sim::new();
        s.call.caller.id_number = Some("+442071234567".into());
        let t = s.run(flow.clone());
        assert_eq!(walk(&t), ["check_cid->nomatch", "hangup"]);
        // Absolute mode keys the child by the number; no such child: `_`.
        let mut abs = flow;
        abs["data"]["use_absolute_mode"] = json!(true);
        abs["children"]["_"] = json!({"module": "noop", "data": {}});
        let t = Sim::new().run(abs);
        assert_eq!(walk(&t), ["check_cid->_", "noop"]);
    }

    #[test]
    fn check_cid_rewrites_the_caller_id_only_for_later_nodes() {
        let flow = json!({"module": "check_cid", "data": {"regex": ".*", "user_id": "u9",
            "caller_id": {"external": {"name": "Front", "number": "+15550000"}}},
            "children": {"match": {"module": "check_cid", "data": {"regex": "^\\+1555"}, "children": {"match": {"module": "noop", "data": {}}}}}});
        let t = Sim::new().run(flow);
        assert!(codes(&t).contains(&"kazoo_quirk"));
        assert_eq!(walk(&t), ["check_cid->match", "check_cid->match", "noop"]);
    }

    #[test]
    fn nomorobo_picks_the_highest_threshold_not_above_the_score() {
        let flow = json!({"module": "nomorobo", "data": {}, "children": {
            "_": {"module": "noop", "data": {}}, "3": {"module": "play", "data": {"id": "x"}}, "8": {"module": "hangup", "data": {}}
        }});
        let t = Sim::new()
            .events(json!([{"nomorobo": {"score": 0.9}}]))
            .run(flow.clone());
        assert_eq!(walk(&t), ["nomorobo->8", "hangup"]);
        let t = Sim::new()
            .events(json!([{"nomorobo": {"score": 0.45}}]))
            .run(flow.clone());
        assert_eq!(walk(&t)[0], "nomorobo->3");
        let t = Sim::new().run(flow);
        assert_eq!(walk(&t)[0], "nomorobo->_");
        assert_eq!(codes(&t)[0], "default_assumed");
    }

    #[test]
    fn branch_variable_reads_what_set_variable_wrote() {
        let flow = json!({"module": "set_variable", "data": {"variable": "call_priority", "value": "7"}, "children": {"_":
            {"module": "branch_variable", "data": {"variable": "call_priority"}, "children": {
                "7": {"module": "hangup", "data": {}}, "_": {"module": "noop", "data": {}}}}}});
        let t = Sim::new().run(flow);
        assert_eq!(
            walk(&t),
            ["set_variable->_", "branch_variable->7", "hangup"]
        );
    }

    #[test]
    fn pivot_flows_replace_the_node_and_failures_continue() {
        let flow = json!({"module": "pivot", "data": {"voice_url": "http://x"}, "children": {"_": {"module": "noop", "data": {}}}});
        let t = Sim::new()
            .events(json!([{"pivot": {"flow": {"module": "hangup", "data": {}}}}]))
            .run(flow.clone());
        assert_eq!(walk(&t), ["pivot", "hangup"]);
        assert_eq!(t.steps[1].callflow_id, "events.0");
        let t = Sim::new()
            .events(json!([{"pivot": "failed"}]))
            .run(flow.clone());
        assert_eq!(walk(&t), ["pivot->_", "noop"]);
        let t = Sim::new()
            .events(json!([{"pivot": "processing"}]))
            .run(flow);
        assert_eq!(t.outcome.kind, OutcomeKind::HandedOff);
    }

    #[test]
    fn cidlistmatch_uses_prefixes_then_regexes() {
        let s = Sim::new().doc("lists", "l1", json!({"name": "VIP"})).doc(
            "list_entries",
            "e1",
            json!({"list_id": "l1", "pattern": "^\\+1415"}),
        );
        let flow = json!({"module": "cidlistmatch", "data": {"id": "l1"}, "children": {"match": {"module": "noop", "data": {}}}});
        let t = s.run(flow);
        assert_eq!(walk(&t)[0], "cidlistmatch->match");
    }

    #[test]
    fn branch_bnumber_keys_children_by_the_capture_group() {
        let mut s = Sim::new();
        s.capture = Some("1000".into());
        let flow = json!({"module": "branch_bnumber", "data": {}, "children": {"1000": {"module": "noop", "data": {}}}});
        assert_eq!(walk(&s.run(flow))[0], "branch_bnumber->1000");
    }
}
