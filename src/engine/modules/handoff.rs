//! Hand-off modules: conference, conference_feature, receive_fax, faxbox, and the ACDc ones
//! (acdc_member, acdc_agent, acdc_queue, acdc_wait_time).
//!
//! Owns where another application takes the call over (Kazoo's `control_usurped`: no hangup,
//! the executor ends) and the queue outcomes that come back to the callflow. Must not model
//! what those applications do afterwards.

use crate::engine::data::{self, label, text};
use crate::engine::events::{Event, QueueEvent};
use crate::engine::exec::{Action, Ending, FlowRef, Next, Run};
use crate::engine::trace::{Endpoint, OutcomeKind};

fn conference_at<'a>(rt: &mut Run<'a>, id: Option<&str>, how: &str) -> Action<'a> {
    let (doc, name) = data::named(rt.docs, "conferences", id);
    rt.say(format!("{how} conference {name}"));
    Action::end(
        Ending::new(
            OutcomeKind::Conference,
            format!("the conference application takes the call ({name})"),
        )
        .at(Endpoint::new(
            "conference",
            id,
            doc.and_then(data::doc_name),
        )),
    )
}

pub(crate) fn conference<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let id = text(d, "id");
    if id.is_none() && d.get("config").is_some() {
        rt.say("joins an ad-hoc conference configured in the node");
        return Action::end(Ending::new(
            OutcomeKind::Conference,
            "the conference application takes the call",
        ));
    }
    conference_at(rt, id, "joins")
}

pub(crate) fn conference_feature<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    let cg = rt.capture_group.clone();
    conference_at(rt, cg.as_deref(), "joins the captured")
}

pub(crate) fn receive_fax<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let owner = text(node.data(), "owner_id");
    let (doc, name) = data::named(rt.docs, "users", owner);
    rt.say(format!("receives a fax for {name}"));
    Action::end(
        Ending::new(
            OutcomeKind::Fax,
            format!("the fax application receives the fax for {name}"),
        )
        .at(Endpoint::new("user", owner, doc.and_then(data::doc_name))),
    )
}

pub(crate) fn faxbox<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let id = text(d, "id").or_else(|| text(d, "faxbox_id"));
    let (doc, name) = data::named(rt.docs, "faxboxes", id);
    if let (Some(id), None) = (id, doc) {
        rt.missing("faxboxes", id, "the fax application still takes the call");
    }
    rt.say(format!("receives a fax into faxbox {name}"));
    Action::end(
        Ending::new(
            OutcomeKind::Fax,
            format!("the fax application receives the fax into faxbox {name}"),
        )
        .at(Endpoint::new("faxbox", id, doc.and_then(data::doc_name))),
    )
}

pub(crate) fn acdc_member<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let id = text(d, "id");
    let docs = rt.docs;
    let queue = id.and_then(|i| docs.get("queues", i));
    let name = label(queue, id);
    let exit_key = queue
        .and_then(|q| text(q, "caller_exit_key"))
        .unwrap_or("#");
    rt.say(format!(
        "puts the caller in ACDc queue {name} (press {exit_key} to leave)"
    ));
    let endpoint = Endpoint::new("queue", id, queue.and_then(data::doc_name));
    match rt.next_event("the queue's outcome", |e| {
        matches!(e, Event::Queue(_)) || matches!(e, Event::Dtmf { leg: None, .. })
    }) {
        Next::Hangup => Action::stop("the caller hung up in the queue"),
        Next::Got(Event::Dtmf { digits, .. }) if digits.starts_with(exit_key) => {
            Action::next(format!("the caller pressed the exit key {exit_key}: `_`"))
        }
        Next::Got(Event::Dtmf { .. }) => {
            Action::next("the caller pressed a key (not the exit key); assumed to leave: `_`")
        }
        Next::Got(Event::Queue(QueueEvent::Full)) => Action::next("the queue is full: `_`"),
        Next::Got(Event::Queue(QueueEvent::Answered)) => Action::end(
            Ending::new(
                OutcomeKind::Queue,
                format!("an agent of queue {name} takes the call"),
            )
            .at(endpoint),
        ),
        Next::Nothing => {
            rt.assume("an agent answers the queued call");
            Action::end(
                Ending::new(
                    OutcomeKind::Queue,
                    format!("an agent of queue {name} takes the call"),
                )
                .at(endpoint),
            )
        }
        Next::Got(Event::Queue(q)) => Action::next(format!(
            "the queue reports {}: `_`",
            match q {
                QueueEvent::Failed => "failure",
                QueueEvent::Timeout => "a wait timeout",
                _ => "the caller leaving",
            }
        )),
        Next::Got(_) => Action::next("`_`"),
    }
}

pub(crate) fn acdc_agent<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let action = text(node.data(), "action").unwrap_or("login");
    let who = label(
        rt.owner_id.as_deref().and_then(|o| rt.docs.get("users", o)),
        rt.owner_id.as_deref(),
    );
    rt.say(format!("ACDc agent {who}: {action}"));
    Action::next("agent state changed: `_`")
}

pub(crate) fn acdc_queue<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let action = text(d, "action").unwrap_or("login");
    let id = text(d, "id");
    let (_, name) = data::named(rt.docs, "queues", id);
    rt.say(format!(
        "ACDc: the caller's agent {action}s {} queue {name}",
        if action == "logout" { "out of" } else { "into" }
    ));
    Action::next("agent state changed: `_`")
}

pub(crate) fn acdc_wait_time<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let id = text(d, "id");
    let (_, name) = data::named(rt.docs, "queues", id);
    let avg = match rt.next_event("the queue's average wait", |e| {
        matches!(e, Event::QueueWait(_))
    }) {
        Next::Got(Event::QueueWait(a)) => *a,
        Next::Hangup => return Action::stop("the caller hung up"),
        _ => {
            rt.assume("the queue statistics request fails");
            None
        }
    };
    let Some(avg) = avg else {
        rt.say(format!("asks queue {name} for its average wait: no answer"));
        return Action::next("no statistics: `_`");
    };
    rt.say(format!("asks queue {name} for its average wait: {avg} s"));
    let keys = node.child_keys();
    let mut thresholds = Vec::new();
    for k in keys.iter().filter(|k| **k != "_") {
        match k.parse::<u64>() {
            Ok(n) => thresholds.push((n, *k)),
            Err(_) => {
                rt.quirk(format!(
                    "acdc_wait_time crashes sorting a non-numeric child key (\"{k}\")"
                ));
                return Action::next("the module crashed: `_`");
            }
        }
    }
    thresholds.sort_by_key(|t| std::cmp::Reverse(t.0));
    match thresholds.iter().find(|(n, _)| avg >= *n) {
        Some((n, k)) => Action::go(
            k.to_string(),
            format!("average wait {avg} s is at least {n} s"),
        ),
        None => Action::next(format!(
            "average wait {avg} s is below every threshold: `_`"
        )),
    }
}
