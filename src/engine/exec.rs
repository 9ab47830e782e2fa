//! The executor: Kazoo's `cf_exe` as a loop over nodes.
//!
//! Owns the node currency (which node runs next), `continue` with its `_` fallback, `attempt`,
//! `branch` with the return stack and the branch budget, `stop` unwinding that stack, the step
//! limit, the event cursor and the trace being written. Must not know any module's meaning:
//! modules are called through [`super::modules::handler`] and answer with an [`Action`].

use std::rc::Rc;

use serde_json::{Map, Value};

use super::data::{self, EMPTY};
use super::events::{BridgeEvent, Event};
use super::modules;
use super::trace::{Endpoint, Outcome, OutcomeKind, Step, Trace, Warning};
use super::{needs_media, Call, Dial, Dialplan, Doc, Documents, Exit, Leave, Start};

/// Kazoo's `callflow.max_branch_count` default.
pub(crate) const BRANCH_BUDGET: i64 = 50;

/// A node Kazoo builds itself (the preflow wrapper, camping's user node, ...).
pub(crate) struct Built<'a> {
    pub module: String,
    pub data: Map<String, Value>,
    pub children: Vec<(String, FlowRef<'a>)>,
}

#[derive(Clone)]
enum Src<'a> {
    Json(&'a Value),
    Built(Rc<Built<'a>>),
}

/// A node to run, with where it lives (document and JSON path) for the trace.
#[derive(Clone)]
pub(crate) struct FlowRef<'a> {
    src: Src<'a>,
    pub doc: Rc<str>,
    pub path: String,
}

/// What a node value is, as far as launching it goes.
enum Shape<'n> {
    /// `{}` or nothing: Kazoo stops.
    Empty,
    /// Not an object, or an object without a module name: Kazoo's executor crashes.
    Broken(&'static str),
    Module(&'n str),
}

impl<'a> FlowRef<'a> {
    pub fn json(value: &'a Value, doc: &str, path: impl Into<String>) -> Self {
        FlowRef {
            src: Src::Json(value),
            doc: Rc::from(doc),
            path: path.into(),
        }
    }

    pub fn built(node: Built<'a>, doc: &str, path: impl Into<String>) -> Self {
        FlowRef {
            src: Src::Built(Rc::new(node)),
            doc: Rc::from(doc),
            path: path.into(),
        }
    }

    fn shape(&self) -> Shape<'_> {
        match &self.src {
            Src::Built(b) => Shape::Module(&b.module),
            Src::Json(Value::Object(o)) if o.is_empty() => Shape::Empty,
            Src::Json(Value::Null) => Shape::Empty,
            Src::Json(Value::Object(o)) => match o.get("module") {
                Some(Value::String(m)) if !m.is_empty() => Shape::Module(m),
                _ => Shape::Broken("the node has no module name"),
            },
            Src::Json(_) => Shape::Broken("the node is not an object"),
        }
    }

    pub fn module(&self) -> &str {
        match self.shape() {
            Shape::Module(m) => m,
            _ => "",
        }
    }

    /// The node's `data` (an empty object when missing or not an object, as Kazoo reads it).
    pub fn data(&self) -> &Map<String, Value> {
        match &self.src {
            Src::Built(b) => &b.data,
            Src::Json(v) => v.get("data").and_then(Value::as_object).unwrap_or(&EMPTY),
        }
    }

    /// The raw node object, when it came from JSON.
    pub fn object(&self) -> Option<&Map<String, Value>> {
        match &self.src {
            Src::Json(v) => v.as_object(),
            Src::Built(_) => None,
        }
    }

    fn children_json(&self) -> Option<&'a Map<String, Value>> {
        match &self.src {
            Src::Json(v) => v.get("children").and_then(Value::as_object),
            Src::Built(_) => None,
        }
    }

    /// Child keys in document order (Kazoo's `get_all_branch_keys`).
    pub fn child_keys(&self) -> Vec<&str> {
        match &self.src {
            Src::Json(_) => self
                .children_json()
                .map(|c| c.keys().map(String::as_str).collect())
                .unwrap_or_default(),
            Src::Built(b) => b.children.iter().map(|(k, _)| k.as_str()).collect(),
        }
    }

    /// `children[key]` as `continue` sees it: present with any value.
    pub fn child(&self, key: &str) -> Option<FlowRef<'a>> {
        match &self.src {
            Src::Json(_) => {
                let v = self.children_json()?.get(key)?;
                if v.is_null() {
                    return None;
                }
                Some(FlowRef {
                    src: Src::Json(v),
                    doc: self.doc.clone(),
                    path: format!("{}.children.{key}", self.path),
                })
            }
            Src::Built(b) => b
                .children
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, f)| f.clone()),
        }
    }

    /// `attempt(Key)` would launch it: present and non-empty (`kz_json:get_ne_value`).
    pub fn attemptable(&self, key: &str) -> bool {
        match &self.src {
            Src::Json(_) => match self.children_json().and_then(|c| c.get(key)) {
                None | Some(Value::Null) => false,
                Some(Value::Object(o)) => !o.is_empty(),
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(_) => true,
            },
            Src::Built(b) => b.children.iter().any(|(k, _)| k == key),
        }
    }

    /// `cf_exe:wildcard_is_empty`.
    pub fn wildcard_is_empty(&self) -> bool {
        !self.attemptable("_")
    }

    /// The document a flow found by id lives in, as a node to run.
    pub fn from_callflow(id: &str, doc: &'a Doc) -> Option<FlowRef<'a>> {
        doc.get("flow").map(|f| FlowRef::json(f, id, "flow"))
    }
}

