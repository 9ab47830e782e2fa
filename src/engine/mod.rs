//! The callflow engine: what Kazoo would do, step by step, with a dialled number, a caller, a
//! moment in time and a script of outside events.
//!
//! Owns the executor (continue / attempt / branch / stop, return stack, branch budget; see
//! [`exec`]), one file per module family under [`modules`], metaflows, the event script and
//! the trace. It is pure: no store, no HTTP, no clock, no async; documents come in through
//! [`Documents`], routing through [`Dialplan`], time through [`Call::now`]. What Kazoo does
//! and where we differ is written down in docs/simulation.md.

mod data;
pub mod events;
mod exec;
pub mod metaflows;
pub mod modules;
pub mod temporal;
#[cfg(test)]
pub(crate) mod testkit;
pub mod trace;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

pub use events::{parse_events, Event, EventError};
pub use trace::{Endpoint, Outcome, OutcomeKind, Step, Trace, Warning};

/// A JSON object, as documents are stored.
pub type Doc = Map<String, Value>;

/// Documents the engine may read. Type names are the URL names: "callflows", "users",
/// "devices", "vmboxes", "groups", "menus", "temporal_rules", "temporal_rules_sets", "lists",
/// "media", "faxboxes", "resources". Object-safe.
pub trait Documents {
    fn get(&self, doc_type: &str, id: &str) -> Option<&Doc>;
    /// Documents of `doc_type` whose `owner_id` is `owner_id` (a user's devices), in a stable
    /// order.
    fn owned_by(&self, doc_type: &str, owner_id: &str) -> Vec<&Doc>;
    /// Every document of a type (e.g. the account's "resources"), stable order.
    fn all(&self, doc_type: &str) -> Vec<&Doc>;
    /// The account document (timezone, metaflows, caller_id, ...), if known.
    fn account(&self) -> Option<&Doc>;
}

/// In-memory documents: type -> id -> document, plus the account document. `insert`
/// overwrites, so inline drafts inserted after stored documents win.
#[derive(Debug, Clone, Default)]
pub struct DocumentSet {
    docs: HashMap<String, BTreeMap<String, Doc>>,
    account: Option<Doc>,
}

