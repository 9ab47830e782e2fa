//! The `temporal_route` callflow module: which child a call continues to at a given instant,
//! decided the way Kazoo's `cf_temporal_route` decides it, bugs included, with the reasons in
//! plain words.
//!
//! Owns: the route list (rule ids, child keys, rule sets), loading rule documents, the
//! first-match evaluation and its explanation, and the detection of the Kazoo quirks that
//! changed a result. Must not: read the clock or a store (the instant and the documents are
//! handed in), run the override actions (`action` is reported for the executor to play), or
//! decide what happens after the module (the executor resolves the child key).
//!
//! Submodules: `calendar` (Erlang date arithmetic), `recurrence` (next occurrence per cycle and
//! the window test), `rule` (reading rule documents), `clock` (time zones).

mod calendar;
mod clock;
mod recurrence;
mod rule;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use calendar::{date_to_gregorian_days, day_of_the_week, Fault, Int, Res, Ymd, DAY};
use clock::Zone;
use recurrence::{check_window, window_on, Cycle, LocalNow, Notes, Ordinal, Recurrence, Window};
use rule::{CycleField, Rule, StartSource};

pub use clock::{TimezoneSource, DEFAULT_TIMEZONE};

/// The child key of rules that come from the node's `rule_set`.
const RULE_SET_KEY: &str = "rule_set";
/// The default child.
const DEFAULT_KEY: &str = "_";

/// What the module decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The child to continue to: the matched rule's child key, or "_" (the executor falls back
    /// to "_" when the key has no child).
    pub child_key: String,
    /// The id of the rule document that matched.
    pub matched_rule: Option<String>,
    /// Every route examined, in order, with the reason for its outcome.
    pub checks: Vec<RuleCheck>,
    /// Kazoo behaviours that made this result differ from what the rules seem to say.
    pub quirks: Vec<Quirk>,
    /// Kazoo's module process would crash here: the executor continues to "_".
    pub crashed: bool,
    /// Kazoo's module would never finish (an endless loop): the call stays on this node, in
    /// silence, until the caller hangs up. `child_key` is "_" only as a placeholder.
    pub stalled: bool,
    /// The time zone name used (as written in the document it came from).
    pub timezone: String,
    pub timezone_source: TimezoneSource,
    /// The local wall-clock time the rules were compared with, e.g.
    /// "2026-03-10 10:15:00 (Tuesday)"; `None` when the time zone was unusable.
    pub local_time: Option<String>,
    /// Set when the node is an override action ("menu", "enable", "disable", "reset"): Kazoo
    /// then changes the `enabled` flag of the rules in `data.rules` (after a one-digit menu for
    /// "menu") instead of evaluating them, and continues to "_".
    pub action: Option<&'static str>,
}

/// One route as examined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleCheck {
    pub rule_id: String,
    /// The rule document's `name`, when the document was found and has one.
    pub name: Option<String>,
    /// The child key this route leads to.
    pub child_key: String,
    pub outcome: CheckOutcome,
    pub matched: bool,
    pub reason: String,
}

/// How a route ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// Inside its window now: this route wins.
    Active,
    /// `enabled: true`: wins without looking at the time.
    ForcedOn,
    /// `enabled: false`: skipped.
    ForcedOff,
    /// No cycle: skipped as invalid.
    Invalid,
    /// Its next occurrence has not started yet.
    NotYet,
    /// Its occurrence is over.
    Over,
    /// Its start date is after today: dropped before evaluation.
    StartsLater,
    /// No document with that id.
    NotFound,
    /// Loaded, but Kazoo crashed on a later route before evaluating any rule.
    NotEvaluated,
    /// Kazoo's process crashes on this route.
    Crashed,
    /// Kazoo's process never finishes on this route.
    Stalled,
}

/// A Kazoo behaviour that changed the result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quirk {
    pub id: &'static str,
    pub explanation: String,
}

