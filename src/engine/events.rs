//! The event script: what the outside world does while a simulated call runs.
//!
//! Owns the event forms (parsing from JSON, echoing back as JSON). Must not decide what an
//! event means to a module: the modules ask the executor for "the next event of this kind"
//! and apply Kazoo's semantics themselves. Every form is documented in docs/simulation.md.

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

/// One thing that happens to the call, in script order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `{"dtmf":"12"}`: the caller presses these keys, then pauses (a digit collection ends
    /// with the pause, as with the inter-digit timeout). With `"leg":"a"|"b"` the keys are
    /// pressed during a bridge on that leg (the caller's or the callee's) and go to metaflows.
    Dtmf { digits: String, leg: Option<Leg> },
    /// `{"no_input":true}`: a digit collection times out with nothing pressed.
    NoInput,
    /// `{"bridge":...}`: how a bridge (user, device, group, resources, ...) ends.
    Bridge(BridgeEvent),
    /// `{"hangup":true}`: the caller hangs up.
    Hangup,
    /// `{"pivot":{"flow":{...}}}`, `{"pivot":"failed"}`, `{"pivot":"processing"}`.
    Pivot(FlowReply),
    /// `{"function":{"flow":{...}}}`, `{"function":"failed"}`: a stored function's reply.
    Function(FlowReply),
    /// `{"nomorobo":{"score":0.7}}` or `{"nomorobo":"failed"}`.
    Nomorobo(Option<f64>),
    /// `{"webhook":"ok"|"failed"}`: the webhook's delivery (it never changes the path).
    Webhook(bool),
    /// `{"queue":"answered"|"failed"|"timeout"|"exit"|"full"|"hangup"}`: an ACDc queue's
    /// outcome for a caller waiting in it.
    Queue(QueueEvent),
    /// `{"queue_wait":{"average":120}}` (seconds) or `{"queue_wait":"failed"}`.
    QueueWait(Option<u64>),
    /// `{"fax_detect":"fax"|"voice"}`.
    FaxDetect(bool),
    /// `{"record":"done"}`: a recording (voicemail message, record_caller) ends normally.
    Record,
    /// `{"park":"picked_up"|"timeout"|"occupied"}`: a parked call is picked up, its ringback
    /// timeout expires (the parker is called back), or the slot is already taken.
    Park(ParkEvent),
    /// `{"channel":"found"|"none"}`: whether a channel to eavesdrop on, intercept, pick up
    /// or move exists.
    Channel(bool),
    /// `{"camp":"idle"|"busy"}`: the camped-on extension's state.
    Camp(bool),
}

/// Which leg pressed the keys during a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    A,
    B,
}

impl Leg {
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::A => "a",
            Leg::B => "b",
        }
    }
}

/// How a bridge ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEvent {
    Answered,
    /// Kazoo's `{fail, ...}`: `cause` (e.g. `USER_BUSY`) and `code` (e.g. `sip:486`); absent
    /// values take Kazoo's defaults where the module reads them (`UNSPECIFIED`, `sip:600`).
    Failed {
        cause: Option<String>,
        code: Option<String>,
    },
    /// Kazoo's `{error, timeout}`: nothing completed within the bridge wait.
    Timeout,
}

/// An HTTP application's reply that may carry a callflow.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowReply {
    Flow(Value),
    Failed,
    /// Pivot only: the application took the call over and returns no callflow.
    Processing,
}

/// An ACDc queue outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueEvent {
    Answered,
    Failed,
    Timeout,
    Exit,
    Full,
}

impl QueueEvent {
    fn as_str(self) -> &'static str {
        match self {
            QueueEvent::Answered => "answered",
            QueueEvent::Failed => "failed",
            QueueEvent::Timeout => "timeout",
            QueueEvent::Exit => "exit",
            QueueEvent::Full => "full",
        }
    }
}

/// What happens to a parked call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkEvent {
    PickedUp,
    Timeout,
    Occupied,
}

impl ParkEvent {
    fn as_str(self) -> &'static str {
        match self {
            ParkEvent::PickedUp => "picked_up",
            ParkEvent::Timeout => "timeout",
            ParkEvent::Occupied => "occupied",
        }
    }
}

/// An event that could not be read. `index` is set by [`parse_events`]; the HTTP layer turns
/// the error into a 400 on `events.<index>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", index.map(|i| format!("events.{i}: ")).unwrap_or_default())]
pub struct EventError {
    pub index: Option<usize>,
    pub message: String,
}

