//! `unknown_failure_key`: under a bridging module (user, device, ring_group, group, hotdesk,
//! route_to_cid, resources, offnet) a child key that is neither a hangup cause nor `sip:NNN`,
//! so no failure can ever select it (`cf_util:handle_bridge_failure` looks the cause up, then
//! the code, verbatim).

use crate::engine::modules::{child_keys, ChildKeys};

use super::{Ctx, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "unknown_failure_key",
    severity: Severity::Warning,
    summary: "a failure child spelled unlike any hangup cause or `sip:NNN`",
};

/// FreeSWITCH's hangup causes, as Kazoo reports them.
pub const HANGUP_CAUSES: &[&str] = &[
    "UNSPECIFIED",
    "UNALLOCATED_NUMBER",
    "NO_ROUTE_TRANSIT_NET",
    "NO_ROUTE_DESTINATION",
    "CHANNEL_UNACCEPTABLE",
    "CALL_AWARDED_DELIVERED",
    "NORMAL_CLEARING",
    "USER_BUSY",
    "NO_USER_RESPONSE",
    "NO_ANSWER",
    "SUBSCRIBER_ABSENT",
    "CALL_REJECTED",
    "NUMBER_CHANGED",
    "REDIRECTION_TO_NEW_DESTINATION",
    "EXCHANGE_ROUTING_ERROR",
    "DESTINATION_OUT_OF_ORDER",
    "INVALID_NUMBER_FORMAT",
    "FACILITY_REJECTED",
    "RESPONSE_TO_STATUS_ENQUIRY",
    "NORMAL_UNSPECIFIED",
    "NORMAL_CIRCUIT_CONGESTION",
    "NETWORK_OUT_OF_ORDER",
    "NORMAL_TEMPORARY_FAILURE",
    "SWITCH_CONGESTION",
    "ACCESS_INFO_DISCARDED",
    "REQUESTED_CHAN_UNAVAIL",
    "PRE_EMPTED",
    "FACILITY_NOT_SUBSCRIBED",
    "OUTGOING_CALL_BARRED",
    "INCOMING_CALL_BARRED",
    "BEARERCAPABILITY_NOTAUTH",
    "BEARERCAPABILITY_NOTAVAIL",
    "SERVICE_UNAVAILABLE",
    "BEARERCAPABILITY_NOTIMPL",
    "CHAN_NOT_IMPLEMENTED",
    "FACILITY_NOT_IMPLEMENTED",
    "SERVICE_NOT_IMPLEMENTED",
    "INVALID_CALL_REFERENCE",
    "INCOMPATIBLE_DESTINATION",
    "INVALID_MSG_UNSPECIFIED",
    "MANDATORY_IE_MISSING",
    "MESSAGE_TYPE_NONEXIST",
    "WRONG_MESSAGE",
    "IE_NONEXIST",
    "INVALID_IE_CONTENTS",
    "WRONG_CALL_STATE",
    "RECOVERY_ON_TIMER_EXPIRE",
    "MANDATORY_IE_LENGTH_ERROR",
    "PROTOCOL_ERROR",
    "INTERWORKING",
    "SUCCESS",
    "ORIGINATOR_CANCEL",
    "CRASH",
    "SYSTEM_SHUTDOWN",
    "LOSE_RACE",
    "MANAGER_REQUEST",
    "BLIND_TRANSFER",
    "ATTENDED_TRANSFER",
    "ALLOTTED_TIMEOUT",
    "USER_CHALLENGE",
    "MEDIA_TIMEOUT",
    "PICKED_OFF",
    "USER_NOT_REGISTERED",
    "PROGRESS_TIMEOUT",
    "GATEWAY_DOWN",
];

fn is_sip_code(key: &str) -> bool {
    key.strip_prefix("sip:")
        .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
}

/// What the author probably meant.
fn suggestion(key: &str) -> Option<String> {
    let upper = key.to_ascii_uppercase().replace(['-', ' '], "_");
    if HANGUP_CAUSES.contains(&upper.as_str()) {
        return Some(upper);
    }
    let digits = key
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .trim_end_matches(|c: char| !c.is_ascii_digit());
    if digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("sip:{digits}"));
    }
    HANGUP_CAUSES
        .iter()
        .find(|c| c.contains(upper.as_str()) && upper.len() >= 4)
        .map(|c| c.to_string())
}

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for node in super::nodes(ctx.doc) {
        if !matches!(
            child_keys(node.module),
            ChildKeys::Failure | ChildKeys::CarrierFailure
        ) {
            continue;
        }
        for (key, _) in &node.children {
            if *key == "_" || HANGUP_CAUSES.contains(key) || is_sip_code(key) {
                continue;
            }
            out.push(ctx.finding(
                &RULE,
                format!("{}.children.{key}", node.path),
                format!("\"{key}\" is not a hangup cause or a sip:NNN code, so no failure of {} selects it", node.module),
                Some(match suggestion(key) {
                    Some(s) => format!("rename it \"{s}\""),
                    None => "use a hangup cause (USER_BUSY, NO_ANSWER, ...) or a code (sip:486)".into(),
                }),
            ));
        }
    }
}