impl DocumentSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one document. The id is also written into `id` when the document has
    /// none, so listings of `owned_by`/`all` can name it.
    pub fn insert(&mut self, doc_type: &str, id: &str, mut doc: Doc) {
        if !doc.contains_key("id") && !doc.contains_key("_id") {
            doc.insert("id".into(), Value::String(id.to_string()));
        }
        self.docs
            .entry(doc_type.to_string())
            .or_default()
            .insert(id.to_string(), doc);
    }

    /// Adds every document of `other`, replacing those with the same type and id (and its
    /// account document, if it has one).
    pub fn extend_from(&mut self, other: &DocumentSet) {
        for (doc_type, docs) in &other.docs {
            let mine = self.docs.entry(doc_type.clone()).or_default();
            for (id, doc) in docs {
                mine.insert(id.clone(), doc.clone());
            }
        }
        if let Some(account) = &other.account {
            self.account = Some(account.clone());
        }
    }

    pub fn set_account(&mut self, doc: Doc) {
        self.account = Some(doc);
    }

    /// How many documents the set holds (account excluded).
    pub fn len(&self) -> usize {
        self.docs.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Documents for DocumentSet {
    fn get(&self, doc_type: &str, id: &str) -> Option<&Doc> {
        self.docs.get(doc_type)?.get(id)
    }

    fn owned_by(&self, doc_type: &str, owner_id: &str) -> Vec<&Doc> {
        self.docs
            .get(doc_type)
            .map(|m| {
                m.values()
                    .filter(|d| d.get("owner_id").and_then(Value::as_str) == Some(owner_id))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn all(&self, doc_type: &str) -> Vec<&Doc> {
        self.docs
            .get(doc_type)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    fn account(&self) -> Option<&Doc> {
        self.account.as_ref()
    }
}

/// What a run asked for and did not find (or enumerated): the caller can fetch these from its
/// store, add them to the document set and run again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "need", rename_all = "snake_case")]
pub enum Need {
    Doc { doc_type: String, id: String },
    OwnedBy { doc_type: String, owner_id: String },
    All { doc_type: String },
    Account,
}

/// Wraps a [`Documents`] and records each miss and each enumeration once.
pub struct Recorder<'a> {
    inner: &'a dyn Documents,
    needs: RefCell<Vec<Need>>,
}

impl<'a> Recorder<'a> {
    pub fn new(inner: &'a dyn Documents) -> Self {
        Self {
            inner,
            needs: RefCell::new(Vec::new()),
        }
    }

    /// What was missed or enumerated, in the order first asked.
    pub fn needs(&self) -> Vec<Need> {
        self.needs.borrow().clone()
    }

    fn note(&self, need: Need) {
        let mut needs = self.needs.borrow_mut();
        if !needs.contains(&need) {
            needs.push(need);
        }
    }
}

impl Documents for Recorder<'_> {
    fn get(&self, doc_type: &str, id: &str) -> Option<&Doc> {
        let found = self.inner.get(doc_type, id);
        if found.is_none() {
            self.note(Need::Doc {
                doc_type: doc_type.to_string(),
                id: id.to_string(),
            });
        }
        found
    }

    fn owned_by(&self, doc_type: &str, owner_id: &str) -> Vec<&Doc> {
        self.note(Need::OwnedBy {
            doc_type: doc_type.to_string(),
            owner_id: owner_id.to_string(),
        });
        self.inner.owned_by(doc_type, owner_id)
    }

    fn all(&self, doc_type: &str) -> Vec<&Doc> {
        self.note(Need::All {
            doc_type: doc_type.to_string(),
        });
        self.inner.all(doc_type)
    }

    fn account(&self) -> Option<&Doc> {
        let found = self.inner.account();
        if found.is_none() {
            self.note(Need::Account);
        }
        found
    }
}

/// Which callflow a number reaches, for modules that look numbers up mid-call (menu hunt,
/// privacy, intercom, branch_bnumber hunt, disa, dynamic_cid lists, metaflow callflow, ...).
/// The implementation applies Kazoo's lookup (numbers, then the longest pattern capture,
/// then `no_match` when the caller may use it).
pub trait Dialplan {
    fn lookup(&self, number: &str) -> Option<Route>;
}

/// A lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    pub callflow_id: String,
    /// The longest captured group of the winning pattern, if a pattern won.
    pub capture_group: Option<String>,
    /// The callflow is the account's `no_match` callflow.
    pub no_match: bool,
}

/// A dial plan that finds nothing.
pub struct NoDialplan;

impl Dialplan for NoDialplan {
    fn lookup(&self, _number: &str) -> Option<Route> {
        None
    }
}

impl<F: Fn(&str) -> Option<Route>> Dialplan for F {
    fn lookup(&self, number: &str) -> Option<Route> {
        self(number)
    }
}

/// Who is calling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub id_number: Option<String>,
    pub id_name: Option<String>,
    /// The calling device (on-net when this or `user_id` is set).
    pub device_id: Option<String>,
    pub user_id: Option<String>,
}

impl Caller {
    /// Kazoo's "authorized" caller: one of the account's own endpoints.
    pub fn on_net(&self) -> bool {
        self.device_id.is_some() || self.user_id.is_some()
    }
}

/// The simulated call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The number as dialled.
    pub number: String,
    pub caller: Caller,
    pub now: chrono::DateTime<chrono::Utc>,
    pub events: Vec<Event>,
    /// Steps after which the simulation stops with `step_limit`.
    pub max_steps: usize,
}

/// The default step limit.
pub const DEFAULT_MAX_STEPS: usize = 1000;

impl Call {
    pub fn new(number: impl Into<String>, now: chrono::DateTime<chrono::Utc>) -> Self {
        Call {
            number: number.into(),
            caller: Caller::default(),
            now,
            events: Vec::new(),
            max_steps: DEFAULT_MAX_STEPS,
        }
    }
}

/// Where the call enters: the callflow the lookup chose.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    pub callflow_id: &'a str,
    pub callflow: &'a Doc,
    /// The pattern's capture, when a pattern matched.
    pub capture_group: Option<&'a str>,
}

/// Runs the call through the callflow with Kazoo's semantics and reports every step.
pub fn simulate(
    start: Start<'_>,
    call: &Call,
    docs: &dyn Documents,
    dialplan: &dyn Dialplan,
) -> Trace {
    exec::run(start, call, docs, dialplan, false).0
}