/// Decides a `temporal_route` node.
///
/// `data`: the node's data. `child_keys`: the node's child keys in JSON order.
/// `account_timezone`: the account document's `timezone`, if any. `now`: the instant of the
/// call. Documents of type "temporal_rules" and "temporal_rules_sets" are read from `docs`.
pub fn evaluate(
    data: &Map<String, Value>,
    child_keys: &[&str],
    now: DateTime<Utc>,
    account_timezone: Option<&str>,
    docs: &dyn super::Documents,
) -> Decision {
    let (timezone, timezone_source) = clock::zone_name(data, account_timezone);
    let mut decision = Decision {
        child_key: DEFAULT_KEY.to_owned(),
        matched_rule: None,
        checks: Vec::new(),
        quirks: Vec::new(),
        crashed: false,
        stalled: false,
        timezone,
        timezone_source,
        local_time: None,
        action: None,
    };
    let routes = routes(data, child_keys, docs);
    // Kazoo resolves the zone and the local time before anything else, even for actions.
    let zone = match clock::parse_zone(&decision.timezone) {
        Ok(zone) => zone,
        Err(fault) => {
            let explanation = format!(
                "time zone '{}' cannot be used: {}; the call continues to '_'",
                decision.timezone,
                fault_text(fault)
            );
            decision.crashed = true;
            decision.quirks.push(Quirk {
                id: "timezone_crash",
                explanation,
            });
            return decision;
        }
    };
    let local = clock::local_now(zone, now);
    let mut local_time = String::with_capacity(32);
    let _ = write!(
        local_time,
        "{} {} ({})",
        D(local.date),
        Hms(local.second_of_day()),
        weekday_name(local.date)
    );
    decision.local_time = Some(local_time);
    if let Some(action) = override_action(data) {
        decision.action = Some(action);
        return decision;
    }
    let mut ctx = Ctx {
        zone,
        start_memo: None,
        local,
        timezone: &decision.timezone,
        checks: Vec::with_capacity(routes.len()),
        quirks: Vec::new(),
    };
    let outcome = run(&mut ctx, &routes, docs);
    decision.checks = ctx.checks;
    decision.quirks = ctx.quirks;
    match outcome {
        Outcome::Matched(i) => {
            let route = &routes[i];
            decision.child_key = route.child_key.to_string();
            decision.matched_rule = Some(route.rule_id.to_string());
            if route.from_rule_set {
                decision.quirks.push(Quirk {
                    id: "rule_set_child_key",
                    explanation: format!(
                        "rule '{}' came from the node's rule_set, so Kazoo continues to the child named \"rule_set\", not to a child named after the set{}",
                        route.rule_id,
                        if child_keys.contains(&RULE_SET_KEY) { "" } else { " (there is no such child, so the call falls back to '_')" }
                    ),
                });
            } else if !child_keys.contains(&route.child_key.as_ref()) {
                decision.quirks.push(Quirk {
                    id: "matched_child_missing",
                    explanation: format!(
                        "rule '{}' matched but the node has no child '{}', so the call continues to '_'",
                        route.rule_id, route.child_key
                    ),
                });
            }
        }
        Outcome::Default => {}
        Outcome::Crashed => decision.crashed = true,
        Outcome::Stalled => decision.stalled = true,
    }
    decision
}

/// One entry of Kazoo's route list (text borrowed from the node, its keys and the documents).
#[derive(Debug, Clone)]
struct Route<'a> {
    rule_id: Cow<'a, str>,
    child_key: Cow<'a, str>,
    /// Came from the node's `rule_set` (child key "rule_set").
    from_rule_set: bool,
}

/// `get_temporal_route/2`: ids from `data.rules`, then every child key but "_", then the
/// members of `data.rule_set`; then every route of the first two kinds that names a rule set
/// is replaced by the set's members (keeping the set id as child key). Duplicates stay.
fn routes<'a>(
    data: &'a Map<String, Value>,
    child_keys: &[&'a str],
    docs: &'a dyn super::Documents,
) -> Vec<Route<'a>> {
    let mut plain: Vec<Cow<'a, str>> = Vec::new();
    if let Some(Value::Array(ids)) = data.get("rules") {
        plain.extend(ids.iter().map(id_text));
    }
    let mut skipped_default = false;
    for &key in child_keys {
        if key == DEFAULT_KEY && !skipped_default {
            skipped_default = true;
            continue;
        }
        plain.push(Cow::Borrowed(key));
    }
    let mut set_members = Vec::new();
    if let Some(set_id) = data.get("rule_set").and_then(rule::to_binary) {
        if !set_id.is_empty() {
            set_members = rule_set_members(docs, &set_id);
        }
    }
    let mut out = Vec::with_capacity(plain.len() + set_members.len());
    for id in plain {
        // Routes of the first two kinds lead to the child named like the route.
        if id == RULE_SET_KEY {
            out.push(Route {
                child_key: id.clone(),
                rule_id: id,
                from_rule_set: false,
            });
            continue;
        }
        let members = rule_set_members(docs, &id);
        if members.is_empty() {
            out.push(Route {
                child_key: id.clone(),
                rule_id: id,
                from_rule_set: false,
            });
        } else {
            out.extend(members.into_iter().map(|m| Route {
                rule_id: m,
                child_key: id.clone(),
                from_rule_set: false,
            }));
        }
    }
    out.extend(set_members.into_iter().map(|m| Route {
        rule_id: m,
        child_key: Cow::Borrowed(RULE_SET_KEY),
        from_rule_set: true,
    }));
    out
}

