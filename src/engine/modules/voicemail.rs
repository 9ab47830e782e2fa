//! Voicemail (Kazoo's `cf_voicemail`): leaving a message, and checking a box.
//!
//! Owns compose (owner check, announcement-only, missing and full boxes, the greeting with
//! its keys: `*` login, `0` operator, others skip to the tone; the recording; then `_`) and a
//! shallow check (the mailbox menus are not walked). Must not save anything.

use serde_json::Value;

use crate::engine::data::{self, label, text};
use crate::engine::events::Event;
use crate::engine::exec::{Action, Digits, Ending, FlowRef, Next, Run};
use crate::engine::trace::{Endpoint, OutcomeKind};
use crate::engine::Doc;

/// Kazoo's `MAILBOX_DEFAULT_MSG_MAX_LENGTH` (config `max_message_length`, 500 s).
const MAX_MESSAGE_LENGTH_S: i64 = 500;

pub(crate) fn voicemail<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let action = text(d, "action").unwrap_or("compose");
    let id = text(d, "id");
    let docs = rt.docs;
    let vmbox = id.and_then(|i| docs.get("vmboxes", i));
    let name = match vmbox {
        Some(b) => {
            let n = label(Some(b), None);
            match text(b, "mailbox").or_else(|| b.get("mailbox").and_then(Value::as_str)) {
                Some(num) => format!("{n} ({num})"),
                None => label(Some(b), id),
            }
        }
        None => id.unwrap_or("(no id)").to_string(),
    };
    match action {
        "compose" => compose(rt, node, vmbox, id, &name),
        "check" => check(rt, vmbox, id, &name, "checks"),
        other => {
            rt.say(format!(
                "voicemail with action \"{other}\": Kazoo does nothing"
            ));
            Action::next("unknown voicemail action: `_`")
        }
    }
}

fn endpoint(vmbox: Option<&Doc>, id: Option<&str>) -> Endpoint {
    Endpoint::new("vmbox", id, vmbox.and_then(data::doc_name))
}

fn check<'a>(
    rt: &mut Run<'a>,
    vmbox: Option<&Doc>,
    id: Option<&str>,
    name: &str,
    verb: &str,
) -> Action<'a> {
    if id.is_none() {
        rt.add(&format!(
            "answers; the caller {verb} voicemail: Kazoo asks for the mailbox number, then the PIN, then the message menus"
        ));
    } else {
        rt.add(&format!(
            "answers; the caller {verb} voicemail box {name} (PIN, then the message menus)"
        ));
    }
    rt.warn(
        "not_simulated",
        "the mailbox login and message menus are not simulated: assumed the caller listens and leaves them",
    );
    rt.pending = Some(
        Ending::new(
            OutcomeKind::Voicemail,
            match id {
                Some(_) => format!("the caller checks voicemail box {name}"),
                None => "the caller checks a voicemail box".to_string(),
            },
        )
        .at(endpoint(vmbox, id)),
    );
    Action::next("the mailbox session ended: `_`")
}

