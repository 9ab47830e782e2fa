//! Routing SIP calls by callflows: what a switch (Kamailio) asks callflowd for each new call,
//! and the digest credentials it checks devices against.
//!
//! Owns the routing decision: the account by the request's realm, the caller (an
//! authenticated device of that account, a carrier, or nobody), the number as Kazoo would look
//! it up, then the engine run until the call must leave callflowd ([`crate::engine::route`]),
//! turned into targets the switch can ring (see [`rtjson`]). A retry after a failed bridge
//! carries the failures of the call so far; the run replays them as bridge events, so the call
//! continues where Kazoo's executor would. Must not speak HTTP (src/api/sip.rs does) or SIP.
//! docs/sip.md explains the set-up.

pub mod rtjson;

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::documents::pipeline::{self, Kind, Pipeline, Target};
use crate::domain::numbers;
use crate::engine::events::BridgeEvent;
use crate::engine::{self, Call, Caller, DocumentSet, Event, Exit, Start};
use crate::routing::MatchKind;
use crate::store::Account;

/// What the switch asks about a new call (or a retry after a failed bridge).
#[derive(Debug, Clone, Default)]
pub struct RouteQuery {
    /// The request URI's user (the dialled number) and domain (the account's realm).
    pub ruser: String,
    pub rdomain: String,
    pub fuser: Option<String>,
    pub fdomain: Option<String>,
    /// Where the request came from.
    pub src_ip: Option<IpAddr>,
    pub call_id: Option<String>,
    /// The SIP username the switch authenticated the caller as (digest), if it did.
    pub auth_user: Option<String>,
    /// How each bridge of this call so far ended, in order.
    pub failures: Vec<Failure>,
    /// The node the last failure came from (`callflow_id:path`), for logs and checks.
    pub node: Option<String>,
    /// Unix time of the call's start (temporal rules are evaluated at it); now by default.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// Most failures one call goes through before callflowd answers 480 itself.
const MAX_FAILURES: usize = 32;

/// How a bridge the switch rang ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A final SIP response (4xx-6xx) from the far end, or from the switch itself.
    Code(u16),
    /// Nobody answered before the ring time ran out.
    Timeout,
    /// None of the devices to ring is registered (or can be built).
    Unregistered,
    /// No carrier takes the number.
    NoCarrier,
}

impl Failure {
    /// `486`, `timeout`, `unregistered`.
    pub fn parse(s: &str) -> Option<Failure> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("timeout") {
            return Some(Failure::Timeout);
        }
        if s.eq_ignore_ascii_case("unregistered") {
            return Some(Failure::Unregistered);
        }
        s.parse::<u16>()
            .ok()
            .filter(|c| (300..700).contains(c))
            .map(Failure::Code)
    }

    /// The bridge event Kazoo's executor would have seen: FreeSWITCH's hangup cause for the
    /// SIP code (mod_sofia's table), and the code as `sip:NNN`. A ring timeout is
    /// `NO_ANSWER`, as FreeSWITCH reports a leg timeout.
    pub fn event(self) -> Event {
        let (cause, code) = match self {
            Failure::Timeout => ("NO_ANSWER", 480),
            Failure::Unregistered => ("USER_NOT_REGISTERED", 480),
            Failure::NoCarrier => ("NO_ROUTE_DESTINATION", 404),
            Failure::Code(code) => (cause_of(code), code),
        };
        Event::Bridge(BridgeEvent::Failed {
            cause: Some(cause.to_string()),
            code: Some(format!("sip:{code}")),
        })
    }
}

/// FreeSWITCH's hangup cause for a SIP final response (`sofia_glue_sip_cause_to_freeswitch`).
pub fn cause_of(code: u16) -> &'static str {
    match code {
        200 => "NORMAL_CLEARING",
        401 | 402 | 403 | 407 | 603 | 608 => "CALL_REJECTED",
        404 => "UNALLOCATED_NUMBER",
        485 | 604 => "NO_ROUTE_DESTINATION",
        408 | 504 => "RECOVERY_ON_TIMER_EXPIRE",
        410 => "NUMBER_CHANGED",
        413 | 414 | 416 | 420 | 421 | 423 | 505 | 513 => "INTERWORKING",
        480 => "NO_USER_RESPONSE",
        400 | 481 | 500 | 503 => "NORMAL_TEMPORARY_FAILURE",
        486 | 600 => "USER_BUSY",
        484 => "INVALID_NUMBER_FORMAT",
        488 | 606 => "INCOMPATIBLE_DESTINATION",
        502 => "NETWORK_OUT_OF_ORDER",
        405 => "SERVICE_UNAVAILABLE",
        406 | 415 | 501 => "SERVICE_NOT_IMPLEMENTED",
        482 | 483 => "EXCHANGE_ROUTING_ERROR",
        487 => "ORIGINATOR_CANCEL",
        _ => "NORMAL_UNSPECIFIED",
    }
}