/// An id as text (ids should be strings; anything else is spelled out and will not be found).
fn id_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// Kazoo opens any document with that id; rule documents and rule sets are the two kinds a
/// temporal route can name.
fn load_doc<'d>(docs: &'d dyn super::Documents, id: &str) -> Option<&'d Map<String, Value>> {
    docs.get("temporal_rules", id)
        .or_else(|| docs.get("temporal_rules_sets", id))
}

/// `get_rule_set/2`: the `temporal_rules` list of the rule set with that id, else none.
fn rule_set_members<'a>(docs: &'a dyn super::Documents, id: &str) -> Vec<Cow<'a, str>> {
    match docs
        .get("temporal_rules_sets", id)
        .and_then(|d| d.get("temporal_rules"))
    {
        Some(Value::Array(ids)) => ids.iter().map(id_text).collect(),
        _ => Vec::new(),
    }
}

/// The override actions Kazoo runs instead of evaluating.
fn override_action(data: &Map<String, Value>) -> Option<&'static str> {
    match data.get("action").and_then(rule::to_binary).as_deref() {
        Some("menu") => Some("menu"),
        Some("enable") => Some("enable"),
        Some("disable") => Some("disable"),
        Some("reset") => Some("reset"),
        _ => None,
    }
}

struct Ctx<'a> {
    zone: Zone,
    /// The last start-date conversion (rules of one account usually share a start date).
    start_memo: Option<(Int, Res<Ymd>)>,
    local: LocalNow,
    timezone: &'a str,
    checks: Vec<RuleCheck>,
    quirks: Vec<Quirk>,
}

enum Outcome {
    Matched(usize),
    Default,
    Crashed,
    Stalled,
}

/// A route after loading.
enum Slot {
    NotFound,
    StartsLater {
        name: String,
        start: Ymd,
        source: StartSource,
        forced_on: bool,
    },
    Built {
        rule: Rule,
        start: Ymd,
        source: StartSource,
    },
}

