//! The IVR menu (Kazoo's `cf_menu`).
//!
//! Owns the menu loop: greeting, digit collection (`#` terminates, `max_extension_length`
//! ends it, a pause ends it), matching the whole entry against child keys, hunting for a
//! callflow, the record PIN, retries spent on invalid entries and timeouts, and the
//! `max_retries` / `_` / goodbye exit. Must not read the menu document any other way than
//! `get("menus", id)`; absent keys take Kazoo's code defaults (not the schema's).

use serde_json::Value;

use crate::engine::data::{self, label, text, text_at};
use crate::engine::exec::{Action, Digits, FlowRef, Run};

/// The menu settings as `get_menu_profile` reads them.
struct Menu {
    name: String,
    retries: i64,
    timeout_ms: i64,
    max_len: usize,
    interdigit_ms: i64,
    hunt: bool,
    hunt_allow: String,
    hunt_deny: String,
    record_pin: String,
    record_from_offnet: bool,
    greeting: Option<String>,
}

fn profile(rt: &mut Run<'_>, node: &FlowRef<'_>) -> Menu {
    let d = node.data();
    let id = text(d, "id");
    let docs = rt.docs;
    let doc = id.and_then(|id| docs.get("menus", id));
    if let (Some(id), None) = (id, doc) {
        rt.missing(
            "menus",
            id,
            "Kazoo runs the menu with its defaults (3 retries, 10 s, 4 digits, no hunt)",
        );
    }
    let empty = &data::EMPTY;
    let m = doc.unwrap_or(empty);
    let raw = |k: &str| match m.get(k) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let interdigit = data::int(m, "interdigit_timeout")
        .or_else(|| data::int(d, "interdigit_timeout"))
        .unwrap_or(2000);
    Menu {
        name: label(doc, id),
        retries: data::int(m, "retries").unwrap_or(3),
        timeout_ms: data::int(m, "timeout").unwrap_or(10_000),
        max_len: data::int(m, "max_extension_length").unwrap_or(4).max(1) as usize,
        interdigit_ms: interdigit,
        hunt: data::is_true(m, "hunt", false),
        hunt_allow: raw("hunt_allow"),
        hunt_deny: raw("hunt_deny"),
        record_pin: raw("record_pin"),
        record_from_offnet: data::is_true(m, "allow_record_from_offnet", false),
        greeting: text_at(m, &["media", "greeting"]).map(str::to_string),
    }
}

/// `is_hunt_allowed` and not `is_hunt_denied`; `Err` says why not.
fn hunt_ok(menu: &Menu, digits: &str) -> Result<(), String> {
    if !menu.hunt {
        return Err("hunting is off for this menu".into());
    }
    if !menu.hunt_allow.is_empty() {
        match data::regex_matches(&menu.hunt_allow, digits) {
            Some(true) => {}
            Some(false) => {
                return Err(format!(
                    "\"{digits}\" does not match hunt_allow {:?}",
                    menu.hunt_allow
                ))
            }
            None => {
                return Err(format!(
                    "hunt_allow {:?} does not compile, so nothing is allowed",
                    menu.hunt_allow
                ))
            }
        }
    }
    if !menu.hunt_deny.is_empty() && data::regex_matches(&menu.hunt_deny, digits) == Some(true) {
        return Err(format!(
            "\"{digits}\" matches hunt_deny {:?}",
            menu.hunt_deny
        ));
    }
    Ok(())
}

enum Matched<'a> {
    Action(Action<'a>),
    No(String),
}

/// `try_match_digits`: a child keyed by the whole entry, else a hunted callflow.
fn try_match<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>, menu: &Menu, digits: &str) -> Matched<'a> {
    if node.attemptable(digits) {
        return Matched::Action(Action::child(
            digits,
            format!("\"{digits}\" is a child key"),
        ));
    }
    let why = match hunt_ok(menu, digits) {
        Err(why) => why,
        Ok(()) => match rt.lookup(digits) {
            Some((route, Some(flow))) if !route.no_match => {
                rt.add(&format!(
                    "hunts: {digits} reaches callflow {}; plays the transfer prompt",
                    route.callflow_id
                ));
                rt.capture_group = route.capture_group.clone();
                return Matched::Action(Action::Branch {
                    flow,
                    reason: format!(
                        "no child \"{digits}\"; hunt found callflow {} and branches into it",
                        route.callflow_id
                    ),
                });
            }
            Some((route, _)) if route.no_match => {
                format!("hunt for {digits} only finds the no_match callflow")
            }
            _ => format!("hunt finds no callflow for {digits}"),
        },
    };
    Matched::No(format!("no child \"{digits}\" ({why})"))
}