/// How a run ends when a module ends it.
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    pub kind: OutcomeKind,
    pub endpoint: Option<Endpoint>,
    pub cause: Option<String>,
    pub detail: String,
}

impl Ending {
    pub fn new(kind: OutcomeKind, detail: impl Into<String>) -> Self {
        Ending {
            kind,
            endpoint: None,
            cause: None,
            detail: detail.into(),
        }
    }

    pub fn at(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }
}

/// What a module tells the executor (Kazoo's `cf_exe` API).
pub(crate) enum Action<'a> {
    /// `continue(Key)`: `children[Key]`, else `_`, else stop.
    Continue { key: String, reason: String },
    /// `attempt(Key)` succeeded: the module checked [`FlowRef::attemptable`].
    Child { key: String, reason: String },
    /// `branch(Flow)`: push this node's `_`, spend one unit of budget.
    Branch { flow: FlowRef<'a>, reason: String },
    /// `continue_with_flow(Flow)`: replace the current node; stack and budget untouched.
    Replace { flow: FlowRef<'a>, reason: String },
    /// `stop` / `stop(Cause)`.
    Stop {
        cause: Option<String>,
        reason: String,
    },
    /// `hard_stop`: the executor exits and the call is hung up.
    HardStop { reason: String },
    /// `transfer`, `control_usurped`, or a module that leaves the executor idle.
    End(Box<Ending>),
}

impl<'a> Action<'a> {
    /// `continue(Call)`, i.e. `continue("_")`.
    pub fn next(reason: impl Into<String>) -> Self {
        Action::Continue {
            key: "_".into(),
            reason: reason.into(),
        }
    }

    pub fn go(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Action::Continue {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub fn child(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Action::Child {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// `transfer` / `control_usurped` / idle: the run ends with this outcome.
    pub fn end(ending: Ending) -> Self {
        Action::End(Box::new(ending))
    }

    pub fn stop(reason: impl Into<String>) -> Self {
        Action::Stop {
            cause: None,
            reason: reason.into(),
        }
    }
}

/// The next event as a waiting module sees it.
pub(crate) enum Next<'a> {
    Got(&'a Event),
    /// The caller hung up (the channel is gone from now on).
    Hangup,
    /// No fitting event: the module applies its documented default.
    Nothing,
}

/// A digit collection's result.
pub(crate) enum Digits {
    Got(String),
    Hangup,
}

/// A bridge's result as Kazoo's `b_bridge` reports it.
pub(crate) enum Bridged {
    Answered,
    Failed {
        cause: Option<String>,
        code: Option<String>,
    },
    Timeout,
    Hangup,
}

/// Everything one simulation holds.
pub(crate) struct Run<'a> {
    pub call: &'a Call,
    pub docs: &'a dyn Documents,
    pub dialplan: &'a dyn Dialplan,
    pub steps: Vec<Step>,
    pub warnings: Vec<Warning>,
    cursor: usize,
    warned_mismatch: Option<usize>,
    /// The outcome to report if the flow ends now (a bridge answered, a message was left).
    pub pending: Option<Ending>,
    /// Kazoo's `destroyed`: the channel is gone; the next `continue` or `stop` ends the run.
    pub destroyed: bool,
    pub caller_gone: bool,
    pub capture_group: Option<String>,
    pub cid_number: Option<String>,
    pub cid_name: Option<String>,
    /// The calling device's owner (`owner_id`).
    pub owner_id: Option<String>,
    /// Custom channel variables set so far (for branch_variable).
    pub ccvs: Vec<(String, String)>,
    /// Named DTMF collections (collect_dtmf).
    pub collections: Vec<(String, String)>,
    pub bridged: bool,
    pub message_left: bool,
    budget: i64,
    stack: Vec<(FlowRef<'a>, usize)>,
    over_limit: bool,
    /// The current node's latest row (metaflow rows may follow it).
    row: usize,
    /// Routing mode: the run stops where the call must leave callflowd (see [`super::route`]).
    routing: bool,
    /// What the bridging module about to wait is ringing (set before [`Run::bridge`]).
    dial: Option<Dial>,
    /// Where a routing run stopped.
    exit: Option<Exit>,
}

impl<'a> Run<'a> {
    fn new(call: &'a Call, docs: &'a dyn Documents, dialplan: &'a dyn Dialplan) -> Self {
        let owner_id = call.caller.user_id.clone().or_else(|| {
            call.caller
                .device_id
                .as_deref()
                .and_then(|d| docs.get("devices", d))
                .and_then(|d| data::text(d, "owner_id"))
                .map(str::to_string)
        });
        Run {
            call,
            docs,
            dialplan,
            steps: Vec::with_capacity(16),
            warnings: Vec::new(),
            cursor: 0,
            warned_mismatch: None,
            pending: None,
            destroyed: false,
            caller_gone: false,
            capture_group: None,
            cid_number: call.caller.id_number.clone(),
            cid_name: call.caller.id_name.clone(),
            owner_id,
            ccvs: Vec::new(),
            collections: Vec::new(),
            bridged: false,
            message_left: false,
            budget: BRANCH_BUDGET,
            stack: Vec::new(),
            over_limit: false,
            row: 0,
            routing: false,
            dial: None,
            exit: None,
        }
    }

    /// Says what the next [`Run::bridge`] rings; a routing run stops there with it.
    pub fn dial(&mut self, dial: Dial) {
        self.dial = Some(dial);
    }

    /// A routing run stops at the current node's latest row, for `leave`.
    fn leave_here(&mut self, leave: Leave) {
        let step = self.row;
        let (module, callflow_id, path) = self
            .steps
            .get(step)
            .map(|s| (s.module.clone(), s.callflow_id.clone(), s.path.clone()))
            .unwrap_or_default();
        self.exit = Some(Exit {
            step,
            module,
            callflow_id,
            path,
            leave,
        });
    }

    /// Return-stack depth.
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Starts a step that is not a callflow node (a metaflow node); `false` past the limit.
    pub fn push_step(&mut self, module: &str, doc: &str, path: &str, depth: usize) -> bool {
        if self.steps.len() >= self.call.max_steps {
            self.over_limit = true;
            return false;
        }
        self.steps.push(blank_step(module, doc, path, depth));
        true
    }

    /// Index of the step being written.
    pub fn step_index(&self) -> Option<usize> {
        self.steps.len().checked_sub(1)
    }

    fn step(&mut self) -> &mut Step {
        if self.steps.is_empty() {
            // Only reachable through a module called outside the executor (tests); give it a
            // row to write into rather than panicking.
            self.steps.push(blank_step("", "", "", 0));
        }
        let last = self.steps.len() - 1;
        &mut self.steps[last]
    }

    /// Sets what the current step does.
    pub fn say(&mut self, summary: impl Into<String>) {
        self.step().summary = summary.into();
    }

    /// Adds a sentence to the current step's summary.
    pub fn add(&mut self, more: &str) {
        let step = self.step();
        if !step.summary.is_empty() {
            step.summary.push_str("; ");
        }
        step.summary.push_str(more);
    }

    /// Why the current step went (or did not go) where it did, for steps that do not branch.
    pub fn reason(&mut self, reason: impl Into<String>) {
        self.step().reason = Some(reason.into());
    }

    pub fn warn(&mut self, code: &'static str, message: impl Into<String>) {
        let step = self.step_index();
        self.warnings.push(Warning {
            code,
            message: message.into(),
            step,
        });
    }

    /// The script had nothing for this wait: say which default was taken.
    pub fn assume(&mut self, what: impl Into<String>) {
        self.warn(
            "default_assumed",
            format!("nothing in the script for this wait: {}", what.into()),
        );
    }

    pub fn quirk(&mut self, explanation: impl Into<String>) {
        self.warn("kazoo_quirk", explanation);
    }

    pub fn missing(&mut self, doc_type: &str, id: &str, then: &str) {
        self.warn(
            "document_missing",
            format!("{doc_type}/{id} is not in the documents given; {then}"),
        );
    }

    /// How many events have been taken so far (a loop that takes none is not progressing).
    pub fn taken(&self) -> usize {
        self.cursor
    }

    /// Whether the next event is caller input a digit collection can take (digits, silence
    /// or a hangup). Loops that only a hangup leaves use it to stop when the script has
    /// nothing more for them.
    pub fn input_next(&self) -> bool {
        matches!(
            self.peek(),
            Some(Event::Dtmf { leg: None, .. } | Event::NoInput | Event::Hangup)
        )
    }

    /// Peeks at the next event without taking it.
    pub fn peek(&self) -> Option<&'a Event> {
        if self.over_limit {
            return None;
        }
        self.call.events.get(self.cursor)
    }

    /// Takes the next event if it is a hangup or `accept` takes it. A hangup marks the
    /// channel gone. Another kind of event is left for later nodes, with a warning.
    pub fn next_event(&mut self, waiting_for: &str, accept: impl Fn(&Event) -> bool) -> Next<'a> {
        let Some(event) = self.peek() else {
            return Next::Nothing;
        };
        if matches!(event, Event::Hangup) {
            self.take();
            self.destroyed = true;
            self.caller_gone = true;
            return Next::Hangup;
        }
        if accept(event) {
            self.take();
            return Next::Got(event);
        }
        if self.warned_mismatch != Some(self.cursor) {
            self.warned_mismatch = Some(self.cursor);
            let msg = format!(
                "event {} ({}) does not fit here: the {} node waits for {waiting_for}; the event is kept for a later node",
                self.cursor,
                event.to_json(),
                self.step_module()
            );
            self.warn("event_mismatch", msg);
        }
        Next::Nothing
    }

    fn step_module(&self) -> String {
        self.steps
            .last()
            .map(|s| s.module.clone())
            .unwrap_or_default()
    }

    /// Consumes the next event and writes it on the current step (a step that already holds
    /// an event is continued on a new row for the same node).
    fn take(&mut self) {
        let idx = self.cursor;
        self.cursor += 1;
        let json = self.call.events[idx].to_json();
        if let Some(base) = self.steps.get(self.row) {
            if base.event.is_some() || self.row + 1 != self.steps.len() {
                let mut more = blank_step(&base.module, &base.callflow_id, &base.path, base.depth);
                more.summary = "(continued)".into();
                self.steps.push(more);
                self.row = self.steps.len() - 1;
                if self.steps.len() >= self.call.max_steps {
                    self.over_limit = true;
                }
            }
        }
        let step = self.step();
        step.event = Some(json);
        step.event_index = Some(idx);
    }

    /// Collects digits as `kapps_call_command:collect_digits` does: stops at a terminator
    /// (which is not kept), at `max` digits, or at the pause that ends the event.
    pub fn digits(&mut self, what: &str, max: usize, terminators: &[char]) -> Digits {
        match self.next_event(&format!("digits ({what})"), |e| {
            matches!(e, Event::Dtmf { leg: None, .. } | Event::NoInput)
        }) {
            Next::Hangup => Digits::Hangup,
            Next::Nothing => {
                self.assume(format!(
                    "{what}: the caller presses nothing and the collection times out"
                ));
                Digits::Got(String::new())
            }
            Next::Got(Event::Dtmf { digits, .. }) => {
                let mut got = String::new();
                let mut used = 0;
                for c in digits.chars() {
                    used += 1;
                    if terminators.contains(&c) {
                        break;
                    }
                    got.push(c);
                    if got.chars().count() >= max.max(1) {
                        break;
                    }
                }
                if used < digits.chars().count() {
                    let rest: String = digits.chars().skip(used).collect();
                    self.warn(
                        "digits_ignored",
                        format!(
                            "{what} stopped after \"{}\"; \"{rest}\" was not used",
                            &digits[..digits.len() - rest.len()]
                        ),
                    );
                }
                Digits::Got(got)
            }
            Next::Got(_) => Digits::Got(String::new()),
        }
    }

    /// Waits for a bridge to end (answered, failed, timed out, or the caller hanging up).
    pub fn bridge(&mut self, what: &str) -> Bridged {
        match self.next_event(&format!("a bridge result ({what})"), |e| {
            matches!(e, Event::Bridge(_))
        }) {
            Next::Hangup => Bridged::Hangup,
            Next::Nothing if self.routing => {
                // The call leaves callflowd here: the switch rings what the module dials.
                let dial = self.dial.take().unwrap_or_default();
                self.leave_here(Leave::Bridge(dial));
                Bridged::Answered
            }
            Next::Nothing => {
                self.assume(format!("{what}: the bridge is answered"));
                Bridged::Answered
            }
            Next::Got(Event::Bridge(BridgeEvent::Answered)) => Bridged::Answered,
            Next::Got(Event::Bridge(BridgeEvent::Timeout)) => Bridged::Timeout,
            Next::Got(Event::Bridge(BridgeEvent::Failed { cause, code })) => Bridged::Failed {
                cause: cause.clone(),
                code: code.clone(),
            },
            Next::Got(_) => Bridged::Answered,
        }
    }

    /// Looks a number up in the dial plan and returns the callflow's flow, with a warning
    /// when the callflow document is not given.
    pub fn lookup(&mut self, number: &str) -> Option<(super::Route, Option<FlowRef<'a>>)> {
        let route = self.dialplan.lookup(number)?;
        let docs = self.docs;
        let flow = match docs.get("callflows", &route.callflow_id) {
            Some(doc) => Some(
                FlowRef::from_callflow(&route.callflow_id, doc)
                    .unwrap_or_else(|| FlowRef::json(&Value::Null, &route.callflow_id, "flow")),
            ),
            None => {
                let id = route.callflow_id.clone();
                self.missing(
                    "callflows",
                    &id,
                    "its flow cannot be followed (treated as empty)",
                );
                None
            }
        };
        Some((route, flow))
    }

    /// The caller's device document, if any.
    pub fn caller_device(&self) -> Option<&'a Doc> {
        let docs = self.docs;
        self.call
            .caller
            .device_id
            .as_deref()
            .and_then(|d| docs.get("devices", d))
    }

    /// The account document, if given.
    pub fn account(&self) -> Option<&'a Doc> {
        self.docs.account()
    }
}

fn blank_step(module: &str, doc: &str, path: &str, depth: usize) -> Step {
    Step {
        module: module.to_string(),
        callflow_id: doc.to_string(),
        path: path.to_string(),
        summary: String::new(),
        event: None,
        event_index: None,
        branch: None,
        reason: None,
        depth,
    }
}

/// How the executor finished.
enum Finish {
    /// `exit normal`: hangup unless something else already ended the call.
    Exit(String),
    /// `stop(Cause)` with nothing to return to: Kazoo hangs up with that cause.
    Cause(String, String),
    Ending(Box<Ending>),
    Loop(String),
    StepLimit,
    /// A routing run reached a node that needs the switch or a media server.
    Leave(Box<Exit>),
}

pub(crate) fn run(
    start: Start<'_>,
    call: &Call,
    docs: &dyn Documents,
    dialplan: &dyn Dialplan,
    routing: bool,
) -> (Trace, Option<Exit>) {
    let mut rt = Run::new(call, docs, dialplan);
    rt.routing = routing;
    rt.capture_group = start.capture_group.map(str::to_string);
    if start.callflow.contains_key("metaflow") {
        rt.warnings.push(Warning {
            code: "metaflow_key_ignored",
            message: "this callflow has a `metaflow` key: Kazoo's runtime never reads it (metaflows come from the devices', users' and account's `metaflows`), so the simulation ignores it too".into(),
            step: None,
        });
    }
    let root = match FlowRef::from_callflow(start.callflow_id, start.callflow) {
        Some(f) => f,
        None => FlowRef::json(&Value::Null, start.callflow_id, "flow"),
    };
    let root = with_preflow(&rt, root);
    let finish = execute(&mut rt, root);
    let exit = match &finish {
        Finish::Leave(exit) => Some((**exit).clone()),
        _ => None,
    };
    let outcome = conclude(&mut rt, finish);
    for i in rt.cursor..call.events.len() {
        rt.warnings.push(Warning {
            code: "event_unused",
            message: format!(
                "event {i} ({}) was not used: the call ended before anything waited for it",
                call.events[i].to_json()
            ),
            step: None,
        });
    }
    let trace = Trace {
        steps: rt.steps,
        outcome,
        warnings: rt.warnings,
    };
    (trace, exit)
}

/// The account's `preflow.always` callflow runs first, as a `callflow` node whose `_` is the
/// dialled callflow (`kzd_callflows:prepend_preflow`).
fn with_preflow<'a>(rt: &Run<'a>, root: FlowRef<'a>) -> FlowRef<'a> {
    let Some(pre) = rt
        .account()
        .and_then(|a| a.get("preflow"))
        .and_then(Value::as_object)
        .and_then(|p| data::text(p, "always"))
    else {
        return root;
    };
    let mut data = Map::new();
    data.insert("id".into(), Value::String(pre.to_string()));
    FlowRef::built(
        Built {
            module: "callflow".into(),
            data,
            children: vec![("_".into(), root)],
        },
        "account",
        "preflow.always",
    )
}

fn execute<'a>(rt: &mut Run<'a>, root: FlowRef<'a>) -> Finish {
    let mut current = root;
    loop {
        // Launch `current` (`launch_cf_module`).
        let module = match current.shape() {
            Shape::Empty => {
                let note = "the node to run is empty, so Kazoo stops";
                match stop(rt, None, note) {
                    Ok(next) => {
                        current = next;
                        continue;
                    }
                    Err(f) => return f,
                }
            }
            Shape::Broken(_) if rt.steps.len() >= rt.call.max_steps || rt.over_limit => {
                return Finish::StepLimit;
            }
            Shape::Broken(why) => {
                let why = why.to_string();
                rt.steps
                    .push(blank_step("", &current.doc, &current.path, rt.stack.len()));
                rt.say(format!("cannot run: {why}"));
                rt.quirk(format!(
                    "{why}: Kazoo's executor crashes on such a node and the call is torn down"
                ));
                return Finish::Exit(format!("the executor crashed at {}: {why}", current.path));
            }
            Shape::Module(m) => m.to_string(),
        };
        if rt.steps.len() >= rt.call.max_steps || rt.over_limit {
            return Finish::StepLimit;
        }
        rt.steps.push(blank_step(
            &module,
            &current.doc,
            &current.path,
            rt.stack.len(),
        ));
        rt.row = rt.steps.len() - 1;
        if rt.routing && needs_media(&module) {
            rt.say(format!(
                "{module} needs media: the call goes to the media server here"
            ));
            rt.leave_here(Leave::Media);
        }
        if let Some(exit) = rt.exit.take() {
            return Finish::Leave(Box::new(exit));
        }
        rt.dial = None;
        let action = launch(rt, &current, &module);
        let step_at = rt.row;
        if let Some(exit) = rt.exit.take() {
            return Finish::Leave(Box::new(exit));
        }
        match action {
            Action::Continue { key, reason } => {
                match resolve(rt, &current, &key, reason, step_at) {
                    Ok(next) => current = next,
                    Err(f) => return f,
                }
            }
            Action::Child { key, reason } => {
                set_branch(rt, step_at, &key, reason);
                match current.child(&key) {
                    Some(next) => current = next,
                    None => {
                        // A module promised a child it had checked; stay safe anyway.
                        match stop(rt, None, "the child was not found") {
                            Ok(next) => current = next,
                            Err(f) => return f,
                        }
                    }
                }
            }
            Action::Branch { flow, reason } => {
                if rt.budget <= 0 {
                    rt.steps[step_at].reason = Some(reason);
                    let msg = format!(
                        "Kazoo's branch budget ({BRANCH_BUDGET} branches per call, callflow.max_branch_count) is spent: the executor ends the call here"
                    );
                    rt.warn("branch_budget", msg.clone());
                    return Finish::Loop(msg);
                }
                rt.budget -= 1;
                let mut reason = reason;
                if let Some(parent) = current.child("_").filter(|_| current.attemptable("_")) {
                    reason.push_str("; this node's `_` is saved to run when the branch stops");
                    rt.stack.push((parent, step_at));
                }
                rt.steps[step_at].reason = Some(reason);
                current = flow;
            }
            Action::Replace { flow, reason } => {
                rt.steps[step_at].reason = Some(reason);
                current = flow;
            }
            Action::Stop { cause, reason } => {
                rt.steps[step_at].reason = Some(reason.clone());
                match stop(rt, cause, "") {
                    Ok(next) => current = next,
                    Err(f) => return f,
                }
            }
            Action::HardStop { reason } => {
                rt.steps[step_at].reason = Some(reason.clone());
                return Finish::Exit(reason);
            }
            Action::End(ending) => return Finish::Ending(ending),
        }
    }
}