/// `get_temporal_rules/2` then `process_rules/3`. Kazoo loads every route before evaluating
/// any, so a document that makes the loader crash hides even an earlier matching rule.
fn run(ctx: &mut Ctx<'_>, routes: &[Route<'_>], docs: &dyn super::Documents) -> Outcome {
    let mut slots = Vec::with_capacity(routes.len());
    for route in routes {
        match load(ctx, route, docs) {
            Ok(slot) => slots.push(slot),
            Err((name, fault)) => {
                for (earlier, slot) in routes.iter().zip(&slots) {
                    let name = match slot {
                        Slot::NotFound => None,
                        Slot::StartsLater { name, .. } => Some(name.clone()),
                        Slot::Built { rule, .. } => Some(rule.name.clone()),
                    };
                    let (outcome, reason) = match slot {
                        Slot::NotFound => (
                            CheckOutcome::NotFound,
                            "no such rule document; skipped".to_owned(),
                        ),
                        _ => (
                            CheckOutcome::NotEvaluated,
                            "loaded, but never evaluated: Kazoo crashed loading a later rule"
                                .to_owned(),
                        ),
                    };
                    ctx.checks
                        .push(check(earlier, name, outcome, false, reason));
                }
                let reason = format!(
                    "Kazoo's module crashes loading this rule: {}; the call continues to '_'",
                    fault_text(fault)
                );
                ctx.checks
                    .push(check(route, name, CheckOutcome::Crashed, false, reason));
                ctx.quirks.push(Quirk {
                    id: "rule_load_crash",
                    explanation: format!(
                        "rule '{}' makes Kazoo crash while loading the rules ({}), so no rule is evaluated and the call continues to '_'",
                        route.rule_id,
                        fault_text(fault)
                    ),
                });
                return Outcome::Crashed;
            }
        }
    }
    for (i, (route, slot)) in routes.iter().zip(&slots).enumerate() {
        match slot {
            Slot::NotFound => {
                ctx.checks.push(check(
                    route,
                    None,
                    CheckOutcome::NotFound,
                    false,
                    "no such rule document; skipped".to_owned(),
                ));
            }
            Slot::StartsLater {
                name,
                start,
                source,
                forced_on,
            } => {
                let reason = match source {
                    StartSource::Document => format!(
                        "starts {} (local date), after today: dropped before evaluation",
                        fmt_date(*start)
                    ),
                    StartSource::Missing => format!(
                        "has no start_date; Kazoo's stand-in start date is {} (the local time read as UTC), after today: dropped before evaluation",
                        fmt_date(*start)
                    ),
                };
                if *source == StartSource::Missing {
                    ctx.quirks.push(Quirk {
                        id: "missing_start_date_as_utc",
                        explanation: format!(
                            "rule '{}' has no start_date; Kazoo reads the local wall-clock time as if it were UTC, which here gives {} (tomorrow), so the rule is dropped",
                            route.rule_id,
                            fmt_date(*start)
                        ),
                    });
                } else if *forced_on {
                    ctx.quirks.push(Quirk {
                        id: "forced_rule_dropped_by_start_date",
                        explanation: format!(
                            "rule '{}' is forced on (enabled: true) but starts {}, after today; Kazoo drops future rules before looking at 'enabled'",
                            route.rule_id,
                            fmt_date(*start)
                        ),
                    });
                }
                ctx.checks.push(check(
                    route,
                    Some(name.clone()),
                    CheckOutcome::StartsLater,
                    false,
                    reason,
                ));
            }
            Slot::Built {
                rule,
                start,
                source,
            } => match evaluate_rule(ctx, route, rule, *start, *source) {
                RuleResult::Matched => return Outcome::Matched(i),
                RuleResult::Skipped => {}
                RuleResult::Crashed => return Outcome::Crashed,
                RuleResult::Stalled => return Outcome::Stalled,
            },
        }
    }
    Outcome::Default
}

/// `maybe_build_rule/8` for one route: `Err` carries the rule name (when known) and the crash.
fn load(
    ctx: &mut Ctx<'_>,
    route: &Route<'_>,
    docs: &dyn super::Documents,
) -> Result<Slot, (Option<String>, Fault)> {
    let Some(doc) = load_doc(docs, &route.rule_id) else {
        return Ok(Slot::NotFound);
    };
    let fields = rule::Fields::of(doc);
    let name = rule::rule_name(&fields);
    let (seconds, source) = match rule::start_seconds(&fields) {
        Some(s) => (s, StartSource::Document),
        None => (ctx.local.secs, StartSource::Missing),
    };
    let converted = match ctx.start_memo {
        Some((memo_seconds, result)) if memo_seconds == seconds => result,
        _ => {
            let result = clock::start_date(ctx.zone, seconds);
            ctx.start_memo = Some((seconds, result));
            result
        }
    };
    let start = converted.map_err(|f| (Some(name.clone()), f))?;
    let start_midnight = date_to_gregorian_days(start)
        .map(|d| d * DAY)
        .map_err(|f| (Some(name.clone()), f))?;
    if start_midnight > ctx.local.secs {
        let forced_on = fields.enabled() == Some(true);
        return Ok(Slot::StartsLater {
            name,
            start,
            source,
            forced_on,
        });
    }
    let rule = match rule::build(&fields, name) {
        Ok(rule) => rule,
        Err(fault) => return Err((Some(rule::rule_name(&fields)), fault)),
    };
    Ok(Slot::Built {
        rule,
        start,
        source,
    })
}

enum RuleResult {
    Matched,
    Skipped,
    Crashed,
    Stalled,
}

fn check(
    route: &Route<'_>,
    name: Option<String>,
    outcome: CheckOutcome,
    matched: bool,
    reason: String,
) -> RuleCheck {
    RuleCheck {
        rule_id: route.rule_id.to_string(),
        name,
        child_key: route.child_key.to_string(),
        outcome,
        matched,
        reason,
    }
}