impl EventError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            index: None,
            message: message.into(),
        }
    }
}

/// Parses a whole script, naming the index of the first bad event.
pub fn parse_events(values: &[Value]) -> Result<Vec<Event>, EventError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Event::parse(v).map_err(|mut e| {
                e.index = Some(i);
                e
            })
        })
        .collect()
}

const KINDS: [&str; 15] = [
    "dtmf",
    "no_input",
    "bridge",
    "hangup",
    "pivot",
    "function",
    "nomorobo",
    "webhook",
    "queue",
    "queue_wait",
    "fax_detect",
    "record",
    "park",
    "channel",
    "camp",
];

fn word<'v>(obj: &'v Map<String, Value>, key: &str) -> Result<&'v str, EventError> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| EventError::new(format!("\"{key}\" must be a string")))
}

fn one_of<T: Copy>(value: &str, key: &str, table: &[(&str, T)]) -> Result<T, EventError> {
    table
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            EventError::new(format!(
                "\"{key}\" must be one of {}, not \"{value}\"",
                names.join(", ")
            ))
        })
}

fn flow_reply(
    obj: &Map<String, Value>,
    key: &str,
    processing: bool,
) -> Result<FlowReply, EventError> {
    match obj.get(key) {
        Some(Value::String(s)) if s == "failed" => Ok(FlowReply::Failed),
        Some(Value::String(s)) if processing && s == "processing" => Ok(FlowReply::Processing),
        Some(Value::Object(o)) => match o.get("flow") {
            Some(Value::Object(_)) => Ok(FlowReply::Flow(o["flow"].clone())),
            _ => Err(EventError::new(format!(
                "\"{key}\" as an object must hold a \"flow\" object"
            ))),
        },
        _ => Err(EventError::new(format!(
            "\"{key}\" must be {{\"flow\":{{...}}}} or \"failed\"{}",
            if processing { " or \"processing\"" } else { "" }
        ))),
    }
}

fn is_true(obj: &Map<String, Value>, key: &str) -> Result<(), EventError> {
    match obj.get(key) {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err(EventError::new(format!("\"{key}\" must be true"))),
    }
}

