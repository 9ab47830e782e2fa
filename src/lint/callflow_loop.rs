//! `callflow_loop`: callflows that jump into each other in a cycle (spelled out), and
//! `branch_budget`: a chain of jumps longer than Kazoo's branch budget (50: each `callflow`
//! jump spends one; at zero the call is hung up).

use std::collections::HashMap;

use super::{Ctx, Doc, Finding, Rule, Severity};

pub const RULE: Rule = Rule {
    id: "callflow_loop",
    severity: Severity::Warning,
    summary: "callflows that jump into each other in a cycle",
};

pub const BUDGET_RULE: Rule = Rule {
    id: "branch_budget",
    severity: Severity::Error,
    summary: "a chain of callflow jumps longer than Kazoo's branch budget",
};

/// `callflow.max_branch_count`'s default.
pub const BRANCH_BUDGET: usize = 50;

/// `(path of the jump node, target id, on the flow's main line)` for each `callflow` node.
fn jumps(doc: &Doc) -> Vec<(String, String, bool)> {
    super::nodes(doc)
        .into_iter()
        .filter(|n| n.module == "callflow")
        .filter_map(|n| {
            let target = n.data?.get("id")?.as_str()?.to_string();
            let main_line = n
                .path
                .strip_prefix("flow")
                .is_some_and(|rest| rest.split(".children.").all(|k| k.is_empty() || k == "_"));
            Some((n.path.clone(), target, main_line))
        })
        .collect()
}

pub fn check(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let graph: HashMap<&str, Vec<(String, String, bool)>> = ctx
        .snapshot
        .callflows
        .iter()
        .map(|(id, doc)| (id.as_str(), jumps(doc)))
        .collect();
    // Cycles through this callflow: for each of its jumps, a shortest path back (BFS).
    for (path, target, main_line) in graph.get(ctx.id).cloned().unwrap_or_default() {
        if let Some(cycle) = path_back(&graph, &target, ctx.id) {
            let all_main = main_line && cycle.iter().all(|(_, _, m)| *m);
            let mut spelled = vec![format!("{} ({path})", ctx.id)];
            spelled.extend(cycle.iter().map(|(id, p, _)| format!("{id} ({p})")));
            spelled.push(ctx.id.to_string());
            let mut finding = ctx.finding(
                &RULE,
                path,
                format!(
                    "loop between callflows: {}{}",
                    spelled.join(" -> "),
                    if all_main {
                        "; every jump is on its flow's main line, so a call that reaches it loops until Kazoo's branch budget hangs it up"
                    } else {
                        ""
                    }
                ),
                Some("make sure a caller choice or a terminal node breaks the cycle".into()),
            );
            if all_main {
                finding.severity = Severity::Error;
            }
            out.push(finding);
        }
    }
    // The longest chain of jumps without repeating a callflow.
    let mut memo = HashMap::new();
    let mut on_path = Vec::new();
    let depth = longest(&graph, ctx.id, &mut memo, &mut on_path);
    if depth > BRANCH_BUDGET {
        out.push(ctx.finding(
            &BUDGET_RULE,
            "flow",
            format!("a call can jump through {depth} callflows in a row; Kazoo hangs up after {BRANCH_BUDGET}"),
            Some("flatten the chain of callflow nodes".into()),
        ));
    }
}

/// A shortest chain of jumps from `from` to `to`: `(callflow, jump path, main line)` per hop,
/// `from` first.
fn path_back(
    graph: &HashMap<&str, Vec<(String, String, bool)>>,
    from: &str,
    to: &str,
) -> Option<Vec<(String, String, bool)>> {
    let mut prev: HashMap<String, (String, String, bool)> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([from.to_string()]);
    let mut seen = std::collections::HashSet::from([from.to_string()]);
    while let Some(cur) = queue.pop_front() {
        for (path, next, main) in graph.get(cur.as_str()).into_iter().flatten() {
            if next == to {
                let mut hops = vec![(cur.clone(), path.clone(), *main)];
                let mut at = cur.clone();
                while let Some((p, path, main)) = prev.get(&at) {
                    hops.push((p.clone(), path.clone(), *main));
                    at = p.clone();
                }
                hops.reverse();
                return Some(hops);
            }
            if seen.insert(next.clone()) {
                prev.insert(next.clone(), (cur.clone(), path.clone(), *main));
                queue.push_back(next.clone());
            }
        }
    }
    None
}

fn longest(
    graph: &HashMap<&str, Vec<(String, String, bool)>>,
    id: &str,
    memo: &mut HashMap<String, usize>,
    on_path: &mut Vec<String>,
) -> usize {
    if let Some(d) = memo.get(id) {
        return *d;
    }
    if on_path.iter().any(|p| p == id) || on_path.len() > 4 * BRANCH_BUDGET {
        return 0;
    }
    on_path.push(id.to_string());
    let mut best = 0;
    for (_, next, _) in graph.get(id).into_iter().flatten() {
        best = best.max(1 + longest(graph, next, memo, on_path));
    }
    on_path.pop();
    memo.insert(id.to_string(), best);
    best
}
