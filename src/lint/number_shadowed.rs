//! `number_also_matched`: a number of this callflow that other callflows' patterns also match.
//! Exact numbers win, so the call is fine; the finding shows whose pattern is broader than its
//! author may think (a feature code `*5` pattern that would take `*56`).

use std::collections::BTreeSet;

use super::{Ctx, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "number_also_matched",
    severity: Severity::Info,
    summary: "a number other callflows' patterns also match (exact numbers win)",
};

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (i, number) in crate::domain::callflow::string_list(ctx.doc, "numbers")
        .iter()
        .enumerate()
    {
        let others: BTreeSet<String> = ctx
            .snapshot
            .table
            .pattern_hits(number)
            .into_iter()
            .filter(|h| h.callflow_id != ctx.id)
            .map(|h| format!("{} (callflow {})", h.pattern, h.callflow_id))
            .collect();
        if others.is_empty() {
            continue;
        }
        out.push(ctx.finding(
            &RULE,
            format!("numbers.{i}"),
            format!(
                "{number} is also matched by {}; the exact number wins",
                others.into_iter().collect::<Vec<_>>().join(", ")
            ),
            None,
        ));
    }
}
