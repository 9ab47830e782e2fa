//! `pattern_shadowed`: a pattern that never wins: every number it matches is an exact number
//! of some callflow, or goes to another pattern (a longer capture, or the same length tried
//! first). The verdict names the method (proved by enumeration or DFA inclusion, or only
//! observed in sampling) and an example number with where it goes.

use super::{Ctx, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "pattern_shadowed",
    severity: Severity::Warning,
    summary: "a pattern that another pattern or an exact number always beats",
};

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let patterns = crate::domain::callflow::string_list(ctx.doc, "patterns");
    for r in ctx.patterns {
        let Some(nw) = &r.never_wins else { continue };
        if matches!(nw.reason, "no_number" | "does_not_compile") && r.exact {
            continue;
        }
        let i = patterns.iter().position(|p| *p == r.pattern).unwrap_or(0);
        let proof = if r.exact {
            format!("proved by {}", r.method)
        } else {
            format!("observed over {} sampled numbers, not proved", r.tried)
        };
        out.push(ctx.finding(
            &RULE,
            format!("patterns.{i}"),
            format!("pattern {} never wins: {} ({proof})", r.pattern, nw.message),
            Some("narrow the other pattern, widen this pattern's capture, or delete it".into()),
        ));
    }
}