fn compose<'a>(
    rt: &mut Run<'a>,
    node: &FlowRef<'a>,
    vmbox: Option<&'a Doc>,
    id: Option<&str>,
    name: &str,
) -> Action<'a> {
    let d = node.data();
    let Some(b) = vmbox else {
        if let Some(id) = id {
            rt.missing(
                "vmboxes",
                id,
                "Kazoo plays \"voicemail not available\" and continues to `_`",
            );
        }
        rt.say(format!(
            "answers; voicemail box {name} does not exist: plays \"not available\""
        ));
        return Action::next("no such mailbox: `_`");
    };
    let owner = text(b, "owner_id");
    let is_owner = owner.is_some() && owner == rt.owner_id.as_deref();
    if is_owner
        && (data::is_true(b, "check_if_owner", true)
            || data::is_true(b, "announcement_only", false))
    {
        rt.say(format!("answers; the caller owns voicemail box {name}, so Kazoo checks it instead of leaving a message"));
        return check(rt, vmbox, id, name, "checks");
    }
    let keys = b.get("keys").and_then(Value::as_object);
    let key = |k: &str, default: &str| keys.and_then(|m| text(m, k)).unwrap_or(default).to_string();
    let (login, operator, cont) = (
        key("login", "*"),
        key("operator", "0"),
        keys.and_then(|m| text(m, "continue")).map(str::to_string),
    );
    let greeting = if data::is_true(b, "skip_greeting", false) {
        "no greeting (skip_greeting)".to_string()
    } else if let Some(m) = text(b, "temporary_unavailable_media_id") {
        format!("the temporary greeting {m}")
    } else if let Some(m) = b
        .get("media")
        .and_then(|m| m.get("unavailable"))
        .and_then(Value::as_str)
    {
        format!("greeting {}", label(rt.docs.get("media", m), Some(m)))
    } else {
        "the generic greeting".to_string()
    };
    if data::is_true(b, "announcement_only", false) {
        rt.say(format!(
            "answers; voicemail box {name} is announcement only: plays {greeting}"
        ));
        if let Some(Event::Dtmf { leg: None, .. }) = rt.peek() {
            if let Digits::Got(k) = rt.digits("a key during the announcement", 1, &[]) {
                if k == login {
                    rt.say(format!("caller presses {k} (login key): checks the box"));
                    return check(rt, vmbox, id, name, "checks");
                }
            }
        }
        return Action::next("announcement played: `_`");
    }
    let full = data::int(b, "max_message_count")
        .filter(|m| *m > 0)
        .is_some_and(|max| {
            b.get("messages")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0) as i64
                >= max
        });
    if full {
        rt.say(format!(
            "answers; voicemail box {name} is full: plays {greeting} and \"mailbox full\""
        ));
        return Action::next("mailbox full: `_`");
    }
    let max_len = data::int(d, "max_message_length")
        .or_else(|| data::int(b, "max_message_length"))
        .unwrap_or(MAX_MESSAGE_LENGTH_S);
    let instructions = if data::is_true(b, "skip_instructions", false) {
        ""
    } else {
        " and the recording instructions"
    };
    rt.say(format!(
        "answers; plays {greeting} of voicemail box {name}{instructions} ({login} to log in, {operator} for the operator); records up to {max_len} s"
    ));
    // A key pressed during the greeting.
    if let Some(Event::Dtmf { leg: None, .. }) = rt.peek() {
        match rt.digits("a key during the greeting", 1, &[]) {
            Digits::Hangup => return Action::stop("the caller hung up"),
            Digits::Got(k) if k == login => {
                rt.say(format!(
                    "caller presses {k} (login key) during the greeting: checks the box"
                ));
                return check(rt, vmbox, id, name, "checks");
            }
            Digits::Got(k) if k == operator => {
                let op = text(b, "operator_number").unwrap_or("0").to_string();
                match rt.lookup(&op) {
                    Some((route, Some(flow))) if !route.no_match => {
                        rt.say(format!("caller presses {k} (operator key): calls the operator at {op} (callflow {})", route.callflow_id));
                        return Action::Branch {
                            flow,
                            reason: format!("branches into the operator callflow {}", route.callflow_id),
                        };
                    }
                    _ => rt.say(format!("caller presses {k} (operator key): no operator callflow for {op}, so records a message")),
                }
            }
            Digits::Got(k) if Some(&k) == cont.as_ref() => {
                rt.say(format!("caller presses {k} (continue key): no message"));
                return Action::next("continue key pressed: `_`");
            }
            Digits::Got(k) => rt.say(format!(
                "caller presses {k} during the greeting: skips to the tone"
            )),
        }
    }
    match rt.next_event("the recording to end", |e| matches!(e, Event::Record)) {
        Next::Hangup => {
            rt.add("the caller hangs up while recording: the message is kept");
        }
        Next::Got(_) => rt.add("records the message"),
        Next::Nothing => {
            rt.assume("the caller leaves a message and stops (silence or a key)");
            rt.add("records the message");
        }
    }
    rt.message_left = true;
    rt.pending = Some(
        Ending::new(
            OutcomeKind::Voicemail,
            format!("a message is left in voicemail box {name}"),
        )
        .at(endpoint(vmbox, id)),
    );
    Action::next("message recorded: Kazoo continues to `_`")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engine::testkit::{walk, Sim};
    use crate::engine::OutcomeKind;

    fn sim() -> Sim {
        Sim::new().doc(
            "vmboxes",
            "vm1",
            json!({"name": "Sales", "mailbox": "3001", "owner_id": "u1"}),
        )
    }

    #[test]
    fn after_the_message_voicemail_continues_to_its_wildcard() {
        let flow = json!({"module": "voicemail", "data": {"id": "vm1"}, "children": {"_": {"module": "play", "data": {"id": "thanks"}}}});
        let t = sim().events(json!([{"record": "done"}])).run(flow);
        assert_eq!(walk(&t), ["voicemail->_", "play"]);
        assert!(
            t.steps[0].summary.contains("'Sales' (3001)"),
            "{}",
            t.steps[0].summary
        );
        assert!(t.steps[0].summary.contains("records up to 500 s"));
        assert_eq!(t.outcome.kind, OutcomeKind::Voicemail);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn star_during_the_greeting_checks_the_box_and_zero_calls_the_operator() {
        let flow = json!({"module": "voicemail", "data": {"id": "vm1"}});
        let t = sim().events(json!([{"dtmf": "*"}])).run(flow.clone());
        assert!(t
            .steps
            .last()
            .unwrap()
            .summary
            .contains("checks voicemail box"));
        let mut s = sim().doc(
            "callflows",
            "op",
            json!({"flow": {"module": "device", "data": {"id": "d1"}}}),
        );
        s.plan = std::mem::take(&mut s.plan).with("0", "op");
        let t = s
            .events(json!([{"dtmf": "0"}, {"bridge": "answered"}]))
            .run(flow);
        assert_eq!(walk(&t), ["voicemail", "device"]);
    }

    #[test]
    fn the_owner_calling_their_box_checks_it() {
        let mut s = sim();
        s.call.caller.user_id = Some("u1".into());
        let t = s.run(json!({"module": "voicemail", "data": {"id": "vm1"}}));
        assert!(t.steps[0].summary.contains("owns voicemail box"));
    }
}