/// The schedule alone (what `process_rules/3` computes for a rule that is not forced).
fn schedule(rule: &Rule, cycle: Cycle, start: Ymd, local: &LocalNow) -> Res<(Window, Notes)> {
    let recurrence = Recurrence {
        cycle,
        interval: rule.interval,
        days: &rule.days,
        wdays: &rule.wdays,
        ordinal: &rule.ordinal,
        month: rule.month,
        start,
    };
    let mut notes = Notes::default();
    let window = check_window(
        &recurrence,
        rule.window_start,
        rule.window_stop,
        local,
        &mut notes,
    )?;
    Ok((window, notes))
}

fn schedule_active(rule: &Rule, start: Ymd, local: &LocalNow) -> Option<bool> {
    match rule.cycle {
        CycleField::Known(cycle) => schedule(rule, cycle, start, local)
            .ok()
            .map(|(w, _)| w.is_active()),
        _ => None,
    }
}

fn evaluate_rule(
    ctx: &mut Ctx<'_>,
    route: &Route<'_>,
    rule: &Rule,
    start: Ymd,
    source: StartSource,
) -> RuleResult {
    let summary = describe(rule, start, ctx.timezone);
    let name = Some(rule.name.clone());
    match rule.enabled {
        Some(false) => {
            if schedule_active(rule, start, &ctx.local) == Some(true) {
                ctx.quirks.push(Quirk {
                    id: "forced_off",
                    explanation: format!(
                        "rule '{}' is disabled (enabled: false) although its schedule is active now",
                        route.rule_id
                    ),
                });
            }
            let reason = format!("{summary}: forced off (enabled: false), skipped");
            ctx.checks
                .push(check(route, name, CheckOutcome::ForcedOff, false, reason));
            return RuleResult::Skipped;
        }
        Some(true) => {
            if schedule_active(rule, start, &ctx.local) != Some(true) {
                ctx.quirks.push(Quirk {
                    id: "forced_on",
                    explanation: format!(
                        "rule '{}' is forced on (enabled: true), so it wins although its schedule is not active now",
                        route.rule_id
                    ),
                });
            }
            let reason = format!("{summary}: forced on (enabled: true), time not checked");
            ctx.checks
                .push(check(route, name, CheckOutcome::ForcedOn, true, reason));
            return RuleResult::Matched;
        }
        None => {}
    }
    let cycle = match &rule.cycle {
        CycleField::Empty => {
            let reason = format!("{summary}: no cycle, skipped as invalid");
            ctx.checks
                .push(check(route, name, CheckOutcome::Invalid, false, reason));
            return RuleResult::Skipped;
        }
        CycleField::Other(text) => {
            let reason = format!(
                "{summary}: Kazoo's module crashes on the unknown cycle '{text}'; the call continues to '_'"
            );
            ctx.checks
                .push(check(route, name, CheckOutcome::Crashed, false, reason));
            ctx.quirks.push(Quirk {
                id: "unknown_cycle_crash",
                explanation: format!(
                    "rule '{}' has cycle '{text}', which Kazoo has no clause for: the module crashes and the call continues to '_' without trying later rules",
                    route.rule_id
                ),
            });
            return RuleResult::Crashed;
        }
        CycleField::Known(cycle) => *cycle,
    };
    let (window, notes) = match schedule(rule, cycle, start, &ctx.local) {
        Ok(found) => found,
        Err(fault) => return fault_result(ctx, route, rule, &summary, fault),
    };
    let local = ctx.local;
    let active = window.is_active();
    let mut reason = summary;
    write_window(&mut reason, rule, &window, &local);
    ctx.checks.push(check(
        route,
        name,
        if active {
            CheckOutcome::Active
        } else if matches!(window, Window::Before { .. }) {
            CheckOutcome::NotYet
        } else {
            CheckOutcome::Over
        },
        active,
        reason,
    ));
    detect_quirks(ctx, route, rule, cycle, start, source, &window, notes);
    if active {
        RuleResult::Matched
    } else {
        RuleResult::Skipped
    }
}