impl Event {
    /// Reads one event. The kind is the one known key of the object (`dtmf`, `bridge`, ...).
    pub fn parse(value: &Value) -> Result<Event, EventError> {
        let Some(obj) = value.as_object() else {
            return Err(EventError::new("an event must be an object"));
        };
        let kind = obj
            .keys()
            .find(|k| KINDS.contains(&k.as_str()))
            .ok_or_else(|| {
                EventError::new(format!("an event needs one of: {}", KINDS.join(", ")))
            })?;
        let allowed: &[&str] = match kind.as_str() {
            "dtmf" => &["dtmf", "leg"],
            "bridge" => &["bridge", "cause", "code"],
            _ => &[],
        };
        if let Some(extra) = obj
            .keys()
            .find(|k| *k != kind && !allowed.contains(&k.as_str()))
        {
            return Err(EventError::new(format!(
                "unexpected key \"{extra}\" in a {kind} event"
            )));
        }
        match kind.as_str() {
            "dtmf" => {
                let digits = word(obj, "dtmf")?;
                if digits.is_empty()
                    || !digits
                        .bytes()
                        .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'A'..=b'D'))
                {
                    return Err(EventError::new(
                        "\"dtmf\" must be one or more of 0-9 * # A-D (use {\"no_input\":true} for silence)",
                    ));
                }
                let leg = match obj.get("leg") {
                    None => None,
                    Some(Value::String(s)) => {
                        Some(one_of(s, "leg", &[("a", Leg::A), ("b", Leg::B)])?)
                    }
                    Some(_) => return Err(EventError::new("\"leg\" must be \"a\" or \"b\"")),
                };
                Ok(Event::Dtmf {
                    digits: digits.to_string(),
                    leg,
                })
            }
            "no_input" => is_true(obj, "no_input").map(|()| Event::NoInput),
            "hangup" => is_true(obj, "hangup").map(|()| Event::Hangup),
            "bridge" => {
                let how = word(obj, "bridge")?;
                let opt = |k: &str| -> Result<Option<String>, EventError> {
                    match obj.get(k) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                        Some(_) => Err(EventError::new(format!(
                            "\"{k}\" must be a non-empty string"
                        ))),
                    }
                };
                let (cause, code) = (opt("cause")?, opt("code")?);
                match how {
                    "failed" => Ok(Event::Bridge(BridgeEvent::Failed { cause, code })),
                    "answered" | "timeout" if cause.is_some() || code.is_some() => Err(
                        EventError::new("\"cause\" and \"code\" belong to a failed bridge"),
                    ),
                    "answered" => Ok(Event::Bridge(BridgeEvent::Answered)),
                    "timeout" => Ok(Event::Bridge(BridgeEvent::Timeout)),
                    other => Err(EventError::new(format!(
                        "\"bridge\" must be one of answered, failed, timeout, not \"{other}\""
                    ))),
                }
            }
            "pivot" => flow_reply(obj, "pivot", true).map(Event::Pivot),
            "function" => flow_reply(obj, "function", false).map(Event::Function),
            "nomorobo" => match &obj["nomorobo"] {
                Value::String(s) if s == "failed" => Ok(Event::Nomorobo(None)),
                Value::Object(o) => match o.get("score").and_then(Value::as_f64) {
                    Some(score) if (0.0..=1.0).contains(&score) && o.len() == 1 => {
                        Ok(Event::Nomorobo(Some(score)))
                    }
                    _ => Err(EventError::new(
                        "\"nomorobo.score\" must be a number from 0 to 1",
                    )),
                },
                _ => Err(EventError::new(
                    "\"nomorobo\" must be {\"score\":0.7} or \"failed\"",
                )),
            },
            "webhook" => one_of(
                word(obj, "webhook")?,
                "webhook",
                &[("ok", true), ("failed", false)],
            )
            .map(Event::Webhook),
            "queue" => one_of(
                word(obj, "queue")?,
                "queue",
                &[
                    ("answered", QueueEvent::Answered),
                    ("failed", QueueEvent::Failed),
                    ("timeout", QueueEvent::Timeout),
                    ("exit", QueueEvent::Exit),
                    ("full", QueueEvent::Full),
                ],
            )
            .map(Event::Queue),
            "queue_wait" => match &obj["queue_wait"] {
                Value::String(s) if s == "failed" => Ok(Event::QueueWait(None)),
                Value::Object(o) => match o.get("average").and_then(Value::as_u64) {
                    Some(avg) if o.len() == 1 => Ok(Event::QueueWait(Some(avg))),
                    _ => Err(EventError::new(
                        "\"queue_wait.average\" must be a whole number of seconds",
                    )),
                },
                _ => Err(EventError::new(
                    "\"queue_wait\" must be {\"average\":120} or \"failed\"",
                )),
            },
            "fax_detect" => one_of(
                word(obj, "fax_detect")?,
                "fax_detect",
                &[("fax", true), ("voice", false)],
            )
            .map(Event::FaxDetect),
            "record" => {
                one_of(word(obj, "record")?, "record", &[("done", ())]).map(|()| Event::Record)
            }
            "park" => one_of(
                word(obj, "park")?,
                "park",
                &[
                    ("picked_up", ParkEvent::PickedUp),
                    ("timeout", ParkEvent::Timeout),
                    ("occupied", ParkEvent::Occupied),
                ],
            )
            .map(Event::Park),
            "channel" => one_of(
                word(obj, "channel")?,
                "channel",
                &[("found", true), ("none", false)],
            )
            .map(Event::Channel),
            "camp" => one_of(
                word(obj, "camp")?,
                "camp",
                &[("busy", true), ("idle", false)],
            )
            .map(Event::Camp),
            other => Err(EventError::new(format!("unknown event kind \"{other}\""))),
        }
    }

    /// The event as JSON, in the form [`Event::parse`] reads.
    pub fn to_json(&self) -> Value {
        match self {
            Event::Dtmf { digits, leg: None } => json!({ "dtmf": digits }),
            Event::Dtmf {
                digits,
                leg: Some(leg),
            } => json!({ "dtmf": digits, "leg": leg.as_str() }),
            Event::NoInput => json!({ "no_input": true }),
            Event::Hangup => json!({ "hangup": true }),
            Event::Bridge(BridgeEvent::Answered) => json!({ "bridge": "answered" }),
            Event::Bridge(BridgeEvent::Timeout) => json!({ "bridge": "timeout" }),
            Event::Bridge(BridgeEvent::Failed { cause, code }) => {
                let mut o = Map::new();
                o.insert("bridge".into(), "failed".into());
                if let Some(c) = cause {
                    o.insert("cause".into(), c.as_str().into());
                }
                if let Some(c) = code {
                    o.insert("code".into(), c.as_str().into());
                }
                Value::Object(o)
            }
            Event::Pivot(r) => json!({ "pivot": reply_json(r) }),
            Event::Function(r) => json!({ "function": reply_json(r) }),
            Event::Nomorobo(Some(s)) => json!({ "nomorobo": { "score": s } }),
            Event::Nomorobo(None) => json!({ "nomorobo": "failed" }),
            Event::Webhook(ok) => json!({ "webhook": if *ok { "ok" } else { "failed" } }),
            Event::Queue(q) => json!({ "queue": q.as_str() }),
            Event::QueueWait(Some(a)) => json!({ "queue_wait": { "average": a } }),
            Event::QueueWait(None) => json!({ "queue_wait": "failed" }),
            Event::FaxDetect(fax) => json!({ "fax_detect": if *fax { "fax" } else { "voice" } }),
            Event::Record => json!({ "record": "done" }),
            Event::Park(p) => json!({ "park": p.as_str() }),
            Event::Channel(found) => json!({ "channel": if *found { "found" } else { "none" } }),
            Event::Camp(busy) => json!({ "camp": if *busy { "busy" } else { "idle" } }),
        }
    }

    /// Short name of the kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Dtmf { leg: None, .. } => "dtmf",
            Event::Dtmf { leg: Some(_), .. } => "in-bridge dtmf",
            Event::NoInput => "no_input",
            Event::Bridge(_) => "bridge",
            Event::Hangup => "hangup",
            Event::Pivot(_) => "pivot",
            Event::Function(_) => "function",
            Event::Nomorobo(_) => "nomorobo",
            Event::Webhook(_) => "webhook",
            Event::Queue(_) => "queue",
            Event::QueueWait(_) => "queue_wait",
            Event::FaxDetect(_) => "fax_detect",
            Event::Record => "record",
            Event::Park(_) => "park",
            Event::Channel(_) => "channel",
            Event::Camp(_) => "camp",
        }
    }
}

