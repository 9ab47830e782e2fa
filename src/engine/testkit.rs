//! Test helpers: build a call, documents and a dial plan in a few lines, run, and read the
//! trace back. Test-only.

use std::collections::HashMap;

use chrono::TimeZone;
use serde_json::{json, Value};

use super::*;

pub(crate) fn obj(v: Value) -> Doc {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

pub(crate) fn events(v: Value) -> Vec<Event> {
    parse_events(v.as_array().expect("an array of events")).expect("valid events")
}

/// A dial plan of exact numbers.
#[derive(Default)]
pub(crate) struct Plan(pub HashMap<String, Route>);

impl Plan {
    pub fn with(mut self, number: &str, callflow_id: &str) -> Self {
        self.0.insert(
            number.to_string(),
            Route {
                callflow_id: callflow_id.to_string(),
                capture_group: None,
                no_match: false,
            },
        );
        self
    }
}

impl Dialplan for Plan {
    fn lookup(&self, number: &str) -> Option<Route> {
        self.0.get(number).cloned()
    }
}

pub(crate) struct Sim {
    pub docs: DocumentSet,
    pub plan: Plan,
    pub call: Call,
    pub capture: Option<String>,
}

impl Sim {
    pub fn new() -> Self {
        let now = chrono::Utc.with_ymd_and_hms(2024, 3, 12, 15, 0, 0).unwrap();
        let mut call = Call::new("1000", now);
        call.caller.id_number = Some("+14155550100".into());
        Sim {
            docs: DocumentSet::new(),
            plan: Plan::default(),
            call,
            capture: None,
        }
    }

    pub fn doc(mut self, doc_type: &str, id: &str, doc: Value) -> Self {
        self.docs.insert(doc_type, id, obj(doc));
        self
    }

    pub fn events(mut self, v: Value) -> Self {
        self.call.events = events(v);
        self
    }

    pub fn run(&self, flow: Value) -> Trace {
        self.route_or_run(flow, false).0
    }

    /// A routing run (see [`super::route`]).
    pub fn route(&self, flow: Value) -> (Trace, Option<super::Exit>) {
        self.route_or_run(flow, true)
    }

    fn route_or_run(&self, flow: Value, routing: bool) -> (Trace, Option<super::Exit>) {
        let cf = obj(json!({ "flow": flow }));
        let start = Start {
            callflow_id: "cf0",
            callflow: &cf,
            capture_group: self.capture.as_deref(),
        };
        if routing {
            super::route(start, &self.call, &self.docs, &self.plan)
        } else {
            (simulate(start, &self.call, &self.docs, &self.plan), None)
        }
    }
}

/// `module@path -> branch` for each step, compact for assertions.
pub(crate) fn walk(t: &Trace) -> Vec<String> {
    t.steps
        .iter()
        .map(|s| {
            format!(
                "{}{}",
                s.module,
                s.branch
                    .as_ref()
                    .map(|b| format!("->{b}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

pub(crate) fn codes(t: &Trace) -> Vec<&'static str> {
    t.warnings.iter().map(|w| w.code).collect()
}

impl Sim {
    /// The same documents and plan with another script.
    pub fn clone_with_events(&self, v: Value) -> Sim {
        let mut call = self.call.clone();
        call.events = events(v);
        Sim {
            docs: self.docs.clone(),
            plan: Plan(self.plan.0.clone()),
            call,
            capture: self.capture.clone(),
        }
    }
}