pub(crate) fn menu<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let menu = profile(rt, node);
    let greeting = match &menu.greeting {
        Some(g) => format!("greeting {}", label(rt.docs.get("media", g), Some(g))),
        None => "the default \"no prompt\" greeting".to_string(),
    };
    let intro = format!(
        "answers and plays menu {}: {greeting}; collects up to {} digit(s) ({} s for the first, {} s between, # ends the entry)",
        menu.name,
        menu.max_len,
        menu.timeout_ms / 1000,
        menu.interdigit_ms as f64 / 1000.0
    );
    rt.say(intro.clone());
    let mut retries = menu.retries;
    let mut attempt = 0;
    loop {
        if retries <= 0 {
            rt.add(&format!(
                "retries exhausted ({} allowed): plays the exit prompt",
                menu.retries
            ));
            if node.attemptable("max_retries") {
                return Action::child("max_retries", "no valid entry within the retries");
            }
            if node.wildcard_is_empty() {
                rt.add("plays goodbye");
                return Action::next("retries exhausted, no \"max_retries\" child and no `_`: goodbye, then Kazoo stops");
            }
            rt.add("plays the transfer prompt");
            return Action::next("retries exhausted and no \"max_retries\" child: `_`");
        }
        attempt += 1;
        let first_event = rt.peek();
        let row = rt.step_index();
        let taken = rt.taken();
        let collected = rt.digits(
            &format!("menu {} entry {attempt}", menu.name),
            menu.max_len,
            &['#'],
        );
        if attempt > 1 {
            let again = format!(
                "menu {}: plays the greeting again (try {attempt})",
                menu.name
            );
            if rt.step_index() != row {
                rt.say(again);
            } else {
                rt.add(&again);
            }
        }
        if let Some(crate::engine::Event::Dtmf { digits, leg: None }) = first_event {
            if digits.starts_with('#') {
                rt.quirk("# is the menu's terminator: an entry starting with # is empty and counts as a timeout (a \"#\" child can never be reached)");
            }
        }
        let digits = match collected {
            Digits::Hangup => return Action::stop("the caller hung up in the menu"),
            Digits::Got(d) => d,
        };
        if digits.is_empty() {
            rt.add("no entry (timeout)");
            if node.attemptable("timeout") {
                return Action::child("timeout", "nothing entered: the \"timeout\" child");
            }
            if menu.hunt {
                if let Matched::Action(a) = try_match(rt, node, &menu, "timeout") {
                    return a;
                }
            }
            retries -= 1;
            if rt.taken() == taken && retries > 0 {
                // No event was there to take: every remaining entry times out the same way.
                rt.add(&format!(
                    "the remaining {retries} entries time out the same way"
                ));
                retries = 0;
            }
            rt.reason(format!(
                "nothing entered and no \"timeout\" child: retry ({retries} left)"
            ));
            continue;
        }
        rt.add(&format!("caller enters {digits}"));
        match try_match(rt, node, &menu, &digits) {
            Matched::Action(a) => return a,
            Matched::No(why) => {
                let allow_record = menu.record_from_offnet || rt.call.caller.on_net();
                if !menu.record_pin.is_empty() && digits == menu.record_pin && allow_record {
                    rt.add("the record PIN: records a new greeting, then back to the menu (no retry spent)");
                    rt.warn("not_simulated", "the greeting recording and its review menu are not simulated: assumed saved");
                    rt.reason("record PIN entered");
                    continue;
                }
                retries -= 1;
                rt.add("plays the invalid-entry prompt");
                rt.reason(format!("{why}: invalid entry, retry ({retries} left)"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engine::testkit::{codes, walk, Sim};
    use crate::engine::OutcomeKind;

    fn menu_flow() -> serde_json::Value {
        json!({"module": "menu", "data": {"id": "m1"}, "children": {
            "1": {"module": "user", "data": {"id": "u1"}},
            "2": {"module": "voicemail", "data": {"id": "vm1"}},
            "#": {"module": "hangup", "data": {}}
        }})
    }

    fn sim() -> Sim {
        Sim::new()
            .doc("menus", "m1", json!({"name": "Main", "retries": 3}))
            .doc(
                "users",
                "u1",
                json!({"first_name": "Ann", "last_name": "Lee"}),
            )
            .doc("devices", "d1", json!({"name": "Desk", "owner_id": "u1"}))
            .doc(
                "vmboxes",
                "vm1",
                json!({"name": "Sales", "mailbox": "3001"}),
            )
    }

    #[test]
    fn an_invalid_key_costs_a_retry_then_a_valid_key_takes_its_child() {
        let t = sim()
            .events(json!([{"dtmf": "7"}, {"dtmf": "1"}, {"bridge": "answered"}]))
            .run(menu_flow());
        assert_eq!(walk(&t), ["menu", "menu->1", "user"]);
        assert!(
            t.steps[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("invalid entry, retry (2 left)"),
            "{:?}",
            t.steps[0]
        );
        assert_eq!(t.outcome.kind, OutcomeKind::Connected);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn timeouts_spend_the_retries_then_max_retries_runs() {
        let mut flow = menu_flow();
        flow["children"]["max_retries"] = json!({"module": "voicemail", "data": {"id": "vm1"}});
        let t = sim()
            .events(json!([{"no_input": true}, {"no_input": true}, {"no_input": true}]))
            .run(flow);
        assert_eq!(walk(&t), ["menu", "menu", "menu->max_retries", "voicemail"]);
        assert_eq!(t.outcome.kind, OutcomeKind::Voicemail);
    }

    #[test]
    fn with_no_max_retries_and_no_wildcard_the_menu_says_goodbye() {
        let t = sim().run(menu_flow());
        assert_eq!(walk(&t), ["menu"]);
        assert_eq!(t.outcome.kind, OutcomeKind::Hangup);
        assert_eq!(
            codes(&t),
            ["default_assumed"],
            "the entries time out by default"
        );
        assert!(t.steps[0]
            .summary
            .contains("the remaining 2 entries time out the same way"));
    }

    #[test]
    fn a_timeout_child_takes_a_timeout_at_once() {
        let mut flow = menu_flow();
        flow["children"]["timeout"] = json!({"module": "hangup", "data": {}});
        let t = sim().events(json!([{"no_input": true}])).run(flow);
        assert_eq!(walk(&t), ["menu->timeout", "hangup"]);
    }

    #[test]
    fn hash_terminates_the_entry_so_a_hash_child_is_unreachable() {
        let t = sim()
            .events(json!([{"dtmf": "#"}, {"dtmf": "2"}]))
            .run(menu_flow());
        assert_eq!(walk(&t), ["menu", "menu->2", "voicemail"]);
        assert!(codes(&t).contains(&"kazoo_quirk"));
        assert!(t.steps[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("nothing entered"));
    }

    #[test]
    fn digits_after_hash_are_not_used() {
        let t = sim()
            .events(json!([{"dtmf": "1#5"}, {"bridge": "answered"}]))
            .run(menu_flow());
        assert_eq!(walk(&t), ["menu->1", "user"]);
        assert!(codes(&t).contains(&"digits_ignored"));
    }

    #[test]
    fn hunting_branches_into_the_dialled_extension_and_keeps_the_menu_wildcard() {
        let mut s = sim().doc(
            "menus",
            "m1",
            json!({"name": "Main", "hunt": true, "hunt_allow": "^2\\d{3}$"}),
        );
        s = s.doc(
            "callflows",
            "cf2",
            json!({"flow": {"module": "hangup", "data": {}}}),
        );
        s.plan = std::mem::take(&mut s.plan).with("2001", "cf2");
        let mut flow = menu_flow();
        flow["children"]["_"] = json!({"module": "play", "data": {"id": "bye"}});
        let t = s.events(json!([{"dtmf": "2001"}])).run(flow);
        assert_eq!(walk(&t), ["menu", "hangup"]);
        assert!(t.steps[0].reason.as_deref().unwrap().contains("saved"));
        let denied = sim()
            .doc("menus", "m1", json!({"hunt": true, "hunt_allow": "^3"}))
            .events(json!([{"dtmf": "2001"}, {"dtmf": "1"}, {"bridge": "answered"}]))
            .run(menu_flow());
        assert!(denied.steps[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("hunt_allow"));
    }

    #[test]
    fn a_missing_menu_document_runs_with_defaults() {
        let t = Sim::new()
            .events(json!([{"dtmf": "1"}, {"bridge": "answered"}]))
            .run(menu_flow());
        assert!(codes(&t).contains(&"document_missing"));
        assert_eq!(walk(&t)[0], "menu->1");
    }
}