fn fault_result(
    ctx: &mut Ctx<'_>,
    route: &Route<'_>,
    rule: &Rule,
    summary: &str,
    fault: Fault,
) -> RuleResult {
    let name = Some(rule.name.clone());
    match fault {
        Fault::Crash(why) => {
            let reason = format!(
                "{summary}: Kazoo's module crashes here ({why}); the call continues to '_'"
            );
            ctx.checks
                .push(check(route, name, CheckOutcome::Crashed, false, reason));
            let id = if why.contains("function_clause") {
                "no_matching_clause_crash"
            } else if why.contains("badarith") {
                "zero_interval_crash"
            } else {
                "date_arithmetic_crash"
            };
            ctx.quirks.push(Quirk {
                id,
                explanation: format!(
                    "rule '{}' makes Kazoo's module crash ({why}), so the call continues to '_' without trying later rules",
                    route.rule_id
                ),
            });
            RuleResult::Crashed
        }
        Fault::Hang(why) => {
            let reason = format!("{summary}: Kazoo's module never finishes here ({why})");
            ctx.checks
                .push(check(route, name, CheckOutcome::Stalled, false, reason));
            ctx.quirks.push(Quirk {
                id: "endless_loop",
                explanation: format!(
                    "rule '{}' sends Kazoo into an endless loop ({why}): the call stays on this node until the caller hangs up",
                    route.rule_id
                ),
            });
            RuleResult::Stalled
        }
    }
}

/// Compares Kazoo's answer for a rule with the answer without one quirk at a time, and records
/// the quirks that made a difference.
#[allow(clippy::too_many_arguments)]
fn detect_quirks(
    ctx: &mut Ctx<'_>,
    route: &Route<'_>,
    rule: &Rule,
    cycle: Cycle,
    start: Ymd,
    source: StartSource,
    window: &Window,
    notes: Notes,
) {
    let local = ctx.local;
    let active = window.is_active();
    let today = local.date;
    let id = &route.rule_id;
    // Daily rules with an interval above 1 never fire on their start day.
    if cycle == Cycle::Daily && rule.interval.abs() > 1 && start == today && !active {
        if let Ok(w) = window_on(today, rule.window_start, rule.window_stop, &local) {
            if w.is_active() {
                ctx.quirks.push(Quirk {
                    id: "daily_interval_skips_start_day",
                    explanation: format!(
                        "rule '{id}' repeats every {} days from today ({}), but Kazoo's daily arithmetic never matches the start day itself",
                        rule.interval,
                        fmt_date(today)
                    ),
                });
            }
        }
    }
    // Days are used in the order listed, not sorted.
    if matches!(cycle, Cycle::Monthly | Cycle::Yearly)
        && !rule.days.is_empty()
        && rule.days.windows(2).any(|w| w[0] > w[1])
    {
        let mut sorted = rule.clone();
        sorted.days.sort();
        if let Ok((w, _)) = schedule(&sorted, cycle, start, &local) {
            if w.is_active() != active {
                ctx.quirks.push(Quirk {
                    id: "days_unsorted",
                    explanation: format!(
                        "rule '{id}' lists days {:?} out of order; Kazoo takes the first listed day after yesterday's, so {}",
                        rule.days,
                        if active { "it matches today although sorted days would not" } else { "today's day is skipped although it is listed" }
                    ),
                });
            }
        }
    }
    if active && notes.day_spilled {
        ctx.quirks.push(Quirk {
            id: "day_spills_into_next_month",
            explanation: format!(
                "rule '{id}' names a day its month does not have; Kazoo carries it into the next month, so it matches today ({})",
                fmt_date(today)
            ),
        });
    }
    if active && notes.ordinal_spilled {
        ctx.quirks.push(Quirk {
            id: "ordinal_weekday_spills",
            explanation: format!(
                "rule '{id}' asks for an occurrence of a weekday the month does not have; Kazoo counts on into the next month, so it matches today ({})",
                fmt_date(today)
            ),
        });
    }
    if let Window::Active { closes, .. } = window {
        if *closes == local.secs {
            ctx.quirks.push(Quirk {
                id: "window_end_inclusive",
                explanation: format!(
                    "rule '{id}' matches at exactly its closing time {}: Kazoo includes both ends of the window",
                    fmt_clock(rule.window_stop)
                ),
            });
        }
    }
    if active && rule.uses_wensday && day_of_the_week(today) == Ok(3) {
        ctx.quirks.push(Quirk {
            id: "wensday",
            explanation: format!(
                "rule '{id}' spells Wednesday \"wensday\"; Kazoo accepts that spelling, so it matches today"
            ),
        });
    }
    if source == StartSource::Missing && start != today {
        let mut fixed = Notes::default();
        let recurrence = Recurrence {
            cycle,
            interval: rule.interval,
            days: &rule.days,
            wdays: &rule.wdays,
            ordinal: &rule.ordinal,
            month: rule.month,
            start: today,
        };
        if let Ok(w) = check_window(
            &recurrence,
            rule.window_start,
            rule.window_stop,
            &local,
            &mut fixed,
        ) {
            if w.is_active() != active {
                ctx.quirks.push(Quirk {
                    id: "missing_start_date_as_utc",
                    explanation: format!(
                        "rule '{id}' has no start_date; Kazoo reads the local wall-clock time as if it were UTC, giving start {} instead of today, which changes the answer",
                        fmt_date(start)
                    ),
                });
            }
        }
    }
}

