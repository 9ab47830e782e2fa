//! Turning where a call leaves callflowd into Kamailio `rtjson` routes.
//!
//! Owns the SIP URI of each target: a device's address of record (the switch resolves it to
//! the registered contact), or its static route; a carrier gateway with the number formatted
//! as the gateway expects (Kazoo's stepswitch rules, prefix, suffix and `invite_format`); the
//! media server with headers naming the callflow and node. Must not decide which node runs
//! (the engine does).

use serde_json::{json, Map, Value};

use super::{Decision, Failure};
use crate::domain::numbers;
use crate::engine::{Dial, Documents, Exit, Leave, Target};

/// The URI parameter that marks a device's address of record: the switch must look it up in
/// its registrations (and drop the branch when the device is not registered).
pub const LOOKUP_PARAM: &str = "cfd_lookup";

/// What every route of one decision shares.
pub struct Context<'a> {
    pub account_id: &'a str,
    /// The account's realm (devices register under it).
    pub realm: &'a str,
    pub media_uri: Option<&'a str>,
}

/// The routes for `exit`; the reply when there is no media server; the failure of the bridge
/// when it has nothing the switch could ring.
pub fn decision(ctx: &Context<'_>, exit: &Exit, docs: &dyn Documents) -> Result<Decision, Failure> {
    match &exit.leave {
        Leave::Media => Ok(match ctx.media_uri {
            Some(uri) => Decision::Route {
                routing: "serial",
                routes: vec![route(ctx, exit, uri, None, None, false)],
            },
            None => Decision::Reply {
                code: 480,
                reason: "No media server configured".into(),
            },
        }),
        Leave::Bridge(dial) => bridge(ctx, exit, dial, docs),
    }
}

fn bridge(
    ctx: &Context<'_>,
    exit: &Exit,
    dial: &Dial,
    docs: &dyn Documents,
) -> Result<Decision, Failure> {
    let mut routes = Vec::new();
    let serial = dial.strategy == "single";
    for target in &dial.targets {
        match target {
            Target::Device { id, timeout, .. } => {
                let Some(device) = docs.get("devices", id) else {
                    continue;
                };
                let ring = if serial {
                    timeout.or(Some(dial.timeout)).filter(|t| *t > 0)
                } else {
                    Some(dial.timeout).filter(|t| *t > 0)
                };
                let (uri, lookup) = device_uri(ctx, device);
                routes.push(route(ctx, exit, &uri, ring, Some(id), lookup));
            }
            Target::Carrier { number, .. } => {
                for uri in carrier_uris(docs, number) {
                    routes.push(route(ctx, exit, &uri, None, None, false));
                }
            }
        }
    }
    if routes.is_empty() {
        let carriers = dial
            .targets
            .iter()
            .any(|t| matches!(t, Target::Carrier { .. }));
        return Err(if carriers {
            Failure::NoCarrier
        } else {
            Failure::Unregistered
        });
    }
    Ok(Decision::Route {
        routing: if serial || routes.len() == 1 {
            "serial"
        } else {
            "parallel"
        },
        routes,
    })
}

/// A device's request URI: its static route, or its address of record under the realm (to be
/// resolved by the switch's registrations: `true`).
fn device_uri(ctx: &Context<'_>, device: &Map<String, Value>) -> (String, bool) {
    let sip = device.get("sip").and_then(Value::as_object);
    let field = |k: &str| sip.and_then(|s| s.get(k)).and_then(Value::as_str);
    if field("invite_format") == Some("route") {
        if let Some(route) = field("route").filter(|r| !r.is_empty()) {
            let uri = if route.starts_with("sip:") || route.starts_with("sips:") {
                route.to_string()
            } else {
                format!("sip:{route}")
            };
            return (uri, false);
        }
    }
    let username = field("username").unwrap_or_default();
    let realm = field("realm").unwrap_or(ctx.realm);
    (format!("sip:{username}@{realm};{LOOKUP_PARAM}=1"), true)
}

/// The account's carriers (`resources` documents) that take `number`, cheapest first
/// (`weight_cost`, then id): one URI per enabled gateway, the number as each expects it.
pub fn carrier_uris(docs: &dyn Documents, number: &str) -> Vec<String> {
    let e164 = numbers::normalize(number, &[]);
    let mut resources: Vec<&Map<String, Value>> = docs
        .all("resources")
        .into_iter()
        .filter(|r| r.get("enabled").and_then(Value::as_bool) != Some(false))
        .collect();
    let weight =
        |r: &Map<String, Value>| r.get("weight_cost").and_then(Value::as_i64).unwrap_or(50);
    resources.sort_by_key(|r| weight(r));
    let mut uris = Vec::new();
    for resource in resources {
        let Some(routed) = rule_match(resource, &e164) else {
            continue;
        };
        let gateways = resource
            .get("gateways")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for gw in gateways {
            if gw.get("enabled").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if let Some(uri) = gateway_uri(gw, &routed, &e164) {
                uris.push(uri);
            }
        }
    }
    uris
}