/// The SIP response FreeSWITCH sends for a hangup cause (the reverse table), for calls the
/// callflow ends with a cause.
pub fn code_of(cause: &str) -> (u16, &'static str) {
    match cause {
        "USER_BUSY" => (486, "Busy Here"),
        "NO_ANSWER" | "USER_NOT_REGISTERED" | "SUBSCRIBER_ABSENT" => {
            (480, "Temporarily Unavailable")
        }
        "NO_USER_RESPONSE" => (408, "Request Timeout"),
        "CALL_REJECTED" => (603, "Decline"),
        "UNALLOCATED_NUMBER" | "NO_ROUTE_DESTINATION" => (404, "Not Found"),
        "NUMBER_CHANGED" => (410, "Gone"),
        "INVALID_NUMBER_FORMAT" => (484, "Address Incomplete"),
        "INCOMPATIBLE_DESTINATION" => (488, "Not Acceptable Here"),
        "RECOVERY_ON_TIMER_EXPIRE" => (408, "Request Timeout"),
        "NETWORK_OUT_OF_ORDER" => (502, "Bad Gateway"),
        "ORIGINATOR_CANCEL" => (487, "Request Terminated"),
        "SERVICE_NOT_IMPLEMENTED" => (501, "Not Implemented"),
        "NORMAL_TEMPORARY_FAILURE" | "SERVICE_UNAVAILABLE" => (503, "Service Unavailable"),
        _ => (480, "Temporarily Unavailable"),
    }
}

/// Where the switch should send the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Ring these (an rtjson document's `routing` and `routes`).
    Route {
        routing: &'static str,
        routes: Vec<Value>,
    },
    /// Answer the caller with this final response.
    Reply { code: u16, reason: String },
    /// The caller must authenticate (digest) first.
    Challenge,
    /// No callflow takes the number (or no account has the realm).
    NotFound,
}

/// A routing decision with what led to it, for the switch's logs and for people.
#[derive(Debug, Clone)]
pub struct Answer {
    pub decision: Decision,
    /// Why, in one line (the lookup's explanation, the node, the outcome).
    pub explain: String,
    pub account_id: Option<String>,
    pub callflow_id: Option<String>,
    /// Where the call leaves callflowd: module and `callflow_id:path`.
    pub exit: Option<Exit>,
    /// The caller as the run saw it.
    pub on_net: bool,
}

impl Answer {
    fn bare(decision: Decision, explain: impl Into<String>) -> Self {
        Answer {
            decision,
            explain: explain.into(),
            account_id: None,
            callflow_id: None,
            exit: None,
            on_net: false,
        }
    }

    /// The metrics label of the decision.
    pub fn result(&self) -> &'static str {
        match &self.decision {
            Decision::Route { .. } => match self.exit.as_ref().map(|e| &e.leave) {
                Some(engine::Leave::Media) => "media",
                _ => "bridge",
            },
            Decision::Reply { .. } => "reply",
            Decision::Challenge => "challenge",
            Decision::NotFound => "not_found",
        }
    }
}

/// Settings of the routing decision.
#[derive(Debug, Clone, Default)]
pub struct SipSettings {
    /// The media server's SIP URI.
    pub media_uri: Option<String>,
}