fn fault_text(fault: Fault) -> &'static str {
    match fault {
        Fault::Crash(why) | Fault::Hang(why) => why,
    }
}

// ---- words ------------------------------------------------------------------------------
// Reasons are written straight into one buffer per rule (the explanation is part of every
// answer, so it must stay cheap).

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const SHORT_WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn weekday_name(date: Ymd) -> &'static str {
    match day_of_the_week(date) {
        Ok(n @ 1..=7) => WEEKDAYS[(n - 1) as usize],
        _ => "?",
    }
}

/// Every two-digit number, for writing clock times and dates without the formatting
/// machinery (reasons are full of them).
const PAIRS: &str = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// Writes `n` zero-padded to `width` (2 or 4) digits.
fn pad(f: &mut fmt::Formatter<'_>, n: Int, width: usize) -> fmt::Result {
    let pair = |v: Int| {
        PAIRS
            .get((v * 2) as usize..(v * 2 + 2) as usize)
            .unwrap_or("??")
    };
    match width {
        2 if (0..100).contains(&n) => f.write_str(pair(n)),
        4 if (0..10_000).contains(&n) => {
            f.write_str(pair(n / 100))?;
            f.write_str(pair(n % 100))
        }
        _ => write!(f, "{n:0width$}"),
    }
}

/// A date as YYYY-MM-DD.
struct D(Ymd);

impl fmt::Display for D {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        pad(f, self.0.y, 4)?;
        f.write_str("-")?;
        pad(f, self.0.m, 2)?;
        f.write_str("-")?;
        pad(f, self.0.d, 2)
    }
}

/// Seconds after midnight as HH:MM (HH:MM:SS when there are seconds).
struct Clock(Int);

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let s = self.0.abs();
        if s % 60 == 0 {
            write!(f, "{sign}{:02}:{:02}", s / 3600, s % 3600 / 60)
        } else {
            write!(
                f,
                "{sign}{:02}:{:02}:{:02}",
                s / 3600,
                s % 3600 / 60,
                s % 60
            )
        }
    }
}

/// Seconds after midnight as HH:MM (the "now" of a reason).
struct Hm(Int);

impl fmt::Display for Hm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        pad(f, self.0 / 3600, 2)?;
        f.write_str(":")?;
        pad(f, self.0 % 3600 / 60, 2)
    }
}

fn fmt_date(date: Ymd) -> String {
    D(date).to_string()
}

fn fmt_clock(secs: Int) -> String {
    Clock(secs).to_string()
}

/// Seconds after midnight as HH:MM:SS.
struct Hms(Int);

impl fmt::Display for Hms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        pad(f, self.0 / 3600, 2)?;
        f.write_str(":")?;
        pad(f, self.0 % 3600 / 60, 2)?;
        f.write_str(":")?;
        pad(f, self.0 % 60, 2)
    }
}

fn write_every(out: &mut String, interval: Int, unit: &str, start: Ymd) {
    if interval == 1 {
        let _ = write!(out, "every {unit}");
    } else {
        let _ = write!(out, "every {interval} {unit}s from {}", D(start));
    }
}

fn write_weekdays(out: &mut String, wdays: &[Int]) {
    if wdays == [1, 2, 3, 4, 5, 6, 7] {
        out.push_str("every day of the week");
        return;
    }
    let name = |d: Int| SHORT_WEEKDAYS.get((d - 1) as usize).copied().unwrap_or("?");
    let mut i = 0;
    while i < wdays.len() {
        let mut j = i;
        while j + 1 < wdays.len() && wdays[j + 1] == wdays[j] + 1 {
            j += 1;
        }
        if i > 0 {
            out.push(',');
        }
        if j - i >= 2 {
            let _ = write!(out, "{}-{}", name(wdays[i]), name(wdays[j]));
        } else {
            for (k, &d) in wdays[i..=j].iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push_str(name(d));
            }
        }
        i = j + 1;
    }
}

