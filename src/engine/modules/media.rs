//! Media and call-control modules: play, tts, audio_macro, collect_dtmf, flush_dtmf,
//! send_dtmf, sleep, record_call, record_caller, answer, noop, hangup, wait_for_hangup,
//! dead_air, response.
//!
//! Owns what each does to the call and where it goes next (almost always `_`). Must not
//! consume events other than the caller hanging up during playback, digits for collect_dtmf
//! and the end of a recording.

use serde_json::Value;

use crate::engine::data::{self, label, text};
use crate::engine::events::Event;
use crate::engine::exec::{Action, Digits, Ending, FlowRef, Next, Run};
use crate::engine::trace::OutcomeKind;

/// A hangup that happens while something plays: taken if it is the next event.
fn hangup_during(rt: &mut Run<'_>) -> bool {
    if let Some(Event::Hangup) = rt.peek() {
        matches!(
            rt.next_event("the end of the playback", |_| false),
            Next::Hangup
        )
    } else {
        false
    }
}

fn media_name(rt: &Run<'_>, id: &str) -> String {
    if id.starts_with("/system_media/") || id.contains("://") || id.starts_with("prompt://") {
        return id.to_string();
    }
    label(rt.docs.get("media", id), Some(id))
}

pub(crate) fn play<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let Some(id) = text(d, "id") else {
        rt.say("plays media, but data.id is missing");
        return Action::next("no media to play: `_`");
    };
    let name = media_name(rt, id);
    let answer = if data::is_false(d, "answer") {
        ""
    } else {
        "answers and "
    };
    let times = match (
        data::is_true(d, "endless_playback", false),
        data::int(d, "loop_count"),
    ) {
        (true, _) => " endlessly".to_string(),
        (_, Some(n)) if n > 1 => format!(" {n} times"),
        _ => String::new(),
    };
    rt.say(format!("{answer}plays media {name}{times}"));
    if hangup_during(rt) {
        return Action::HardStop {
            reason: "the caller hung up during the playback: Kazoo hard-stops".into(),
        };
    }
    Action::next("playback done: `_`")
}

pub(crate) fn tts<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let voice = text(d, "voice").unwrap_or("female");
    rt.say(format!(
        "speaks \"{}\" ({voice} voice)",
        text(d, "text").unwrap_or("")
    ));
    if hangup_during(rt) {
        return Action::stop("the caller hung up during the speech: stop");
    }
    Action::next("speech done: `_`")
}

pub(crate) fn audio_macro<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let items = node
        .data()
        .get("macros")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if items.is_empty() {
        rt.say("plays an audio macro with no items");
        return Action::next("empty macro: `_`");
    }
    let parts: Vec<String> = items
        .iter()
        .filter_map(Value::as_object)
        .map(|m| {
            let kind = text(m, "macro").unwrap_or("?");
            match kind {
                "play" | "prompt" => format!("{kind} {}", text(m, "id").unwrap_or("?")),
                "tts" => format!("tts \"{}\"", text(m, "text").unwrap_or("")),
                "say" => format!("say {}", text(m, "text").unwrap_or("")),
                "tone" => "a tone".to_string(),
                other => other.to_string(),
            }
        })
        .collect();
    rt.say(format!("plays in sequence: {}", parts.join(", ")));
    if hangup_during(rt) {
        return Action::stop("the caller hung up during the macro: stop");
    }
    Action::next("macro done: `_`")
}

pub(crate) fn collect_dtmf<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let name = text(d, "collection_name").unwrap_or("default").to_string();
    let max = data::int(d, "max_digits").unwrap_or(1).max(1) as usize;
    let terms: Vec<char> = match d.get("terminators").or_else(|| d.get("terminator")) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|s| s.chars().next())
            .collect(),
        Some(Value::String(s)) => s.chars().take(1).collect(),
        _ => vec!['#'],
    };
    rt.say(format!(
        "answers and collects up to {max} digit(s) into collection \"{name}\""
    ));
    match rt.digits(&format!("collect_dtmf \"{name}\""), max, &terms) {
        Digits::Hangup => {}
        Digits::Got(got) => {
            rt.add(&format!("collected \"{got}\""));
            rt.collections.retain(|(k, _)| *k != name);
            rt.collections.push((name, got));
        }
    }
    Action::next("collect_dtmf always continues to `_`")
}

