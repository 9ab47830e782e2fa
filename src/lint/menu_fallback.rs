//! `menu_no_fallback`: a menu with neither a `timeout` child, nor `_`, nor `max_retries`: a
//! caller who presses nothing (or only wrong keys) hears the greeting again and again and is
//! then hung up with "goodbye".

use super::{Ctx, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "menu_no_fallback",
    severity: Severity::Warning,
    summary: "a menu with neither a timeout branch nor `_`",
};

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for node in super::nodes(ctx.doc) {
        if node.module != "menu" {
            continue;
        }
        let has = |k: &str| node.children.iter().any(|(key, _)| *key == k);
        if !has("timeout") && !has("_") && !has("max_retries") {
            out.push(ctx.finding(
                &RULE,
                node.path.clone(),
                "menu has neither a \"timeout\" child nor \"_\": callers who press nothing or a wrong key are hung up after the retries",
                Some("add a \"_\" child (an operator, a voicemail box) or a \"timeout\" child".into()),
            ));
        }
    }
}