/// Runs the call as [`simulate`] does until it must leave callflowd: a bridge with no event
/// left in the script (the switch rings what [`Exit`] names; the script holds the failures of
/// earlier bridges, in order, so a retry replays the call to the next node), or a node that
/// needs media. `None` when the call ends inside callflowd (the trace's outcome says how).
pub fn route(
    start: Start<'_>,
    call: &Call,
    docs: &dyn Documents,
    dialplan: &dyn Dialplan,
) -> (Trace, Option<Exit>) {
    exec::run(start, call, docs, dialplan, true)
}

/// Where a routing run stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exit {
    /// Index of the step in the trace.
    pub step: usize,
    pub module: String,
    pub callflow_id: String,
    /// JSON path of the node in that callflow.
    pub path: String,
    pub leave: Leave,
}

/// Why the call leaves callflowd.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leave {
    /// Ring these endpoints (or carriers).
    Bridge(Dial),
    /// The node plays, records or collects: a media server takes the call.
    Media,
}

/// What a bridging node rings, as Kazoo's endpoint builder made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dial {
    /// `simultaneous` (every target at once) or `single` (one after the other).
    pub strategy: String,
    /// The node's ring time in seconds (0: each target's own).
    pub timeout: i64,
    pub targets: Vec<Target>,
}

/// One thing a bridge rings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// A device of the account (its SIP settings are in `devices/{id}`).
    Device {
        id: String,
        /// The member's own ring time (ring groups), seconds.
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout: Option<i64>,
        /// Seconds before this member starts ringing (ring groups).
        #[serde(skip_serializing_if = "Option::is_none")]
        delay: Option<i64>,
    },
    /// An outbound call through the account's carriers (`resources` documents) or the
    /// system's.
    Carrier { number: String, local: bool },
}

