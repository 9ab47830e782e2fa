//! `unreachable_child`: a child key the node's module can never take (per the engine's module
//! table), including `#` under a menu (it ends digit collection) and menu keys longer than the
//! menu collects.

use crate::engine::modules::{child_keys, ChildKeys};

use super::{Ctx, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "unreachable_child",
    severity: Severity::Warning,
    summary: "a child key the module can never take",
};

/// Kazoo's menu default for `max_extension_length` (`cf_menu` record).
const MENU_MAX_EXTENSION_LENGTH: usize = 4;

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for node in super::nodes(ctx.doc) {
        let kind = child_keys(node.module);
        for (key, _) in &node.children {
            if *key == "_" {
                continue;
            }
            let path = format!("{}.children.{key}", node.path);
            let why = match kind {
                ChildKeys::Underscore => Some(format!(
                    "the {} module only ever continues to \"_\"",
                    if node.module.is_empty() {
                        "(missing)"
                    } else {
                        node.module
                    }
                )),
                ChildKeys::Named(keys) => {
                    let absolute = node.module == "check_cid"
                        && node
                            .data
                            .and_then(|d| d.get("use_absolute_mode"))
                            .and_then(|v| v.as_bool())
                            == Some(true);
                    (!absolute && !keys.contains(key)).then(|| {
                        format!(
                            "{} only takes {}",
                            node.module,
                            keys.iter()
                                .map(|k| format!("\"{k}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                }
                ChildKeys::Numeric => key
                    .parse::<i64>()
                    .is_err()
                    .then(|| format!("{} takes only numeric thresholds", node.module)),
                ChildKeys::Menu => menu_key(ctx, &node, key),
                ChildKeys::Failure | ChildKeys::CarrierFailure | ChildKeys::Any => None,
            };
            if let Some(why) = why {
                out.push(ctx.finding(
                    &RULE,
                    path,
                    format!("child \"{key}\" is never taken: {why}"),
                    Some("delete the child, or move it under a key the module takes".into()),
                ));
            }
        }
    }
}

fn menu_key(ctx: &Ctx<'_>, node: &super::Node<'_>, key: &str) -> Option<String> {
    if key == "timeout" || key == "max_retries" {
        return None;
    }
    if key.contains('#') {
        return Some("'#' ends digit collection, so no caller can enter it".into());
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '*' | 'A' | 'B' | 'C' | 'D'))
    {
        return Some(
            "a menu child is keyed by the digits pressed, \"timeout\" or \"max_retries\"".into(),
        );
    }
    let max = node
        .data_str("id")
        .and_then(|id| ctx.live(id, "menu"))
        .and_then(|m| m.get("max_extension_length"))
        .and_then(|v| v.as_u64())
        .map(|n| n as usize)
        .unwrap_or(MENU_MAX_EXTENSION_LENGTH);
    (key.len() > max).then(|| format!("the menu collects at most {max} digits"))
}