fn write_ordinal(out: &mut String, o: &Ordinal) {
    match o {
        Ordinal::Nth(n) => out.push_str(
            ["first", "second", "third", "fourth", "fifth"]
                .get(*n as usize)
                .copied()
                .unwrap_or("?"),
        ),
        Ordinal::Every => out.push_str("every"),
        Ordinal::Last => out.push_str("last"),
        Ordinal::Other(s) => {
            let _ = write!(out, "'{s}'");
        }
    }
}

fn write_month(out: &mut String, m: Int) {
    match m {
        1..=12 => out.push_str(MONTHS[(m - 1) as usize]),
        other => {
            let _ = write!(out, "month {other}");
        }
    }
}

fn write_days(out: &mut String, days: &[Int]) {
    for (k, d) in days.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        let _ = write!(out, "{d}");
    }
}

fn write_weekday_part(out: &mut String, rule: &Rule) {
    match rule.wdays.as_slice() {
        [one] => {
            write_ordinal(out, &rule.ordinal);
            out.push(' ');
            out.push_str(WEEKDAYS.get((one - 1) as usize).copied().unwrap_or("?"));
        }
        many => {
            out.push_str("weekdays ");
            write_weekdays(out, many);
            out.push_str(" (Kazoo needs exactly one)");
        }
    }
}

/// "'Weekdays' (weekly, every week, mon-fri, 09:00-17:00 America/New_York)".
fn describe(rule: &Rule, start: Ymd, tz: &str) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(out, "'{}' (", rule.name);
    match &rule.cycle {
        CycleField::Empty => out.push_str("no cycle"),
        CycleField::Other(s) => {
            let _ = write!(out, "cycle '{s}'");
        }
        CycleField::Known(Cycle::Date) => {
            let _ = write!(out, "on {}", D(start));
        }
        CycleField::Known(Cycle::Daily) => {
            out.push_str("daily, ");
            write_every(&mut out, rule.interval, "day", start);
        }
        CycleField::Known(Cycle::Weekly) => {
            out.push_str("weekly, ");
            write_every(&mut out, rule.interval, "week", start);
            out.push_str(", ");
            write_weekdays(&mut out, &rule.wdays);
        }
        CycleField::Known(Cycle::Monthly) => {
            out.push_str("monthly, ");
            write_every(&mut out, rule.interval, "month", start);
            out.push_str(", ");
            if rule.days.is_empty() {
                write_weekday_part(&mut out, rule);
            } else {
                out.push_str("day ");
                write_days(&mut out, &rule.days);
            }
        }
        CycleField::Known(Cycle::Yearly) => {
            out.push_str("yearly, ");
            write_every(&mut out, rule.interval, "year", start);
            out.push_str(", ");
            if rule.days.is_empty() {
                write_weekday_part(&mut out, rule);
                out.push_str(" of ");
                write_month(&mut out, rule.month);
            } else {
                write_month(&mut out, rule.month);
                out.push(' ');
                write_days(&mut out, &rule.days);
            }
        }
    }
    if rule.window_start == 0 && rule.window_stop == DAY {
        let _ = write!(out, ", all day {tz})");
    } else {
        let _ = write!(
            out,
            ", {}-{} {tz})",
            Clock(rule.window_start),
            Clock(rule.window_stop)
        );
    }
    out
}

/// Appends ": <what the window test found>" to a rule's summary.
fn write_window(out: &mut String, rule: &Rule, window: &Window, local: &LocalNow) {
    let today = weekday_name(local.date);
    let now = Hm(local.second_of_day());
    let _ = match window {
        Window::Active { .. } => write!(out, ": active, today is {today} {now}"),
        Window::Before { base, .. } if *base == local.date => write!(
            out,
            ": not active: today's window opens at {} (now {today} {now})",
            Clock(rule.window_start)
        ),
        Window::Before { base, .. } => write!(
            out,
            ": not active: next occurrence is {} {} (now {today} {} {now})",
            weekday_name(*base),
            D(*base),
            D(local.date)
        ),
        Window::After { base, .. } if *base == local.date => write!(
            out,
            ": not active: today's window closed at {} (now {today} {now})",
            Clock(rule.window_stop)
        ),
        Window::After { base, .. } => write!(
            out,
            ": not active: the occurrence Kazoo computes, {} {}, is already over (now {today} {} {now})",
            weekday_name(*base),
            D(*base),
            D(local.date)
        ),
    };
}
