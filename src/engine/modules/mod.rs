//! Callflow modules: one file per family, each a function from a node to an executor action.
//!
//! Owns the table from module name to handler and the list of every module Kazoo implements.
//! Must not move between nodes itself: handlers answer with an [`Action`] and the executor
//! applies it.

mod bridging;
mod features;
mod handoff;
mod media;
mod menu;
mod routing;
mod settings;
mod voicemail;

use super::exec::{Action, FlowRef, Run};

/// A module's entry point (Kazoo's `cf_<module>:handle/2`).
pub(crate) type Handler = for<'a> fn(&mut Run<'a>, &FlowRef<'a>) -> Action<'a>;

/// Every callflow module Kazoo implements (74 in applications/callflow plus 4 ACDc ones).
pub const MODULES: [&str; 78] = [
    "acdc_agent",
    "acdc_member",
    "acdc_queue",
    "acdc_wait_time",
    "after_bridge",
    "answer",
    "audio_macro",
    "branch_bnumber",
    "branch_variable",
    "call_forward",
    "call_waiting",
    "callflow",
    "camping_feature",
    "check_cid",
    "cidlistmatch",
    "collect_dtmf",
    "conference",
    "conference_feature",
    "dead_air",
    "device",
    "directory",
    "disa",
    "do_not_disturb",
    "dynamic_cid",
    "eavesdrop",
    "eavesdrop_feature",
    "edr",
    "fax_detect",
    "faxbox",
    "flush_dtmf",
    "function",
    "group",
    "group_pickup",
    "group_pickup_feature",
    "hangup",
    "hotdesk",
    "intercept",
    "intercept_feature",
    "intercom",
    "language",
    "lookupcidname",
    "manual_presence",
    "menu",
    "missed_call_alert",
    "move",
    "nomorobo",
    "noop",
    "notification",
    "offnet",
    "page_group",
    "park",
    "pivot",
    "play",
    "prepend_cid",
    "privacy",
    "receive_fax",
    "record_call",
    "record_caller",
    "resources",
    "response",
    "ring_group",
    "ring_group_toggle",
    "route_to_cid",
    "send_dtmf",
    "set",
    "set_alert_info",
    "set_cid",
    "set_variable",
    "set_variables",
    "skel",
    "sleep",
    "temporal_route",
    "transfer",
    "tts",
    "user",
    "voicemail",
    "wait_for_hangup",
    "webhook",
];

/// Which child keys a module can ever take, as its Kazoo module is written (the lint's table;
/// the handlers below are the behaviour). `_` is always possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKeys {
    /// Only `_`.
    Underscore,
    /// These named keys, then `_`.
    Named(&'static [&'static str]),
    /// A bridge failure: the hangup cause, then the `sip:NNN` code; else `_`.
    Failure,
    /// A carrier failure: the hangup cause, then the `sip:NNN` code; `_` is never taken on
    /// failure (`cf_resources` stops with the cause).
    CarrierFailure,
    /// The digits a menu collected (never `#`, a terminator; at most `max_extension_length`),
    /// `timeout`, `max_retries`.
    Menu,
    /// Integer thresholds.
    Numeric,
    /// Values known only during the call (rule ids, variable values, numbers, caller ids,
    /// park slots).
    Any,
}

/// The child keys `module` can take; unknown modules are skipped to `_`.
pub fn child_keys(module: &str) -> ChildKeys {
    match module {
        "user" | "device" | "ring_group" | "group" | "hotdesk" | "route_to_cid" => {
            ChildKeys::Failure
        }
        "resources" | "offnet" => ChildKeys::CarrierFailure,
        "menu" => ChildKeys::Menu,
        "check_cid" | "cidlistmatch" => ChildKeys::Named(&["match", "nomatch"]),
        "fax_detect" => ChildKeys::Named(&["ON_FAX", "ON_VOICE"]),
        "nomorobo" | "acdc_wait_time" => ChildKeys::Numeric,
        "temporal_route" | "branch_bnumber" | "branch_variable" | "park" => ChildKeys::Any,
        _ => ChildKeys::Underscore,
    }
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
        "callflow" => routing::callflow,
        "temporal_route" => routing::temporal_route,
        "check_cid" => routing::check_cid,
        "cidlistmatch" => routing::cidlistmatch,
        "branch_bnumber" => routing::branch_bnumber,
        "branch_variable" => routing::branch_variable,
        "fax_detect" => routing::fax_detect,
        "nomorobo" => routing::nomorobo,
        "privacy" => routing::privacy,
        "intercom" => routing::intercom,
        "function" => routing::function,
        "pivot" => routing::pivot,
        "menu" => menu::menu,
        "voicemail" => voicemail::voicemail,
        "play" => media::play,
        "tts" => media::tts,
        "audio_macro" => media::audio_macro,
        "collect_dtmf" => media::collect_dtmf,
        "flush_dtmf" => media::flush_dtmf,
        "send_dtmf" => media::send_dtmf,
        "sleep" => media::sleep,
        "record_call" => media::record_call,
        "record_caller" => media::record_caller,
        "answer" => media::answer,
        "noop" => media::noop,
        "skel" => media::skel,
        "hangup" => media::hangup,
        "wait_for_hangup" => media::wait_for_hangup,
        "dead_air" => media::dead_air,
        "response" => media::response,
        "set_cid" => settings::set_cid,
        "prepend_cid" => settings::prepend_cid,
        "dynamic_cid" => settings::dynamic_cid,
        "lookupcidname" => settings::lookupcidname,
        "set_variable" => settings::set_variable,
        "set_variables" => settings::set_variables,
        "set" => settings::set,
        "set_alert_info" => settings::set_alert_info,
        "language" => settings::language,
        "manual_presence" => settings::manual_presence,
        "after_bridge" => settings::after_bridge,
        "edr" => settings::edr,
        "webhook" => settings::webhook,
        "missed_call_alert" => settings::missed_call_alert,
        "notification" => settings::notification,
        "call_forward" => features::call_forward,
        "call_waiting" => features::call_waiting,
        "do_not_disturb" => features::do_not_disturb,
        "ring_group_toggle" => features::ring_group_toggle,
        "park" => features::park,
        "move" => features::r#move,
        "eavesdrop" => features::eavesdrop,
        "intercept" => features::intercept,
        "group_pickup" => features::group_pickup,
        "eavesdrop_feature" => features::eavesdrop_feature,
        "intercept_feature" => features::intercept_feature,
        "group_pickup_feature" => features::group_pickup_feature,
        "camping_feature" => features::camping_feature,
        "directory" => features::directory,
        "disa" => features::disa,
        "transfer" => features::transfer,
        "conference" => handoff::conference,
        "conference_feature" => handoff::conference_feature,
        "receive_fax" => handoff::receive_fax,
        "faxbox" => handoff::faxbox,
        "acdc_member" => handoff::acdc_member,
        "acdc_agent" => handoff::acdc_agent,
        "acdc_queue" => handoff::acdc_queue,
        "acdc_wait_time" => handoff::acdc_wait_time,
        _ => return None,
    };
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kazoo_module_has_a_handler() {
        for m in MODULES {
            assert!(handler(m).is_some(), "{m} has no handler");
        }
        assert!(
            handler("onnet").is_none() && handler("queue").is_none() && handler("say").is_none()
        );
    }

    #[test]
    fn the_list_matches_the_schemas_when_present() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/kazoo/schemas");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            println!("SKIPPED: ../shared not present");
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| {
                f.strip_prefix("callflows.")?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .filter(|m| m != "action" && !m.contains('.'))
            .collect();
        names.sort();
        assert_eq!(names, MODULES.to_vec());
    }
}
