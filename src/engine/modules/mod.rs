//! Callflow modules: one file per family, each a function from a node to an executor action.
//!
//! Owns the table from module name to handler and the list of every module Kazoo implements.
//! Must not move between nodes itself: handlers answer with an [`Action`] and the executor
//! applies it.

mod bridging;

use super::exec::{Action, FlowRef, Run};

/// A module's entry point (Kazoo's `cf_<module>:handle/2`).
pub(crate) type Handler = for<'a> fn(&mut Run<'a>, &FlowRef<'a>) -> Action<'a>;

/// Every callflow module Kazoo implements (74 in applications/callflow plus 4 ACDc ones).
pub const MODULES: [&str; 78] = [
    "acdc_agent", "acdc_member", "acdc_queue", "acdc_wait_time", "after_bridge", "answer",
    "audio_macro", "branch_bnumber", "branch_variable", "call_forward", "call_waiting",
    "callflow", "camping_feature", "check_cid", "cidlistmatch", "collect_dtmf", "conference",
    "conference_feature", "dead_air", "device", "directory", "disa", "do_not_disturb",
    "dynamic_cid", "eavesdrop", "eavesdrop_feature", "edr", "fax_detect", "faxbox",
    "flush_dtmf", "function", "group", "group_pickup", "group_pickup_feature", "hangup",
    "hotdesk", "intercept", "intercept_feature", "intercom", "language", "lookupcidname",
    "manual_presence", "menu", "missed_call_alert", "move", "nomorobo", "noop", "notification",
    "offnet", "page_group", "park", "pivot", "play", "prepend_cid", "privacy", "receive_fax",
    "record_call", "record_caller", "resources", "response", "ring_group", "ring_group_toggle",
    "route_to_cid", "send_dtmf", "set", "set_alert_info", "set_cid", "set_variable",
    "set_variables", "skel", "sleep", "temporal_route", "transfer", "tts", "user", "voicemail",
    "wait_for_hangup", "webhook",
];

fn placeholder<'a>(rt: &mut Run<'a>, node: &FlowRef<'a>) -> Action<'a> {
    rt.say(format!("runs {}", node.module()));
    Action::next("")
}

/// The handler for a module name, `None` when Kazoo has no such module.
pub(crate) fn handler(module: &str) -> Option<Handler> {
    let h: Handler = match module {
        "user" => bridging::user,
        "device" => bridging::device,
        "ring_group" => bridging::ring_group,
        "group" => bridging::group,
        "page_group" => bridging::page_group,
        "route_to_cid" => bridging::route_to_cid,
        "resources" => bridging::resources,
        "offnet" => bridging::offnet,
        "hotdesk" => bridging::hotdesk,
        m if MODULES.contains(&m) => placeholder,
        _ => return None,
    };
    Some(h)
}