fn reply_json(r: &FlowReply) -> Value {
    match r {
        FlowReply::Flow(f) => json!({ "flow": f }),
        FlowReply::Failed => json!("failed"),
        FlowReply::Processing => json!("processing"),
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips() {
        for v in [
            json!({"dtmf": "12"}),
            json!({"dtmf": "*2", "leg": "b"}),
            json!({"no_input": true}),
            json!({"bridge": "answered"}),
            json!({"bridge": "failed", "cause": "USER_BUSY", "code": "sip:486"}),
            json!({"bridge": "failed"}),
            json!({"bridge": "timeout"}),
            json!({"hangup": true}),
            json!({"pivot": {"flow": {"module": "hangup", "data": {}}}}),
            json!({"pivot": "failed"}),
            json!({"pivot": "processing"}),
            json!({"function": "failed"}),
            json!({"nomorobo": {"score": 0.7}}),
            json!({"nomorobo": "failed"}),
            json!({"webhook": "ok"}),
            json!({"queue": "answered"}),
            json!({"queue_wait": {"average": 120}}),
            json!({"fax_detect": "fax"}),
            json!({"record": "done"}),
            json!({"park": "timeout"}),
            json!({"channel": "none"}),
            json!({"camp": "busy"}),
        ] {
            let e = Event::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(e.to_json(), v);
            assert_eq!(serde_json::to_value(&e).unwrap(), v);
        }
    }

    #[test]
    fn errors_name_the_index_and_the_problem() {
        let err = parse_events(&[json!({"dtmf": "1"}), json!({"bridge": "maybe"})]).unwrap_err();
        assert_eq!(err.index, Some(1));
        assert_eq!(
            err.to_string(),
            "events.1: \"bridge\" must be one of answered, failed, timeout, not \"maybe\""
        );
        for bad in [
            json!(3),
            json!({}),
            json!({"dtmf": ""}),
            json!({"dtmf": "1x"}),
            json!({"dtmf": "1", "leg": "c"}),
            json!({"dtmf": "1", "extra": 1}),
            json!({"no_input": false}),
            json!({"nomorobo": {"score": 2}}),
            json!({"pivot": {"url": "x"}}),
            json!({"bridge": "answered", "cause": "X"}),
        ] {
            assert!(Event::parse(&bad).is_err(), "{bad} should be refused");
        }
    }
}