fn set_branch(rt: &mut Run<'_>, step_at: usize, key: &str, reason: String) {
    let step = &mut rt.steps[step_at];
    step.branch = Some(key.to_string());
    step.reason = Some(reason);
}

/// `continue(Key)` (`handle_cast({continue, Key})`).
fn resolve<'a>(
    rt: &mut Run<'a>,
    current: &FlowRef<'a>,
    key: &str,
    reason: String,
    step_at: usize,
) -> Result<FlowRef<'a>, Finish> {
    if rt.destroyed {
        rt.steps[step_at].reason = Some(format!(
            "{reason}; the channel is gone, so Kazoo's executor stops instead of continuing"
        ));
        return Err(Finish::Exit("the channel is gone".into()));
    }
    if let Some(next) = current.child(key) {
        set_branch(rt, step_at, key, reason);
        return Ok(next);
    }
    if key != "_" {
        if let Some(next) = current.child("_") {
            let why = join(&reason, &format!("no child \"{key}\", fell back to \"_\""));
            set_branch(rt, step_at, "_", why);
            return Ok(next);
        }
        let why = join(
            &reason,
            &format!("no child \"{key}\" and no \"_\": Kazoo stops"),
        );
        rt.steps[step_at].reason = Some(why);
    } else {
        let why = join(&reason, "no \"_\" child: Kazoo stops");
        rt.steps[step_at].reason = Some(why);
    }
    stop(rt, None, "")
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