pub(crate) fn flush_dtmf<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let name = text(node.data(), "collection_name").unwrap_or("default");
    rt.say(format!(
        "meant to clear DTMF collection \"{name}\", but Kazoo passes the cleared call only to continue, so nothing is cleared"
    ));
    Action::next("`_`")
}

pub(crate) fn send_dtmf<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    rt.say(format!(
        "sends DTMF {} ({} ms each)",
        text(d, "digits").unwrap_or("(none)"),
        d.get("duration_ms")
            .and_then(data::to_text)
            .unwrap_or_else(|| "2000".into())
    ));
    Action::next("`_`")
}

pub(crate) fn sleep<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let n = data::int(d, "duration").unwrap_or(0);
    let unit = match text(d, "unit").unwrap_or("s") {
        u @ ("ms" | "s" | "m" | "h") => u,
        _ => "s",
    };
    rt.say(format!("waits {n} {unit}"));
    if hangup_during(rt) {
        return Action::stop("the caller hung up during the wait: stop");
    }
    Action::next("wait over: `_`")
}

pub(crate) fn record_call<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let stop = text(d, "action") == Some("stop");
    let limit = data::int(d, "time_limit").unwrap_or(3600);
    if stop {
        rt.say("stops recording the call");
    } else {
        rt.say(format!("starts recording the call (up to {limit} s)"));
    }
    Action::next("`_`")
}

pub(crate) fn record_caller<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let Some(url) = text(d, "url") else {
        rt.say("records the caller, but no storage URL is set: nothing recorded");
        return Action::next("recording not allowed: `_`");
    };
    let limit = data::int(d, "time_limit").unwrap_or(3600);
    rt.say(format!(
        "answers and records the caller to {url} until a key is pressed (up to {limit} s)"
    ));
    match rt.next_event("the recording to end", |e| {
        matches!(e, Event::Record | Event::Dtmf { leg: None, .. })
    }) {
        Next::Hangup => return Action::next("the caller hung up while recording"),
        Next::Got(_) => {}
        Next::Nothing => rt.assume("the caller records and stops"),
    }
    Action::next("recording done: `_`")
}

pub(crate) fn answer<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    rt.say("answers the call");
    Action::next("`_`")
}

pub(crate) fn noop<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    rt.say("does nothing");
    Action::next("`_`")
}

pub(crate) fn skel<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    rt.say("the template module: does nothing");
    Action::next("`_`")
}

pub(crate) fn hangup<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    rt.say("hangs up");
    Action::HardStop {
        reason: "hangup ends the call, even inside a branch".into(),
    }
}

fn wait_for_the_hangup(rt: &mut Run<'_>) {
    match rt.next_event("the caller to hang up", |_| false) {
        Next::Hangup => {}
        _ => {
            rt.assume("the caller eventually hangs up");
            rt.caller_gone = true;
            rt.destroyed = true;
        }
    }
}

pub(crate) fn wait_for_hangup<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    rt.say("waits for the caller to hang up");
    wait_for_the_hangup(rt);
    Action::stop("the caller hung up")
}

pub(crate) fn dead_air<'a>(rt: &mut Run<'a>, _node: &FlowRef<'a>) -> Action<'a> {
    rt.say("answers and keeps the line silent until the caller hangs up");
    wait_for_the_hangup(rt);
    Action::stop("the caller hung up")
}

pub(crate) fn response<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    let d = node.data();
    let code = data::int(d, "code").unwrap_or(486);
    let message = text(d, "message");
    rt.say(format!(
        "rejects the call with SIP {code}{}{}",
        message.map(|m| format!(" {m}")).unwrap_or_default(),
        text(d, "media")
            .map(|m| format!(", playing {m} first"))
            .unwrap_or_default()
    ));
    // A final response ends the call; the executor's stop then finds the channel gone.
    rt.destroyed = true;
    let mut ending = Ending::new(
        OutcomeKind::Hangup,
        format!(
            "the call was answered with SIP {code}{}",
            message.map(|m| format!(" {m}")).unwrap_or_default()
        ),
    );
    ending.cause = Some(format!("sip:{code}"));
    rt.pending = Some(ending);
    Action::stop("response sent: stop")
}
