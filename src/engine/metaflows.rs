//! Metaflows (Kazoo's konami): DTMF features pressed during an answered bridge.
//!
//! Owns which listeners a bridge has (the caller's endpoint and the answered callee's, as
//! Kazoo starts them with endpoint metaflows switched on), their settings (endpoint
//! `metaflows` merged account < device < user, then the account's `metaflows`, then the
//! system defaults), the digit state machine (binding digit arms, the pause fires), matching
//! (numbers before patterns, captures passed on) and running a metaflow tree with the
//! metaflow modules. Must not touch the callflow executor's stack: it answers with an
//! [`Action`] only when the call leaves the bridge.
//!
//! The callflow document's own `metaflow` key is never read (Kazoo's runtime ignores it too);
//! the executor reports it once as `metaflow_key_ignored`.

use std::sync::LazyLock;

use serde_json::{json, Map, Value};

use super::data::{self, text};
use super::events::{Event, Leg};
use super::exec::{Action, Ending, FlowRef, Next, Run};
use super::trace::{Endpoint, OutcomeKind};
use super::Doc;

/// Kazoo's hard defaults when neither endpoint, account nor system config sets them.
static DEFAULT_NUMBERS: LazyLock<Value> =
    LazyLock::new(|| json!({"2": {"module": "say", "data": {"text": "hi"}}}));
static DEFAULT_PATTERNS: LazyLock<Value> =
    LazyLock::new(|| json!({"^2$": {"module": "say", "data": {"text": "hi"}}}));
const DEFAULT_DIGIT_TIMEOUT_MS: i64 = 800;

/// The metaflow modules Kazoo ships (konami) plus the four whose schemas exist without an
/// open-source module.
pub const METAFLOW_MODULES: [&str; 17] = [
    "audio_level",
    "break",
    "callflow",
    "hangup",
    "hold",
    "intercept",
    "move",
    "play",
    "record_call",
    "resume",
    "say",
    "tts",
    "transfer",
    "hold_control",
    "pivot",
    "relate",
    "sound_touch",
];

/// One place metaflow settings come from, with its name for the trace.
struct Source<'a> {
    doc: &'a Map<String, Value>,
    name: String,
}

/// One konami listener.
struct Listener<'a> {
    who: &'static str,
    /// Endpoint metaflow objects, highest precedence first (user, device, account).
    layers: Vec<Source<'a>>,
    /// The account document's `metaflows`, used when the endpoint's merged object lacks a
    /// setting.
    account: Option<Source<'a>>,
    binding: String,
    timeout_ms: i64,
    legs: (bool, bool),
}

fn metaflows_of(doc: &Doc) -> Option<&Map<String, Value>> {
    doc.get("metaflows")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
}