/// The routing decision for one call. Store failures are errors; everything about the call
/// itself is an [`Answer`].
pub async fn route(
    pipeline: &Pipeline,
    settings: &SipSettings,
    query: &RouteQuery,
) -> Result<Answer, pipeline::Error> {
    let realm = query.rdomain.trim().to_ascii_lowercase();
    let Some(account) = account_by_realm(pipeline, &realm).await? else {
        return Ok(Answer::bare(
            Decision::NotFound,
            format!("no account has the realm {realm}"),
        ));
    };
    let caller = match caller_of(pipeline, &account, query).await? {
        Some(caller) => caller,
        None => {
            let mut answer = Answer::bare(
                Decision::Challenge,
                "the caller is neither an authenticated device of the account nor one of its carriers",
            );
            answer.account_id = Some(account.id.clone());
            return Ok(answer);
        }
    };
    let on_net = caller.on_net();
    // Kazoo looks a device's call up as dialled; a carrier's number is normalised first
    // (E.164, through the account's dial plan).
    let number = if on_net {
        query.ruser.clone()
    } else {
        let plan = numbers::dial_plan_of(account.doc.get("dial_plan"));
        numbers::normalize(&query.ruser, &plan)
    };
    let table = pipeline.routes.table(&account.id).await?;
    let Some(found) = table.lookup(&number, on_net, true) else {
        let mut answer = Answer::bare(
            Decision::NotFound,
            format!("no callflow of the account takes {number}"),
        );
        answer.account_id = Some(account.id.clone());
        answer.on_net = on_net;
        return Ok(answer);
    };
    let callflow_id = found.callflow_id.to_string();
    let capture_group = found.capture_group.clone();
    let lookup_explain = match found.reason.as_ref() {
        "" => format!("{number} reaches callflow {callflow_id}"),
        reason => format!("{number} reaches callflow {callflow_id}: {reason}"),
    };
    let stored = pipeline
        .load(Target::new(Kind::Callflow, &account.id, &callflow_id))
        .await?;

    let call = Call {
        number: number.clone(),
        caller,
        now: query.now.unwrap_or_else(chrono::Utc::now),
        events: query.failures.iter().map(|f| f.event()).collect(),
        max_steps: engine::DEFAULT_MAX_STEPS,
    };
    let dialplan = |n: &str| {
        table.lookup(n, on_net, false).map(|r| engine::Route {
            callflow_id: r.callflow_id.to_string(),
            capture_group: r.capture_group.clone(),
            no_match: r.kind == MatchKind::NoMatch,
        })
    };
    let realm = account.realm.clone().unwrap_or(realm);
    let context = rtjson::Context {
        account_id: &account.id,
        realm: &realm,
        media_uri: settings.media_uri.as_deref(),
    };
    let start = Start {
        callflow_id: &callflow_id,
        callflow: &stored.doc,
        capture_group: capture_group.as_deref(),
    };
    let ((trace, exit, decision), _) = crate::simulation::with_documents(
        pipeline,
        &account,
        &DocumentSet::new(),
        &HashSet::new(),
        &HashSet::new(),
        |docs| decide(start, &call, &query.failures, docs, &dialplan, &context),
    )
    .await?;
    let explain = match &exit {
        Some(exit) => format!(
            "{lookup_explain}; the call leaves at {}:{} ({})",
            exit.callflow_id, exit.path, exit.module
        ),
        None => format!("{lookup_explain}; {}", trace.outcome.detail),
    };
    Ok(Answer {
        decision,
        explain,
        account_id: Some(account.id.clone()),
        callflow_id: Some(callflow_id),
        exit,
        on_net,
    })
}

/// Runs the call to where it leaves callflowd and what the switch should do there. A bridge
/// with nothing the switch could ring (no carrier takes the number, no device can be built)
/// fails at once, as Kazoo's bridge would: that failure is added to the script and the run
/// goes on to the node's failure child, without a round trip to the switch.
fn decide(
    start: Start<'_>,
    call: &Call,
    failures: &[Failure],
    docs: &dyn engine::Documents,
    dialplan: &dyn engine::Dialplan,
    context: &rtjson::Context<'_>,
) -> (engine::Trace, Option<Exit>, Decision) {
    let mut call = call.clone();
    let mut failures = failures.to_vec();
    loop {
        let (trace, exit) = engine::route(start, &call, docs, dialplan);
        let decision = match &exit {
            Some(exit) => rtjson::decision(context, exit, docs),
            None => Ok(ended(&trace, &failures)),
        };
        match decision {
            Ok(decision) => return (trace, exit, decision),
            Err(failure) if failures.len() < MAX_FAILURES => {
                failures.push(failure);
                call.events.push(failure.event());
            }
            Err(_) => {
                let decision = Decision::Reply {
                    code: 480,
                    reason: "Nothing to ring".into(),
                };
                return (trace, exit, decision);
            }
        }
    }
}

/// The answer for a call that ended inside callflowd: a `response` node's code, a cause the
/// flow stopped with, the last bridge failure, or 480 when the flow simply ran out.
fn ended(trace: &engine::Trace, failures: &[Failure]) -> Decision {
    if let Some(cause) = trace.outcome.cause.as_deref() {
        if let Some(code) = cause
            .strip_prefix("sip:")
            .and_then(|c| c.parse::<u16>().ok())
        {
            return Decision::Reply {
                code,
                reason: trace.outcome.detail.clone(),
            };
        }
        let (code, reason) = code_of(cause);
        return Decision::Reply {
            code,
            reason: reason.into(),
        };
    }
    match failures.last() {
        Some(Failure::Code(code)) => Decision::Reply {
            code: *code,
            reason: cause_of(*code).to_string(),
        },
        _ => Decision::Reply {
            code: 480,
            reason: "Temporarily Unavailable".into(),
        },
    }
}