/// Kazoo's resource rules: no rules take every number; otherwise the first rule that matches
/// gives the number to dial (its first capture group, else the whole match). A rule that does
/// not compile takes nothing.
fn rule_match(resource: &Map<String, Value>, e164: &str) -> Option<String> {
    let rules: Vec<&str> = resource
        .get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if rules.is_empty() {
        return Some(e164.to_string());
    }
    for rule in rules {
        // Kazoo's (PCRE) dialect, compiled once per distinct rule.
        let Some(re) = crate::routing::pattern::cached(rule) else {
            continue;
        };
        if let Some(caps) = re.captures(e164) {
            let part = caps.get(1).or_else(|| caps.get(0))?;
            return Some(part.as_str().to_string());
        }
    }
    None
}

/// `sip:{prefix}{number}{suffix}@{server}:{port}`, the number in the gateway's
/// `invite_format`; a gateway `route` is used as it is.
fn gateway_uri(gw: &Value, routed: &str, e164: &str) -> Option<String> {
    let text = |k: &str| gw.get(k).and_then(Value::as_str).unwrap_or_default();
    if !text("route").is_empty() {
        return Some(text("route").to_string());
    }
    let server = text("server");
    if server.is_empty() {
        return None;
    }
    let digits = e164.trim_start_matches('+');
    let npan = if digits.len() == 11 && digits.starts_with('1') {
        &digits[1..]
    } else {
        digits
    };
    let number = match text("invite_format") {
        "e164" => e164.to_string(),
        "npan" => npan.to_string(),
        "1npan" => format!("1{npan}"),
        "strip_plus" => routed.trim_start_matches('+').to_string(),
        "username" if !text("username").is_empty() => text("username").to_string(),
        _ => routed.to_string(),
    };
    let port = gw
        .get("port")
        .and_then(Value::as_u64)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    Some(format!(
        "sip:{}{number}{}@{server}{port}",
        text("prefix"),
        text("suffix")
    ))
}

/// One rtjson route. `ring` (seconds) becomes the INVITE's final-response timer; a device's
/// address of record carries [`LOOKUP_PARAM`]; anything else gets its own URI as destination
/// so that the switch's registration lookup leaves it alone.
fn route(
    ctx: &Context<'_>,
    exit: &Exit,
    uri: &str,
    ring: Option<i64>,
    device_id: Option<&str>,
    lookup: bool,
) -> Value {
    let mut extra = format!(
        "X-Callflowd-Account: {}\r\nX-Callflowd-Callflow: {}\r\nX-Callflowd-Node: {}\r\nX-Callflowd-Module: {}\r\n",
        ctx.account_id, exit.callflow_id, exit.path, exit.module
    );
    if let Some(id) = device_id {
        extra.push_str(&format!("X-Callflowd-Device: {id}\r\n"));
    }
    let mut route = json!({
        "uri": uri,
        "headers": {"extra": extra},
    });
    if !lookup {
        route["dst_uri"] = json!(uri);
    }
    if let Some(seconds) = ring {
        route["fr_inv_timer"] = json!(seconds * 1000);
    }
    route
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::DocumentSet;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn carriers_are_cheapest_first_with_the_number_as_each_gateway_wants_it() {
        let mut docs = DocumentSet::new();
        docs.insert(
            "resources",
            "dear",
            obj(json!({"weight_cost": 80, "rules": ["^\\+1(\\d{10})$"],
                "gateways": [{"server": "10.0.0.2", "invite_format": "npan", "port": 5070}]})),
        );
        docs.insert(
            "resources",
            "cheap",
            obj(json!({"weight_cost": 10, "rules": ["^\\+1(\\d{10})$"],
                "gateways": [{"server": "10.0.0.1", "invite_format": "e164", "prefix": "99"},
                             {"server": "10.0.0.9", "enabled": false}]})),
        );
        docs.insert(
            "resources",
            "intl",
            obj(json!({"rules": ["^\\+44\\d+$"], "gateways": [{"server": "10.0.0.3"}]})),
        );
        assert_eq!(
            carrier_uris(&docs, "4155550100"),
            [
                "sip:99+14155550100@10.0.0.1",
                "sip:4155550100@10.0.0.2:5070"
            ]
        );
        assert_eq!(
            carrier_uris(&docs, "+442079460000"),
            ["sip:+442079460000@10.0.0.3"]
        );
    }
}
