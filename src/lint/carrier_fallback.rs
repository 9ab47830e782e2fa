//! `carrier_underscore_unused`: a `resources` or `offnet` node with a `_` child. Kazoo never
//! takes it on failure (`cf_resources` tries a child named by the hangup cause, then by the
//! `sip:` code, then stops with the cause); on success the call is over.

use crate::engine::modules::{child_keys, ChildKeys};

use super::{Ctx, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "carrier_underscore_unused",
    severity: Severity::Warning,
    summary: "`_` under resources/offnet, never used on failure",
};

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for node in super::nodes(ctx.doc) {
        if child_keys(node.module) != ChildKeys::CarrierFailure {
            continue;
        }
        if node.children.iter().any(|(k, _)| *k == "_") {
            out.push(ctx.finding(
                &RULE,
                format!("{}.children._", node.path),
                format!("\"_\" under {} is never taken: on failure Kazoo only tries a child named by the hangup cause or sip code, then hangs up", node.module),
                Some("key the fallback by the failures you expect (e.g. NO_ROUTE_DESTINATION, sip:503), or jump here from a callflow node whose \"_\" holds the fallback".into()),
            ));
        }
    }
}
