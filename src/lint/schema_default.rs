//! `schema_default_differs`: a value left to a default where Kazoo's schema and Kazoo's code
//! disagree (docs/simulation.md and the execution reference list them): a `device` node's
//! `timeout` (schema 0, code 20 s) and a menu's `hunt` (schema true, code false: documents
//! written through the API carry `true`, so dialled extensions leave the menu).

use serde_json::Value;

use super::{Ctx, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "schema_default_differs",
    severity: Severity::Info,
    summary: "a default where Kazoo's schema and code disagree",
};

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for node in super::nodes(ctx.doc) {
        match node.module {
            "device" => {
                let timeout = node.data.and_then(|d| d.get("timeout"));
                if timeout.is_none() || timeout.and_then(Value::as_u64) == Some(0) {
                    out.push(ctx.finding(
                        &RULE,
                        format!("{}.data.timeout", node.path),
                        "device timeout is left to a default: the schema's is 0, Kazoo's code rings for 20 s",
                        Some("set \"timeout\" explicitly (e.g. 20)".into()),
                    ));
                }
            }
            "menu" => {
                let Some(id) = node.data_str("id") else {
                    continue;
                };
                let Some(menu) = ctx.live(id, "menu") else {
                    continue;
                };
                if menu.get("hunt").and_then(Value::as_bool) != Some(false)
                    && menu.get("hunt_allow").is_none()
                {
                    out.push(ctx.finding(
                        &RULE,
                        format!("{}.data.id", node.path),
                        format!("menu {id} hunts (the schema's default is true, Kazoo's code defaults to false): any extension a caller dials from it reaches that callflow"),
                        Some("set \"hunt\": false on the menu, or restrict it with \"hunt_allow\"".into()),
                    ));
                }
            }
            _ => {}
        }
    }
}