impl<'a> Listener<'a> {
    /// A listener for an endpoint (device plus owner), if its merged metaflows are non-empty.
    fn build(rt: &Run<'a>, who: &'static str, device: &'a Doc, is_a_leg: bool) -> Option<Self> {
        let docs = rt.docs;
        let account = rt.account();
        let owner = text(device, "owner_id").and_then(|o| docs.get("users", o));
        let dev_id = data::doc_id(device).unwrap_or("?");
        let mut layers = Vec::new();
        if let Some(u) = owner.and_then(metaflows_of) {
            layers.push(Source {
                doc: u,
                name: format!("user:{}", owner.and_then(data::doc_id).unwrap_or("?")),
            });
        }
        if let Some(d) = metaflows_of(device) {
            layers.push(Source {
                doc: d,
                name: format!("device:{dev_id}"),
            });
        }
        let acct = account.and_then(metaflows_of).map(|m| Source {
            doc: m,
            name: "account".into(),
        });
        if let Some(a) = &acct {
            layers.push(Source {
                doc: a.doc,
                name: a.name.clone(),
            });
        }
        if layers.is_empty() {
            return None;
        }
        let setting = |k: &str| layers.iter().find_map(|s| s.doc.get(k));
        let binding = setting("binding_digit")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                acct.as_ref()
                    .and_then(|a| text(a.doc, "binding_digit"))
                    .filter(|d| is_dtmf_digit(d))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "*".into());
        let timeout_ms = setting("digit_timeout")
            .and_then(|v| v.as_i64())
            .or_else(|| {
                acct.as_ref()
                    .and_then(|a| data::int(a.doc, "digit_timeout_ms"))
            })
            .unwrap_or(DEFAULT_DIGIT_TIMEOUT_MS);
        let listen_on = setting("listen_on")
            .and_then(Value::as_str)
            .unwrap_or("self");
        let legs = match (listen_on, is_a_leg) {
            ("both", _) => (true, true),
            ("peer", true) => (false, true),
            ("peer", false) => (true, false),
            (_, true) => (true, false),
            (_, false) => (false, true),
        };
        Some(Listener {
            who,
            layers,
            account: acct,
            binding,
            timeout_ms,
            legs,
        })
    }

    fn listens(&self, leg: Leg) -> bool {
        match leg {
            Leg::A => self.legs.0,
            Leg::B => self.legs.1,
        }
    }

    /// `has_metaflow`: numbers first (exact key), then patterns in key order.
    fn find(&self, buffer: &str, rt: &mut Run<'a>) -> Option<Hit<'a>> {
        let numbers: Vec<(&'a Map<String, Value>, String)> = self.objects("numbers");
        let patterns = self.objects("patterns");
        let (numbers, numbers_default) = if numbers.is_empty() {
            match DEFAULT_NUMBERS.as_object() {
                Some(m) => (vec![(m, "system".to_string())], true),
                None => (numbers, true),
            }
        } else {
            (numbers, false)
        };
        for (map, src) in &numbers {
            if let Some(node) = map.get(buffer) {
                return Some(Hit {
                    node,
                    source: src.clone(),
                    path: format!("metaflows.numbers.{buffer}"),
                    collected: None,
                    captures: Vec::new(),
                    default: numbers_default,
                });
            }
        }
        let patterns = if patterns.is_empty() {
            DEFAULT_PATTERNS
                .as_object()
                .map(|m| vec![(m, "system".to_string())])
                .unwrap_or_default()
        } else {
            patterns
        };
        // Merged pattern order: lowest precedence layer's keys first, later layers override.
        let mut seen: Vec<&str> = Vec::new();
        for (map, _) in patterns.iter().rev() {
            for k in map.keys() {
                if !seen.contains(&k.as_str()) {
                    seen.push(k);
                }
            }
        }
        for key in seen {
            let Some((node, src)) = patterns
                .iter()
                .find_map(|(m, s)| m.get(key).map(|n| (n, s)))
            else {
                continue;
            };
            let Some(re) = data::regex(key) else {
                rt.quirk(format!(
                    "metaflow pattern {key:?} does not compile: Kazoo's konami process crashes on it"
                ));
                continue;
            };
            if let Some(caps) = re.captures(buffer) {
                let captures = (1..caps.len())
                    .map(|i| {
                        caps.get(i)
                            .map(|m| m.as_str().to_string())
                            .unwrap_or_default()
                    })
                    .collect();
                return Some(Hit {
                    node,
                    source: src.clone(),
                    path: format!("metaflows.patterns.{key}"),
                    collected: Some(buffer.to_string()),
                    captures,
                    default: false,
                });
            }
        }
        None
    }

    /// `numbers`/`patterns` objects by precedence (endpoint layers, then the account's).
    fn objects(&self, key: &str) -> Vec<(&'a Map<String, Value>, String)> {
        let mut out: Vec<(&'a Map<String, Value>, String)> = self
            .layers
            .iter()
            .filter_map(|s| {
                s.doc
                    .get(key)
                    .and_then(Value::as_object)
                    .map(|m| (m, s.name.clone()))
            })
            .collect();
        if out.is_empty() {
            if let Some(a) = &self.account {
                if let Some(m) = a.doc.get(key).and_then(Value::as_object) {
                    out.push((m, a.name.clone()));
                }
            }
        }
        out
    }
}

fn is_dtmf_digit(d: &str) -> bool {
    d.len() == 1
        && d.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

struct Hit<'a> {
    node: &'a Value,
    source: String,
    path: String,
    collected: Option<String>,
    captures: Vec<String>,
    default: bool,
}

/// Runs the metaflows of an answered bridge on the `leg` DTMF events that follow it.
/// `Some(action)` when the call leaves the bridge for elsewhere (transfer, intercept, a new
/// callflow); `None` when the bridge simply ends.
pub(crate) fn during_bridge<'a>(rt: &mut Run<'a>, callee: Option<&'a Doc>) -> Option<Action<'a>> {
    if !matches!(rt.peek(), Some(Event::Dtmf { leg: Some(_), .. })) {
        return None;
    }
    let mut listeners = Vec::new();
    if let Some(dev) = rt.caller_device() {
        listeners.extend(Listener::build(rt, "caller", dev, true));
    }
    if let Some(dev) = callee {
        listeners.extend(Listener::build(rt, "callee", dev, false));
    }
    loop {
        let (digits, leg) = match rt.next_event("in-bridge DTMF", |e| {
            matches!(e, Event::Dtmf { leg: Some(_), .. })
        }) {
            Next::Got(Event::Dtmf {
                digits,
                leg: Some(leg),
            }) => (digits.as_str(), *leg),
            Next::Hangup => return None,
            _ => return None,
        };
        if listeners.is_empty() {
            rt.add(&format!(
                "leg {} pressed {digits}: no metaflow listener (no `metaflows` on the caller's or callee's device, user or account)",
                leg.as_str()
            ));
            continue;
        }
        let mut ran = false;
        for l in &listeners {
            if !l.listens(leg) {
                continue;
            }
            // The state machine for one burst: the binding digit arms, later digits (the
            // binding digit included) are buffered, the pause fires the timer.
            let Some(pos) = digits
                .find(l.binding.as_str())
                .filter(|_| !l.binding.is_empty())
            else {
                continue;
            };
            let buffer = &digits[pos + l.binding.len()..];
            let hit = l.find(buffer, rt);
            let Some(hit) = hit else {
                rt.add(&format!(
                    "leg {} pressed {digits}: the {} listener (binding {}, {} ms) collects \"{buffer}\", which matches no metaflow",
                    leg.as_str(),
                    l.who,
                    l.binding,
                    l.timeout_ms
                ));
                ran = true;
                continue;
            };
            ran = true;
            rt.add(&format!(
                "leg {} pressed {digits}: the {} listener collects \"{buffer}\" and runs the metaflow at {} {}{}",
                leg.as_str(),
                l.who,
                hit.source,
                hit.path,
                if hit.default { " (Kazoo's built-in default)" } else { "" }
            ));
            if let Some(action) = run_tree(rt, &hit, leg) {
                return Some(action);
            }
            if rt.destroyed {
                return None;
            }
        }
        if !ran {
            rt.add(&format!(
                "leg {} pressed {digits}: no listener hears that leg or the binding digit was not pressed",
                leg.as_str()
            ));
        }
    }
}

/// Runs a metaflow tree (`konami_code_exe`): each node's module, then `_` on continue.
fn run_tree<'a>(rt: &mut Run<'a>, hit: &Hit<'a>, leg: Leg) -> Option<Action<'a>> {
    let mut node = hit.node;
    let mut path = hit.path.clone();
    loop {
        let obj = node.as_object()?;
        let module = obj.get("module").and_then(Value::as_str).unwrap_or("");
        let d = obj
            .get("data")
            .and_then(Value::as_object)
            .unwrap_or(&data::EMPTY);
        let depth = rt.depth();
        if !rt.push_step(&format!("metaflow.{module}"), &hit.source, &path, depth) {
            return None;
        }
        let (summary, effect) = metaflow_module(rt, module, d, hit, leg);
        rt.say(summary);
        match effect {
            Effect::Continue => {
                let next = obj.get("children").and_then(|c| c.get("_"));
                match next {
                    Some(n) if n.as_object().is_some_and(|o| !o.is_empty()) => {
                        rt.reason("the metaflow continues to `_`");
                        node = n;
                        path.push_str(".children._");
                    }
                    _ => return None,
                }
            }
            Effect::End => return None,
            Effect::Leave(action) => return Some(action),
        }
    }
}

enum Effect<'a> {
    Continue,
    End,
    Leave(Action<'a>),
}

fn metaflow_module<'a>(
    rt: &mut Run<'a>,
    module: &str,
    d: &'a Map<String, Value>,
    hit: &Hit<'a>,
    leg: Leg,
) -> (String, Effect<'a>) {
    let pressing = match leg {
        Leg::A => "the caller's leg",
        Leg::B => "the callee's leg",
    };
    let first_capture = hit.captures.first().filter(|c| !c.is_empty()).cloned();
    match module {
        "transfer" => {
            let target = text(d, "target").map(str::to_string).or(first_capture);
            let Some(target) = target else {
                return (
                    "attended transfer with no target (no data.target and nothing captured): Kazoo's transfer has nowhere to call".into(),
                    Effect::End,
                );
            };
            let reach = match rt.dialplan.lookup(&target) {
                Some(r) => format!(", which reaches callflow {}", r.callflow_id),
                None => ", which no callflow takes".into(),
            };
            let summary = format!(
                "attended transfer of the other party to {target}{reach}: the transferee hears hold music while {target} is called through callflows"
            );
            rt.assume(format!(
                "the transfer target {target} answers and the transferor hangs up, completing the transfer"
            ));
            let ending = Ending::new(
                OutcomeKind::Transferred,
                format!("transferred to {target} by a metaflow"),
            )
            .at(Endpoint::new("number", Some(&target), None));
            (summary, Effect::Leave(Action::end(ending)))
        }
        "intercept" => {
            let kind = text(d, "target_type").unwrap_or("device");
            let id = text(d, "target_id");
            let doc_type = if kind == "user" { "users" } else { "devices" };
            let (doc, name) = data::named(rt.docs, doc_type, id);
            rt.quirk("konami's intercept casts transfer_to to the listener, which has no clause for it: that part is ignored");
            let summary =
                format!("calls {kind} {name}, which picks up the other leg of this bridge");
            let ending = Ending::new(
                OutcomeKind::Transferred,
                format!("intercepted by {kind} {name}"),
            )
            .at(Endpoint::new(kind, id, doc.and_then(data::doc_name)));
            (summary, Effect::Leave(Action::end(ending)))
        }
        "move" => {
            let owner = text(d, "owner_id")
                .map(str::to_string)
                .or_else(|| rt.owner_id.clone());
            let (doc, name) = data::named(rt.docs, "users", owner.as_deref());
            let summary = format!("moves the call to another device of {name}");
            let ending = Ending::new(
                OutcomeKind::Transferred,
                format!("moved to another device of {name}"),
            )
            .at(Endpoint::new(
                "user",
                owner.as_deref(),
                doc.and_then(data::doc_name),
            ));
            (summary, Effect::Leave(Action::end(ending)))
        }
        "callflow" => {
            let number = first_capture.or_else(|| hit.collected.clone());
            let found = match text(d, "id") {
                Some(id) => {
                    let docs = rt.docs;
                    docs.get("callflows", id)
                        .and_then(|doc| FlowRef::from_callflow(id, doc))
                        .map(|f| (id.to_string(), f))
                }
                None => number.as_deref().and_then(|n| {
                    let (route, flow) = rt.lookup(n)?;
                    flow.map(|f| (route.callflow_id, f))
                }),
            };
            match found {
                Some((id, flow)) => {
                    rt.pending = None;
                    rt.bridged = true;
                    (
                        format!(
                            "runs callflow {id} on this call (a callflow resume: the bridge ends)"
                        ),
                        Effect::Leave(Action::Replace {
                            flow,
                            reason: format!("a metaflow starts callflow {id} on the call"),
                        }),
                    )
                }
                None => {
                    rt.quirk("konami's callflow metaflow crashes when the callflow is not found: nothing happens");
                    ("runs a callflow, but none is found".into(), Effect::End)
                }
            }
        }
        "hangup" => {
            rt.destroyed = true;
            (
                format!("hangs up {pressing}, ending the bridge"),
                Effect::End,
            )
        }
        "hold" => (
            format!(
                "puts {pressing}'s peer on hold (press {} to resume)",
                text(d, "unhold_key").unwrap_or("1")
            ),
            Effect::Continue,
        ),
        "record_call" => {
            let action = text(d, "action").unwrap_or("toggle");
            let does = match action {
                "stop" => "stops recording the call",
                "mask" => "masks the recording",
                "unmask" => "unmasks the recording",
                "start" => "starts recording the call",
                _ => {
                    rt.quirk(format!(
                        "metaflow record_call action \"{action}\" is treated as start (Kazoo has no toggle)"
                    ));
                    "starts recording the call"
                }
            };
            (does.into(), Effect::Continue)
        }
        "audio_level" => (
            format!(
                "{} the {} volume on {pressing}",
                if text(d, "action") == Some("stop") {
                    "resets"
                } else {
                    "adjusts"
                },
                text(d, "mode").unwrap_or("read")
            ),
            Effect::Continue,
        ),
        "break" => (
            format!("stops what is playing on {pressing}"),
            Effect::Continue,
        ),
        "play" => (
            format!(
                "plays media {} on {} leg(s)",
                text(d, "id").unwrap_or("(no id)"),
                text(d, "leg").unwrap_or("both")
            ),
            Effect::Continue,
        ),
        "resume" => ("reconnects the other leg".into(), Effect::Continue),
        "say" => (
            format!("says \"{}\"", text(d, "text").unwrap_or("")),
            Effect::Continue,
        ),
        "tts" => (
            format!("speaks \"{}\"", text(d, "text").unwrap_or("")),
            Effect::Continue,
        ),
        "hold_control" | "pivot" | "relate" | "sound_touch" => {
            rt.quirk(format!(
                "metaflow {module} has a schema but no open-source module: Kazoo logs an error and nothing happens"
            ));
            (
                format!("{module}: not available in open-source Kazoo"),
                Effect::End,
            )
        }
        other => (
            format!("unknown metaflow module \"{other}\": nothing happens"),
            Effect::End,
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engine::testkit::{codes, walk, Sim};
    use crate::engine::OutcomeKind;

    fn sim() -> Sim {
        let mut s = Sim::new()
            .doc(
                "devices",
                "caller",
                json!({"name": "Reception", "metaflows": {
                    "binding_digit": "*",
                    "patterns": {"^3(\\d+)$": {"module": "transfer", "data": {}}}
                }}),
            )
            .doc("devices", "d1", json!({"name": "Desk", "owner_id": "u1"}))
            .doc("users", "u1", json!({"first_name": "Ann"}))
            .doc(
                "callflows",
                "cf2001",
                json!({"flow": {"module": "user", "data": {"id": "u1"}}}),
            );
        s.call.caller.device_id = Some("caller".into());
        s.plan = std::mem::take(&mut s.plan).with("2001", "cf2001");
        s
    }

    #[test]
    fn a_metaflow_transfer_goes_to_the_captured_target() {
        let flow = json!({"module": "device", "data": {"id": "d1"}});
        let t = sim()
            .events(json!([{"bridge": "answered"}, {"dtmf": "*32001", "leg": "a"}]))
            .run(flow);
        assert_eq!(walk(&t), ["device", "device", "metaflow.transfer"]);
        assert_eq!(t.outcome.kind, OutcomeKind::Transferred);
        assert_eq!(
            t.outcome.endpoint.as_ref().unwrap().id.as_deref(),
            Some("2001")
        );
        assert!(
            t.steps[2].summary.contains("reaches callflow cf2001"),
            "{}",
            t.steps[2].summary
        );
        assert_eq!(t.steps[2].callflow_id, "device:caller");
    }

    #[test]
    fn the_callee_leg_is_not_heard_by_the_callers_self_listener() {
        let flow = json!({"module": "device", "data": {"id": "d1"}});
        let t = sim()
            .events(json!([{"bridge": "answered"}, {"dtmf": "*32001", "leg": "b"}]))
            .run(flow);
        assert_eq!(t.outcome.kind, OutcomeKind::Connected);
        assert!(
            t.steps[1].summary.contains("no listener hears that leg"),
            "{}",
            t.steps[1].summary
        );
        assert!(!codes(&t).contains(&"event_unused"));
    }

    #[test]
    fn numbers_win_over_patterns_and_defaults_apply_without_either() {
        let mut s = sim().doc(
            "devices",
            "caller",
            json!({"metaflows": {
                "numbers": {"32001": {"module": "hold", "data": {}}},
                "patterns": {"^3(\\d+)$": {"module": "transfer", "data": {}}}
            }}),
        );
        let flow = json!({"module": "device", "data": {"id": "d1"}});
        let t = s
            .clone_with_events(json!([{"bridge": "answered"}, {"dtmf": "*32001", "leg": "a"}]))
            .run(flow.clone());
        assert_eq!(walk(&t).last().map(String::as_str), Some("metaflow.hold"));
        s = s.doc(
            "devices",
            "caller",
            json!({"metaflows": {"listen_on": "self"}}),
        );
        let t = s
            .clone_with_events(json!([{"bridge": "answered"}, {"dtmf": "*2", "leg": "a"}]))
            .run(flow);
        assert_eq!(walk(&t).last().map(String::as_str), Some("metaflow.say"));
        assert_eq!(t.steps.last().unwrap().callflow_id, "system");
    }

    #[test]
    fn several_in_bridge_presses_each_land_on_the_bridging_node() {
        let flow = json!({"module": "device", "data": {"id": "d1"}});
        let t = sim()
            .events(json!([
                {"bridge": "answered"},
                {"dtmf": "*2", "leg": "a"},
                {"dtmf": "*32001", "leg": "a"}
            ]))
            .run(flow);
        assert_eq!(
            walk(&t),
            [
                "device",
                "device",
                "metaflow.say",
                "device",
                "metaflow.transfer"
            ]
        );
        assert_eq!(t.steps[3].event_index, Some(2));
        assert!(t.steps[2].summary.contains("says \"hi\""));
    }
}