/// Who is calling: the account's device the switch authenticated, a carrier of the account
/// (by source address), or `None` when the switch must challenge the caller.
async fn caller_of(
    pipeline: &Pipeline,
    account: &Account,
    query: &RouteQuery,
) -> Result<Option<Caller>, pipeline::Error> {
    if let Some(user) = query.auth_user.as_deref().filter(|u| !u.is_empty()) {
        if let Some((id, device)) = device_by_username(pipeline, &account.id, user).await? {
            let owner = device
                .get("owner_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            return Ok(Some(Caller {
                id_number: query.fuser.clone(),
                id_name: None,
                device_id: Some(id),
                user_id: owner,
            }));
        }
    }
    let Some(ip) = query.src_ip else {
        return Ok(None);
    };
    let carriers = pipeline
        .store
        .list_documents(&account.id, "resource", None, i64::MAX, false)
        .await?;
    let from_carrier = carriers.iter().any(|r| {
        r.doc
            .get("gateways")
            .and_then(Value::as_array)
            .is_some_and(|gws| {
                gws.iter().any(|gw| {
                    gw.get("server")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<IpAddr>().ok())
                        == Some(ip)
                })
            })
    });
    Ok(from_carrier.then(|| Caller {
        id_number: query.fuser.clone(),
        ..Caller::default()
    }))
}

/// The account whose realm is `realm` (realms are unique, compared without case).
async fn account_by_realm(
    pipeline: &Pipeline,
    realm: &str,
) -> Result<Option<Account>, pipeline::Error> {
    Ok(pipeline
        .store
        .accounts_by_realm(&realm.to_ascii_lowercase())
        .await?
        .into_iter()
        .next())
}

/// The live device with this SIP username (case-insensitive, as Kazoo keeps them unique).
pub async fn device_by_username(
    pipeline: &Pipeline,
    account_id: &str,
    username: &str,
) -> Result<Option<(String, Map<String, Value>)>, pipeline::Error> {
    let Some(id) = pipeline
        .store
        .document_id_by_key(account_id, "sip.username", &username.to_lowercase())
        .await?
    else {
        return Ok(None);
    };
    Ok(pipeline
        .store
        .get_document(account_id, &id)
        .await?
        .filter(|(doc_type, d)| doc_type == "device" && !d.deleted)
        .map(|(_, d)| (d.id, d.doc)))
}

/// A device's digest credentials for the switch: the HA1 (`md5(username:realm:password)`),
/// never the password. `None` when no enabled device of the realm's account has that
/// username and a password.
pub async fn credentials(
    pipeline: &Pipeline,
    username: &str,
    realm: &str,
) -> Result<Option<Credentials>, pipeline::Error> {
    // The account is found case-insensitively; the HA1 uses the realm exactly as the switch
    // challenged with it, as the phone computes its response with that string.
    let realm = realm.trim();
    let Some(account) = account_by_realm(pipeline, realm).await? else {
        return Ok(None);
    };
    let Some((device_id, device)) = device_by_username(pipeline, &account.id, username).await?
    else {
        return Ok(None);
    };
    if device.get("enabled").and_then(Value::as_bool) == Some(false) {
        return Ok(None);
    }
    let sip = device.get("sip");
    let Some(password) = sip.and_then(|s| s.get("password")).and_then(Value::as_str) else {
        return Ok(None);
    };
    // The username as the device sends it in its Authorization header.
    let ha1 = ha1(username, realm, password);
    Ok(Some(Credentials {
        ha1,
        device_id,
        account_id: account.id,
        owner_id: device
            .get("owner_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    }))
}

/// What the switch needs to check a device's digest response.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub ha1: String,
    pub device_id: String,
    pub account_id: String,
    pub owner_id: Option<String>,
}

/// RFC 2617's HA1: `md5(username ":" realm ":" password)`, lower-case hex.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(format!("{username}:{realm}:{password}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_is_rfc_2617s() {
        // RFC 2617 §3.5's example: Mufasa / testrealm@host.com / Circle Of Life.
        assert_eq!(
            ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    #[test]
    fn failures_become_kazoo_bridge_events() {
        assert_eq!(Failure::parse("486"), Some(Failure::Code(486)));
        assert_eq!(Failure::parse("timeout"), Some(Failure::Timeout));
        assert_eq!(Failure::parse("200"), None);
        assert_eq!(Failure::parse("x"), None);
        assert_eq!(
            Failure::Code(486).event(),
            Event::Bridge(BridgeEvent::Failed {
                cause: Some("USER_BUSY".into()),
                code: Some("sip:486".into())
            })
        );
        assert_eq!(
            Failure::Timeout.event(),
            Event::Bridge(BridgeEvent::Failed {
                cause: Some("NO_ANSWER".into()),
                code: Some("sip:480".into())
            })
        );
        assert_eq!(code_of(cause_of(486)), (486, "Busy Here"));
    }
}
