//! `pattern_never_routes`: a pattern that compiles but that no number reaches (it matches no
//! number of printable characters, e.g. `^1$2`), or that does not compile (Kazoo skips it).

use super::{Ctx, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "pattern_never_routes",
    severity: Severity::Error,
    summary: "a pattern no number can reach",
};

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let patterns = crate::domain::callflow::string_list(ctx.doc, "patterns");
    for r in ctx.patterns {
        let Some(nw) = &r.never_wins else { continue };
        if !matches!(nw.reason, "no_number" | "does_not_compile") || !r.exact {
            continue;
        }
        let i = patterns.iter().position(|p| *p == r.pattern).unwrap_or(0);
        out.push(ctx.finding(
            &RULE,
            format!("patterns.{i}"),
            format!(
                "pattern {} never routes: {} (method: {})",
                r.pattern, nw.message, r.method
            ),
            Some("fix the anchors or delete the pattern".into()),
        ));
    }
}