/// `stop` / `stop(Cause)`: resume the last saved `_`, or end the call.
fn stop<'a>(rt: &mut Run<'a>, cause: Option<String>, note: &str) -> Result<FlowRef<'a>, Finish> {
    if let Some(i) = rt.step_index() {
        if !note.is_empty() {
            let r = rt.steps[i].reason.take().unwrap_or_default();
            rt.steps[i].reason = Some(join(&r, note));
        }
    }
    if rt.destroyed {
        return Err(Finish::Exit("the channel is gone".into()));
    }
    match (rt.stack.pop(), cause) {
        (Some((parent, at)), cause) => {
            if let Some(i) = rt.step_index() {
                let r = rt.steps[i].reason.take().unwrap_or_default();
                let ignored = cause
                    .map(|c| format!(" (cause {c} is dropped)"))
                    .unwrap_or_default();
                rt.steps[i].reason = Some(join(
                    &r,
                    &format!("returns to the `_` saved by the branch at step {at}{ignored}"),
                ));
            }
            Ok(parent)
        }
        (None, Some(cause)) => Err(Finish::Cause(
            cause.clone(),
            format!("Kazoo hangs the call up with cause {cause}"),
        )),
        (None, None) => Err(Finish::Exit("the flow has nowhere left to go".into())),
    }
}

