//! What a simulation reports: the steps taken, how the call ended, and what to look at.
//!
//! Owns the serialisable result types (they become the HTTP response's `data`). Must not hold
//! any logic about callflows: the executor and the modules fill these in.

use serde::Serialize;
use serde_json::Value;

/// The whole answer to "what does this callflow do with this call?".
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trace {
    pub steps: Vec<Step>,
    pub outcome: Outcome,
    pub warnings: Vec<Warning>,
}

impl Trace {
    /// The answer for a number no callflow takes.
    pub fn no_route(message: impl Into<String>) -> Trace {
        Trace {
            steps: Vec::new(),
            outcome: Outcome {
                kind: OutcomeKind::NoRoute,
                endpoint: None,
                cause: None,
                step: None,
                detail: message.into(),
            },
            warnings: Vec::new(),
        }
    }
}

/// One node run (a node that waits for several events gets one step per event).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    pub module: String,
    /// The callflow document the node is in (`events.N` for a flow an event returned,
    /// `system` for a node Kazoo builds itself).
    pub callflow_id: String,
    /// JSON path of the node in that document, e.g. `flow.children._.children.2`.
    pub path: String,
    /// What the node does with this data, in plain words.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// Index of `event` in the script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_index: Option<usize>,
    /// The child key taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Why that child (or why none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Return-stack depth when the node ran.
    pub depth: usize,
}

/// How the call ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// A bridge answered (user, device, group, carrier, page, pickup, ...).
    Connected,
    /// A voicemail message was left (or the box was checked).
    Voicemail,
    /// Kazoo hung the call up (flow ran out, hangup module, a failure with a cause).
    Hangup,
    /// The caller hung up (a `hangup` event).
    CallerHangup,
    /// The call was transferred (metaflow transfer, carrier transfer, park pickup).
    Transferred,
    /// Another application drives the call from here (pivot, remote action, camping, ...).
    HandedOff,
    /// No callflow takes the number.
    NoRoute,
    /// Kazoo's branch budget ran out.
    Loop,
    /// The simulation's step limit was reached.
    StepLimit,
    /// A fax application took the call.
    Fax,
    /// The conference application took the call.
    Conference,
    /// An ACDc queue took the call.
    Queue,
    /// The call was parked and left there.
    Park,
}

/// What got connected.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Endpoint {
    /// `user`, `device`, `group`, `ring_group`, `vmbox`, `resources`, `number`, `conference`,
    /// `faxbox`, `queue`, `park_slot`, ...
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Endpoint {
    pub fn new(kind: &str, id: Option<&str>, name: Option<String>) -> Self {
        Endpoint {
            kind: kind.to_string(),
            id: id.map(str::to_string),
            name,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Index of the step the call ended at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    pub detail: String,
}

/// Something the reader should know: an assumption, a Kazoo quirk on the path, a gap.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warning {
    /// Stable id: `event_unused`, `event_mismatch`, `default_assumed`, `kazoo_quirk`,
    /// `document_missing`, `branch_budget`, `digits_ignored`, `not_simulated`,
    /// `metaflow_key_ignored`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
}