/// Modules that need a media server (they answer, play, record or collect digits) rather
/// than the switch's routing or the engine's logic. A routing run stops before them. A module
/// Kazoo does not have is not one of them: the executor skips it, as Kazoo's does.
pub fn needs_media(module: &str) -> bool {
    modules::handler(module).is_some()
        && !matches!(
            module,
            // Bridges: the switch rings their endpoints.
            "user" | "device" | "ring_group" | "group" | "resources" | "offnet" | "route_to_cid"
            // Pure logic: the engine decides on the way.
            | "callflow"
            | "temporal_route"
            | "check_cid"
            | "cidlistmatch"
            | "branch_bnumber"
            | "branch_variable"
            | "set_cid"
            | "prepend_cid"
            | "set_variable"
            | "set_variables"
            | "set"
            | "set_alert_info"
            | "language"
            | "privacy"
            | "manual_presence"
            | "after_bridge"
            | "edr"
            | "webhook"
            | "missed_call_alert"
            | "notification"
            | "noop"
            | "skel"
            | "response"
            | "hangup"
        )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testkit::{obj, walk, Plan, Sim};
    use super::*;

    #[test]
    fn a_draft_with_inline_documents_overrides_the_stored_ones() {
        // Stored: the menu has no "1" key worth taking; the draft's inline menu and user win.
        let mut docs = DocumentSet::new();
        docs.insert("menus", "m1", obj(json!({"name": "Stored", "retries": 1})));
        docs.insert("users", "u1", obj(json!({"first_name": "Old"})));
        docs.insert("menus", "m1", obj(json!({"name": "Draft", "retries": 2})));
        docs.insert("users", "u1", obj(json!({"first_name": "New"})));
        docs.insert(
            "devices",
            "d1",
            obj(json!({"owner_id": "u1", "name": "Desk"})),
        );
        let cf = obj(
            json!({"flow": {"module": "menu", "data": {"id": "m1"}, "children": {"1": {"module": "user", "data": {"id": "u1"}}}}}),
        );
        let mut call = Call::new("100", chrono::DateTime::default());
        call.events = parse_events(&[
            json!({"dtmf": "9"}),
            json!({"dtmf": "1"}),
            json!({"bridge": "answered"}),
        ])
        .unwrap();
        let t = simulate(
            Start {
                callflow_id: "draft",
                callflow: &cf,
                capture_group: None,
            },
            &call,
            &docs,
            &Plan::default(),
        );
        assert!(t.steps[0].summary.contains("'Draft'"));
        assert_eq!(
            walk(&t),
            ["menu", "menu->1", "user"],
            "two retries in the draft, one in the stored menu"
        );
        assert_eq!(
            t.outcome.endpoint.as_ref().and_then(|e| e.name.as_deref()),
            Some("New")
        );
    }

    #[test]
    fn the_recorder_lists_misses_and_enumerations_once() {
        let docs = DocumentSet::new();
        let rec = Recorder::new(&docs);
        let cf = obj(
            json!({"flow": {"module": "user", "data": {"id": "u1"}, "children": {"_": {"module": "user", "data": {"id": "u1"}}}}}),
        );
        let call = Call::new("100", chrono::DateTime::default());
        let _ = simulate(
            Start {
                callflow_id: "c",
                callflow: &cf,
                capture_group: None,
            },
            &call,
            &rec,
            &NoDialplan,
        );
        assert_eq!(
            rec.needs(),
            vec![
                Need::Account,
                Need::Doc {
                    doc_type: "users".into(),
                    id: "u1".into()
                },
                Need::OwnedBy {
                    doc_type: "devices".into(),
                    owner_id: "u1".into()
                },
            ]
        );
    }

    #[test]
    fn a_routing_run_stops_at_the_bridge_with_what_it_rings_and_replays_failures() {
        let s = Sim::new()
            .doc("users", "u1", json!({"first_name": "Ann"}))
            .doc("devices", "d1", json!({"owner_id": "u1", "name": "Desk"}))
            .doc("devices", "d2", json!({"owner_id": "u1", "name": "Phone"}))
            .doc("vmboxes", "vm1", json!({"name": "Ann's box"}));
        let flow = json!({"module": "set_cid", "data": {"caller_id_name": "Sales"}, "children": {"_":
            {"module": "user", "data": {"id": "u1", "timeout": 12}, "children": {
                "USER_BUSY": {"module": "voicemail", "data": {"id": "vm1"}, "children": {}},
                "_": {"module": "hangup", "data": {}, "children": {}}}}}});
        // First ask: logic on the way, then the user's two devices at once.
        let (t, exit) = s.route(flow.clone());
        let exit = exit.expect("the call leaves at the user node");
        assert_eq!(exit.path, "flow.children._");
        assert_eq!(exit.module, "user");
        assert_eq!(exit.step, 1);
        let Leave::Bridge(dial) = &exit.leave else {
            panic!("a bridge: {exit:?}")
        };
        assert_eq!(dial.strategy, "simultaneous");
        assert_eq!(dial.timeout, 12);
        let ids: Vec<&str> = dial
            .targets
            .iter()
            .map(|t| match t {
                Target::Device { id, .. } => id.as_str(),
                Target::Carrier { .. } => "carrier",
            })
            .collect();
        assert_eq!(ids, ["d1", "d2"]);
        assert_eq!(t.outcome.kind, OutcomeKind::HandedOff);
        assert!(
            t.warnings.iter().all(|w| w.code != "default_assumed"),
            "nothing is assumed: {:?}",
            t.warnings
        );

        // The retry after a busy answer: the USER_BUSY child needs media.
        let busy = s.clone_with_events(
            json!([{"bridge": "failed", "cause": "USER_BUSY", "code": "sip:486"}]),
        );
        let (_, exit) = busy.route(flow.clone());
        let exit = exit.expect("voicemail");
        assert_eq!(exit.path, "flow.children._.children.USER_BUSY");
        assert_eq!(exit.leave, Leave::Media);

        // No answer: `_` hangs up inside callflowd; nothing leaves.
        let none = s.clone_with_events(
            json!([{"bridge": "failed", "cause": "NO_ANSWER", "code": "sip:480"}]),
        );
        let (t, exit) = none.route(flow);
        assert!(exit.is_none());
        assert_eq!(t.outcome.kind, OutcomeKind::Hangup);
    }

    #[test]
    fn only_modules_kazoo_has_can_need_media() {
        assert!(needs_media("menu") && needs_media("voicemail") && needs_media("page_group"));
        assert!(!needs_media("user") && !needs_media("temporal_route") && !needs_media("response"));
        assert!(
            !needs_media("no_such_module"),
            "unknown modules are skipped, not sent to media"
        );
    }

    #[test]
    fn a_trace_serialises_with_snake_case_kinds() {
        let t = Trace::no_route("no callflow takes 999");
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            json!({"steps": [], "outcome": {"kind": "no_route", "detail": "no callflow takes 999"}, "warnings": []})
        );
    }
}