/// Runs one module (or skips it the way `find_cf_module` does).
fn launch<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>, module: &str) -> Action<'a> {
    if data::is_true(node.data(), "skip_module", false) {
        rt.say(format!(
            "skipped: data.skip_module is true, so Kazoo does not run {module}"
        ));
        return Action::next("a skipped node continues to `_`");
    }
    if node
        .object()
        .is_some_and(|o| data::is_true(o, "remote_execution", false))
    {
        rt.say(format!(
            "hands {module} to a remote application (remote_execution)"
        ));
        rt.assume("the remote action's result is not known: assumed `continue`");
        return Action::next("remote action returned continue (assumed)");
    }
    match modules::handler(module) {
        Some(handle) => handle(rt, node),
        None => {
            rt.say(format!(
                "unknown module \"{module}\": Kazoo has no cf_{module}, so it skips the node"
            ));
            Action::next("an unknown module continues to `_`")
        }
    }
}

fn conclude(rt: &mut Run<'_>, finish: Finish) -> Outcome {
    let step = rt.step_index();
    let (kind, endpoint, cause, detail) = match finish {
        Finish::Ending(e) => {
            let e = *e;
            (e.kind, e.endpoint, e.cause, e.detail)
        }
        Finish::Loop(msg) => (OutcomeKind::Loop, None, None, msg),
        Finish::Leave(exit) => (
            OutcomeKind::HandedOff,
            None,
            None,
            format!(
                "the call leaves callflowd at {} ({})",
                exit.path, exit.module
            ),
        ),
        Finish::StepLimit => (
            OutcomeKind::StepLimit,
            None,
            None,
            format!("stopped after {} steps (max_steps)", rt.call.max_steps),
        ),
        Finish::Cause(cause, detail) => match rt.pending.take() {
            Some(p) => (p.kind, p.endpoint, p.cause, p.detail),
            None => (OutcomeKind::Hangup, None, Some(cause), detail),
        },
        Finish::Exit(why) => match rt.pending.take() {
            Some(p) => (p.kind, p.endpoint, p.cause, p.detail),
            None if rt.caller_gone => (
                OutcomeKind::CallerHangup,
                None,
                None,
                "the caller hung up".to_string(),
            ),
            None => (
                OutcomeKind::Hangup,
                None,
                None,
                format!("{why}: Kazoo hangs the call up"),
            ),
        },
    };
    Outcome {
        kind,
        endpoint,
        cause,
        step,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engine::testkit::{codes, walk, Sim};
    use crate::engine::OutcomeKind;

    #[test]
    fn a_callflow_that_jumps_into_itself_ends_on_the_branch_budget() {
        let flow = json!({"module": "callflow", "data": {"id": "loop"}, "children": {"_": {"module": "noop", "data": {}}}});
        let s = Sim::new().doc("callflows", "loop", json!({"flow": flow}));
        let t = s.run(flow);
        assert_eq!(t.outcome.kind, OutcomeKind::Loop);
        assert_eq!(t.steps.len(), 51, "50 branches, then the 51st is refused");
        assert_eq!(t.steps[50].depth, 50);
        assert!(codes(&t).contains(&"branch_budget"));
    }

    #[test]
    fn the_step_limit_stops_a_long_run() {
        let flow = json!({"module": "callflow", "data": {"id": "loop"}});
        let mut s = Sim::new().doc("callflows", "loop", json!({"flow": flow}));
        s.call.max_steps = 10;
        let t = s.run(flow);
        assert_eq!(t.outcome.kind, OutcomeKind::StepLimit);
        assert_eq!(t.steps.len(), 10);
    }

    #[test]
    fn skipped_and_unknown_modules_continue_to_the_wildcard() {
        let flow = json!({"module": "say", "data": {}, "children": {"_":
            {"module": "play", "data": {"id": "x", "skip_module": true}, "children": {"_": {"module": "hangup", "data": {}}}}}});
        let t = Sim::new().run(flow);
        assert_eq!(walk(&t), ["say->_", "play->_", "hangup"]);
        assert!(t.steps[0].summary.contains("unknown module"));
    }

    #[test]
    fn a_missing_named_child_falls_back_to_the_wildcard_and_an_empty_child_stops() {
        let flow = json!({"module": "fax_detect", "data": {}, "children": {"_": {"module": "noop", "data": {}, "children": {"_": {}}}}});
        let t = Sim::new().run(flow);
        assert_eq!(walk(&t), ["fax_detect->_", "noop->_"]);
        assert!(t.steps[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("no child \"ON_VOICE\", fell back to \"_\""));
        assert!(t.steps[1].reason.as_deref().unwrap().contains("empty"));
        assert_eq!(t.outcome.kind, OutcomeKind::Hangup);
    }

    #[test]
    fn a_node_without_a_module_crashes_the_executor() {
        let t = Sim::new().run(json!({"data": {}}));
        assert_eq!(t.outcome.kind, OutcomeKind::Hangup);
        assert!(codes(&t).contains(&"kazoo_quirk"));
    }

    #[test]
    fn the_account_preflow_runs_first_then_the_dialled_flow() {
        let mut s = Sim::new().doc(
            "callflows",
            "pre",
            json!({"flow": {"module": "record_call", "data": {}}}),
        );
        s.docs.set_account(crate::engine::testkit::obj(
            json!({"preflow": {"always": "pre"}}),
        ));
        let t = s.run(json!({"module": "hangup", "data": {}}));
        assert_eq!(walk(&t), ["callflow", "record_call", "hangup"]);
        assert_eq!(t.steps[0].callflow_id, "account");
        assert_eq!(t.steps[2].callflow_id, "cf0");
    }

    #[test]
    fn leftover_events_are_reported_and_mismatched_ones_are_kept() {
        let flow = json!({"module": "menu", "data": {}, "children": {"1": {"module": "user", "data": {"id": "u"}}}});
        let t = Sim::new()
            .events(json!([{"bridge": "answered"}, {"dtmf": "1"}]))
            .run(flow);
        let c = codes(&t);
        assert!(c.contains(&"event_mismatch"), "{c:?}");
        assert!(c.contains(&"event_unused"), "{c:?}");
    }

    #[test]
    fn a_caller_hangup_ends_the_call() {
        let flow = json!({"module": "menu", "data": {}, "children": {"_": {"module": "voicemail", "data": {}}}});
        let t = Sim::new().events(json!([{"hangup": true}])).run(flow);
        assert_eq!(walk(&t), ["menu"]);
        assert_eq!(t.outcome.kind, OutcomeKind::CallerHangup);
    }
}
