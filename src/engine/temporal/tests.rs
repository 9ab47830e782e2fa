//! Scenario tests for temporal routes: every cycle and every reproduced Kazoo quirk on
//! concrete dates, DST changes, and a property test over random rules.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::{evaluate, CheckOutcome, Decision};
use crate::engine::Documents;

/// Documents held in memory, keyed by (type, id).
#[derive(Default)]
struct Docs {
    by_id: HashMap<(String, String), Map<String, Value>>,
}

impl Docs {
    fn rule(mut self, id: &str, doc: Value) -> Self {
        self.by_id
            .insert(("temporal_rules".into(), id.into()), obj(doc));
        self
    }
    fn set(mut self, id: &str, members: &[&str]) -> Self {
        self.by_id.insert(
            ("temporal_rules_sets".into(), id.into()),
            obj(json!({"name": id, "temporal_rules": members})),
        );
        self
    }
}

impl Documents for Docs {
    fn get(&self, doc_type: &str, id: &str) -> Option<&Map<String, Value>> {
        self.by_id.get(&(doc_type.to_owned(), id.to_owned()))
    }
    fn owned_by(&self, _: &str, _: &str) -> Vec<&Map<String, Value>> {
        Vec::new()
    }
    fn all(&self, doc_type: &str) -> Vec<&Map<String, Value>> {
        self.by_id
            .iter()
            .filter(|((t, _), _)| t == doc_type)
            .map(|(_, d)| d)
            .collect()
    }
    fn account(&self) -> Option<&Map<String, Value>> {
        None
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// An instant given as local wall time in `tz` (unambiguous times only).
fn at(tz: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    let zone: chrono_tz::Tz = tz.parse().expect("known zone");
    zone.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test instant")
        .with_timezone(&Utc)
}

/// Gregorian seconds of local midnight... as UTC midnight of the date (what API-created
/// rules typically store).
fn gsecs(y: i32, mo: u32, d: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, 0, 0, 0)
        .single()
        .expect("valid date")
        .timestamp()
        + 62_167_219_200
}

/// Evaluates one rule doc (id "r", child "r") in UTC at `now`.
fn one(rule: Value, now: DateTime<Utc>) -> Decision {
    let docs = Docs::default().rule("r", rule);
    let data = obj(json!({"rules": ["r"], "timezone": "UTC"}));
    evaluate(&data, &["r", "_"], now, None, &docs)
}

fn matches(rule: Value, now: DateTime<Utc>) -> bool {
    let d = one(rule, now);
    assert!(!d.crashed && !d.stalled, "unexpected fault: {d:#?}");
    d.child_key == "r"
}

fn quirk_ids(d: &Decision) -> Vec<&'static str> {
    d.quirks.iter().map(|q| q.id).collect()
}

fn noon(y: i32, mo: u32, d: u32) -> DateTime<Utc> {
    at("UTC", y, mo, d, 12, 0)
}

// ---- cycles --------------------------------------------------------------------------

#[test]
fn date_cycle_matches_only_its_day() {
    let rule = json!({"cycle": "date", "start_date": gsecs(2026, 7, 4)});
    assert!(matches(rule.clone(), noon(2026, 7, 4)));
    assert!(!matches(rule.clone(), noon(2026, 7, 5)));
    // Before the date the rule is dropped as starting in the future.
    let d = one(rule, noon(2026, 7, 3));
    assert_eq!(d.checks[0].outcome, CheckOutcome::StartsLater);
}

#[test]
fn daily_interval_three_skips_the_start_day() {
    // [verified-run] start 2021-03-01, every 3 days: Mar 1 no, Mar 4 yes, Mar 7 yes.
    let rule = json!({"cycle": "daily", "interval": 3, "start_date": gsecs(2021, 3, 1)});
    let d = one(rule.clone(), noon(2021, 3, 1));
    assert_eq!(d.child_key, "_");
    assert!(
        quirk_ids(&d).contains(&"daily_interval_skips_start_day"),
        "{d:#?}"
    );
    assert!(matches(rule.clone(), noon(2021, 3, 4)));
    assert!(matches(rule.clone(), noon(2021, 3, 7)));
    for day in [2, 3, 5, 6, 8] {
        assert!(!matches(rule.clone(), noon(2021, 3, day)), "Mar {day}");
    }
    // Interval 1 matches every day including the start.
    let every = json!({"cycle": "daily", "start_date": gsecs(2021, 3, 1)});
    assert!(matches(every, noon(2021, 3, 1)));
}

#[test]
fn weekly_biweekly_monday_friday() {
    // [verified-run] Mon/Fri every second week from Monday 2021-03-01.
    let rule = json!({"cycle": "weekly", "interval": 2, "wdays": ["friday", "monday"],
                      "start_date": gsecs(2021, 3, 1)});
    let yes = [(3, 1), (3, 5), (3, 15), (3, 19), (3, 29), (4, 2)];
    let no = [(3, 2), (3, 8), (3, 12), (3, 22), (3, 26), (3, 3)];
    for (m, d) in yes {
        assert!(matches(rule.clone(), noon(2021, m, d)), "{m}-{d}");
    }
    for (m, d) in no {
        assert!(!matches(rule.clone(), noon(2021, m, d)), "{m}-{d}");
    }
}

#[test]
fn weekly_window_both_ends_inclusive() {
    let rule = json!({"name": "Weekdays", "cycle": "weekly",
                      "wdays": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                      "time_window_start": 32400, "time_window_stop": 61200,
                      "start_date": gsecs(2011, 1, 1)});
    // Tuesday 2026-03-10.
    assert!(matches(rule.clone(), at("UTC", 2026, 3, 10, 9, 0)));
    assert!(!matches(rule.clone(), at("UTC", 2026, 3, 10, 8, 59)));
    let d = one(rule.clone(), at("UTC", 2026, 3, 10, 17, 0));
    assert_eq!(d.child_key, "r");
    assert!(quirk_ids(&d).contains(&"window_end_inclusive"));
    assert!(!matches(rule.clone(), at("UTC", 2026, 3, 10, 17, 1)));
    assert!(!matches(rule, at("UTC", 2026, 3, 14, 12, 0)));
}

#[test]
fn monthly_unsorted_days_never_match_the_earlier_day() {
    // [verified-run] days [20, 5]: the 20th matches, the 5th never does.
    let rule = json!({"cycle": "monthly", "days": [20, 5], "start_date": gsecs(2011, 1, 1)});
    assert!(matches(rule.clone(), noon(2021, 3, 20)));
    let d = one(rule.clone(), noon(2021, 3, 5));
    assert_eq!(d.child_key, "_");
    assert!(quirk_ids(&d).contains(&"days_unsorted"), "{d:#?}");
    let sorted = json!({"cycle": "monthly", "days": [5, 20], "start_date": gsecs(2011, 1, 1)});
    assert!(matches(sorted, noon(2021, 3, 5)));
}

#[test]
fn monthly_day_31_spills_into_next_month() {
    // [verified-run] day 31 fires on May 1, not on April 30.
    let rule = json!({"cycle": "monthly", "days": [31], "start_date": gsecs(2011, 1, 1)});
    assert!(!matches(rule.clone(), noon(2021, 4, 30)));
    let d = one(rule.clone(), noon(2021, 5, 1));
    assert_eq!(d.child_key, "r");
    assert!(quirk_ids(&d).contains(&"day_spills_into_next_month"));
    assert!(matches(rule, noon(2021, 5, 31)));
}

#[test]
fn monthly_fifth_monday_spills_into_march() {
    // [verified-run] "fifth Monday" matched 2021-03-01 (February 2021 has four Mondays).
    let rule = json!({"cycle": "monthly", "ordinal": "fifth", "wdays": ["monday"],
                      "start_date": gsecs(2011, 1, 1)});
    let d = one(rule.clone(), noon(2021, 3, 1));
    assert_eq!(d.child_key, "r", "{d:#?}");
    assert!(quirk_ids(&d).contains(&"ordinal_weekday_spills"));
    assert!(matches(rule.clone(), noon(2021, 3, 29)));
    assert!(!matches(rule, noon(2021, 3, 22)));
}

#[test]
fn monthly_ordinals() {
    let start = gsecs(2011, 1, 1);
    let first =
        json!({"cycle": "monthly", "ordinal": "first", "wdays": ["tuesday"], "start_date": start});
    assert!(matches(first.clone(), noon(2026, 3, 3)));
    assert!(!matches(first, noon(2026, 3, 10)));
    let last =
        json!({"cycle": "monthly", "ordinal": "last", "wdays": ["friday"], "start_date": start});
    assert!(matches(last.clone(), noon(2026, 3, 27)));
    assert!(!matches(last, noon(2026, 3, 20)));
    let every =
        json!({"cycle": "monthly", "ordinal": "every", "wdays": ["wensday"], "start_date": start});
    let d = one(every.clone(), noon(2026, 3, 11));
    assert_eq!(d.child_key, "r");
    assert!(quirk_ids(&d).contains(&"wensday"));
    assert!(!matches(every, noon(2026, 3, 12)));
}

#[test]
fn yearly_days_and_ordinals() {
    let start = gsecs(2011, 1, 1);
    let christmas = json!({"cycle": "yearly", "month": 12, "days": [25], "start_date": start});
    assert!(matches(christmas.clone(), noon(2026, 12, 25)));
    assert!(!matches(christmas, noon(2026, 12, 24)));
    let thanksgiving = json!({"cycle": "yearly", "month": 11, "ordinal": "fourth",
                              "wdays": ["thursday"], "start_date": start});
    assert!(matches(thanksgiving.clone(), noon(2026, 11, 26)));
    assert!(!matches(thanksgiving, noon(2026, 11, 19)));
    let memorial = json!({"cycle": "yearly", "month": 5, "ordinal": "last",
                          "wdays": ["monday"], "start_date": start});
    assert!(matches(memorial.clone(), noon(2026, 5, 25)));
    assert!(!matches(memorial, noon(2026, 5, 18)));
}

#[test]
fn monthly_without_days_or_single_weekday_crashes() {
    // [verified-run] function_clause: the executor continues to '_' and later rules are not
    // tried.
    let docs = Docs::default()
        .rule(
            "bad",
            json!({"cycle": "monthly", "start_date": gsecs(2011, 1, 1)}),
        )
        .rule(
            "good",
            json!({"cycle": "daily", "start_date": gsecs(2011, 1, 1)}),
        );
    let data = obj(json!({"rules": ["bad", "good"], "timezone": "UTC"}));
    let d = evaluate(&data, &["bad", "good", "_"], noon(2026, 3, 10), None, &docs);
    assert!(d.crashed);
    assert_eq!(d.child_key, "_");
    assert_eq!(d.checks.len(), 1);
    assert!(quirk_ids(&d).contains(&"no_matching_clause_crash"));
}

#[test]
fn enabled_overrides() {
    let start = gsecs(2011, 1, 1);
    // Forced on wins outside its window; forced off loses inside it.
    let on = json!({"cycle": "weekly", "wdays": ["sunday"], "enabled": true, "start_date": start});
    let d = one(on, noon(2026, 3, 10));
    assert_eq!(d.child_key, "r");
    assert_eq!(d.checks[0].outcome, CheckOutcome::ForcedOn);
    assert!(quirk_ids(&d).contains(&"forced_on"));
    let off = json!({"cycle": "daily", "enabled": false, "start_date": start});
    let d = one(off, noon(2026, 3, 10));
    assert_eq!(d.child_key, "_");
    assert!(quirk_ids(&d).contains(&"forced_off"));
}

#[test]
fn future_start_date_is_dropped_even_when_forced_on() {
    let rule = json!({"cycle": "daily", "enabled": true, "start_date": gsecs(2027, 1, 1)});
    let d = one(rule, noon(2026, 3, 10));
    assert_eq!(d.child_key, "_");
    assert_eq!(d.checks[0].outcome, CheckOutcome::StartsLater);
    assert!(quirk_ids(&d).contains(&"forced_rule_dropped_by_start_date"));
}

#[test]
fn missing_start_date_reads_local_time_as_utc() {
    // Berlin, 23:30 local on 2026-03-10: the local time read as UTC is 00:30 on the 11th in
    // Berlin, so the start date is tomorrow and the rule is dropped.
    let docs = Docs::default().rule("r", json!({"cycle": "daily"}));
    let data = obj(json!({"rules": ["r"], "timezone": "Europe/Berlin"}));
    let late = at("Europe/Berlin", 2026, 3, 10, 23, 30);
    let d = evaluate(&data, &["r", "_"], late, None, &docs);
    assert_eq!(d.child_key, "_");
    assert!(
        quirk_ids(&d).contains(&"missing_start_date_as_utc"),
        "{d:#?}"
    );
    // Earlier in the day the same rule matches.
    let d = evaluate(
        &data,
        &["r", "_"],
        at("Europe/Berlin", 2026, 3, 10, 12, 0),
        None,
        &docs,
    );
    assert_eq!(d.child_key, "r");
}

#[test]
fn rule_set_routes_use_the_rule_set_child_key() {
    let start = gsecs(2011, 1, 1);
    let docs = Docs::default()
        .rule("a", json!({"cycle": "daily", "start_date": start}))
        .set("holidays", &["a"]);
    let data = obj(json!({"rule_set": "holidays", "timezone": "UTC"}));
    let d = evaluate(
        &data,
        &["holidays", "rule_set", "_"],
        noon(2026, 3, 10),
        None,
        &docs,
    );
    // The child key "holidays" names the set too: that route comes first (keyed "holidays").
    assert_eq!(d.child_key, "holidays");
    let d = evaluate(&data, &["rule_set", "_"], noon(2026, 3, 10), None, &docs);
    assert_eq!(d.child_key, "rule_set");
    assert_eq!(d.matched_rule.as_deref(), Some("a"));
    assert!(quirk_ids(&d).contains(&"rule_set_child_key"));
}

#[test]
fn route_order_and_duplicates() {
    let start = gsecs(2011, 1, 1);
    let docs = Docs::default()
        .rule(
            "closed",
            json!({"cycle": "weekly", "wdays": ["sunday"], "start_date": start}),
        )
        .rule("open", json!({"cycle": "daily", "start_date": start}));
    // data.rules first, then child keys (minus "_"), duplicates kept.
    let data = obj(json!({"rules": ["closed", "open"], "timezone": "UTC"}));
    let d = evaluate(
        &data,
        &["open", "closed", "_"],
        noon(2026, 3, 10),
        None,
        &docs,
    );
    assert_eq!(d.child_key, "open");
    let ids: Vec<_> = d.checks.iter().map(|c| c.rule_id.as_str()).collect();
    assert_eq!(ids, ["closed", "open"]);
    let d = evaluate(
        &obj(json!({"timezone": "UTC"})),
        &["_", "closed", "missing"],
        noon(2026, 3, 10),
        None,
        &docs,
    );
    assert_eq!(d.child_key, "_");
    assert_eq!(d.checks[1].outcome, CheckOutcome::NotFound);
}

#[test]
fn timezone_resolution() {
    let docs = Docs::default().rule(
        "r",
        json!({"cycle": "daily", "time_window_start": 32400, "time_window_stop": 61200,
               "start_date": gsecs(2011, 1, 1)}),
    );
    let now = utc("2026-03-10T15:00:00Z"); // 11:00 New York, 08:00 Los Angeles
    let inherit = obj(json!({"rules": ["r"], "timezone": "inherit"}));
    let d = evaluate(&inherit, &["r", "_"], now, Some("America/New_York"), &docs);
    assert_eq!(d.child_key, "r");
    let d = evaluate(&inherit, &["r", "_"], now, None, &docs);
    assert_eq!(d.timezone, super::DEFAULT_TIMEZONE);
    assert_eq!(d.child_key, "_");
    let unknown = obj(json!({"rules": ["r"], "timezone": "Mars/Olympus"}));
    let d = evaluate(&unknown, &["r", "_"], now, None, &docs);
    assert!(d.crashed);
}

// ---- DST -------------------------------------------------------------------------------

fn weekday_rule_docs() -> Docs {
    Docs::default().rule(
        "r",
        json!({"name": "Weekdays", "cycle": "weekly",
               "wdays": ["monday", "tuesday", "wednesday", "thursday", "friday"],
               "time_window_start": 32400, "time_window_stop": 61200,
               "start_date": gsecs(2011, 1, 1)}),
    )
}

fn ny_key(now: DateTime<Utc>) -> String {
    let data = obj(json!({"rules": ["r"], "timezone": "America/New_York"}));
    evaluate(&data, &["r", "_"], now, None, &weekday_rule_docs()).child_key
}

#[test]
fn spring_forward_uses_local_wall_time() {
    // 13:30Z is 08:30 EST on Friday 2026-03-06 but 09:30 EDT on Monday 2026-03-09.
    assert_eq!(ny_key(utc("2026-03-06T13:30:00Z")), "_");
    assert_eq!(ny_key(utc("2026-03-09T13:30:00Z")), "r");
    // 21:30Z is 16:30 EST on Friday (open) and 17:30 EDT on Monday (closed).
    assert_eq!(ny_key(utc("2026-03-06T21:30:00Z")), "r");
    assert_eq!(ny_key(utc("2026-03-09T21:30:00Z")), "_");
    // The change happens on Sunday 2026-03-08: closed all day either side of 07:00Z.
    assert_eq!(ny_key(utc("2026-03-08T06:59:00Z")), "_");
    assert_eq!(ny_key(utc("2026-03-08T14:00:00Z")), "_");
}

#[test]
fn fall_back_uses_local_wall_time() {
    // 13:30Z is 09:30 EDT on Friday 2026-10-30 but 08:30 EST on Monday 2026-11-02.
    assert_eq!(ny_key(utc("2026-10-30T13:30:00Z")), "r");
    assert_eq!(ny_key(utc("2026-11-02T13:30:00Z")), "_");
    assert_eq!(ny_key(utc("2026-11-02T14:30:00Z")), "r");
    // 22:00Z is 17:00 EST: the closing minute still matches (inclusive), 22:01Z does not.
    assert_eq!(ny_key(utc("2026-11-02T22:00:00Z")), "r");
    assert_eq!(ny_key(utc("2026-11-02T22:01:00Z")), "_");
}

#[test]
fn windows_on_the_change_days_follow_the_wall_clock() {
    let docs = Docs::default().rule(
        "r",
        json!({"cycle": "daily", "time_window_start": 3600, "time_window_stop": 10800,
               "start_date": gsecs(2011, 1, 1)}),
    );
    let data = obj(json!({"rules": ["r"], "timezone": "America/New_York"}));
    let key = |s: &str| evaluate(&data, &["r", "_"], utc(s), None, &docs).child_key;
    // Spring: 06:59Z = 01:59 EST, 07:00Z = 03:00 EDT (inclusive end), 07:01Z = 03:01 EDT.
    assert_eq!(key("2026-03-08T05:59:00Z"), "_");
    assert_eq!(key("2026-03-08T06:59:00Z"), "r");
    assert_eq!(key("2026-03-08T07:00:00Z"), "r");
    assert_eq!(key("2026-03-08T07:01:00Z"), "_");
    // Fall: 01:30 happens twice (05:30Z EDT, 06:30Z EST); both are inside 01:00-03:00.
    assert_eq!(key("2026-11-01T05:30:00Z"), "r");
    assert_eq!(key("2026-11-01T06:30:00Z"), "r");
    assert_eq!(key("2026-11-01T08:00:00Z"), "r"); // 03:00 EST
    assert_eq!(key("2026-11-01T08:01:00Z"), "_");
}

#[test]
fn start_date_in_the_repeated_hour_crashes() {
    let second_pass = utc("2026-11-01T06:30:00Z").timestamp() + 62_167_219_200;
    let docs = Docs::default().rule("r", json!({"cycle": "daily", "start_date": second_pass}));
    let data = obj(json!({"rules": ["r"], "timezone": "America/New_York"}));
    let d = evaluate(&data, &["r", "_"], utc("2026-11-05T15:00:00Z"), None, &docs);
    assert!(d.crashed, "{d:#?}");
}

#[test]
fn override_actions_are_reported_not_evaluated() {
    let docs = weekday_rule_docs();
    let data = obj(json!({"rules": ["r"], "action": "disable", "timezone": "UTC"}));
    let d = evaluate(&data, &["r", "_"], noon(2026, 3, 10), None, &docs);
    assert_eq!(d.action, Some("disable"));
    assert_eq!(d.child_key, "_");
    assert!(d.checks.is_empty());
}

#[test]
fn reason_reads_in_plain_words() {
    let docs = weekday_rule_docs();
    let data = obj(json!({"rules": ["r"], "timezone": "America/New_York"}));
    let d = evaluate(
        &data,
        &["r", "_"],
        at("America/New_York", 2026, 3, 10, 10, 15),
        None,
        &docs,
    );
    assert_eq!(
        d.checks[0].reason,
        "'Weekdays' (weekly, every week, mon-fri, 09:00-17:00 America/New_York): active, today is Tuesday 10:15"
    );
}

// ---- differential check against Kazoo's own code -------------------------------------

/// Compares the recurrence port with results produced by running Kazoo's Erlang functions
/// (`next_rule_date/2` and the window test of `process_rules/3`) on random rules. The case file
/// is made outside this repository (it needs Kazoo's source); each line reads
/// `cycle;interval;days;wdays;ordinal;month;start;today;second_of_day;window_start;window_stop;result`
/// with `result` = `active|before|after:Y-M-D` (the base date), `crash` or `hang`.
/// Run: `KAZOO_DIFF=/path/to/cases.txt cargo test --lib kazoo_differential -- --ignored`.
#[test]
#[ignore = "needs a case file generated with Kazoo's Erlang code"]
fn kazoo_differential() {
    use super::calendar::{Fault, Ymd};
    use super::recurrence::{check_window, LocalNow, Notes, Recurrence, Window};
    use super::rule::{build, CycleField, Fields};

    let Ok(path) = std::env::var("KAZOO_DIFF") else {
        return;
    };
    let text = std::fs::read_to_string(&path).expect("readable case file");
    let date = |s: &str| {
        let p: Vec<i64> = s.split('-').map(|x| x.parse().expect("number")).collect();
        Ymd::new(p[0], p[1], p[2])
    };
    let list = |s: &str| -> Vec<Value> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(|x| match x.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!(x),
            })
            .collect()
    };
    let (mut total, mut bad) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split(';').collect();
        let doc = obj(json!({
            "cycle": f[0], "interval": f[1].parse::<i64>().expect("interval"),
            "days": list(f[2]), "wdays": list(f[3]), "ordinal": f[4],
            "month": f[5].parse::<i64>().expect("month"),
        }));
        let start = date(f[6]);
        let today = date(f[7]);
        let second: i64 = f[8].parse().expect("second");
        let (ws, we): (i64, i64) = (f[9].parse().expect("start"), f[10].parse().expect("stop"));
        let local = LocalNow {
            date: today,
            secs: super::calendar::date_to_gregorian_days(today).expect("valid") * 86_400 + second,
        };
        let ours = match build(&Fields::of(&doc), String::new()) {
            Err(_) => "crash".to_owned(),
            Ok(rule) => match rule.cycle {
                CycleField::Known(cycle) => {
                    let r = Recurrence {
                        cycle,
                        interval: rule.interval,
                        days: &rule.days,
                        wdays: &rule.wdays,
                        ordinal: &rule.ordinal,
                        month: rule.month,
                        start,
                    };
                    match check_window(&r, ws, we, &local, &mut Notes::default()) {
                        Ok(w) => {
                            let (tag, b) = match w {
                                Window::Active { base, .. } => ("active", base),
                                Window::Before { base, .. } => ("before", base),
                                Window::After { base, .. } => ("after", base),
                            };
                            format!("{tag}:{}-{}-{}", b.y, b.m, b.d)
                        }
                        Err(Fault::Crash(_)) => "crash".to_owned(),
                        Err(Fault::Hang(_)) => "hang".to_owned(),
                    }
                }
                _ => "crash".to_owned(),
            },
        };
        total += 1;
        if ours != f[11] {
            bad += 1;
            if bad <= 30 {
                eprintln!("MISMATCH ours={ours} kazoo={}  <- {line}", f[11]);
            }
        }
    }
    eprintln!("{total} cases, {bad} mismatches");
    assert_eq!(bad, 0);
}

// ---- properties ----------------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    /// Any JSON value a hand-edited rule document might hold in a field.
    fn wild() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => (-40i64..400).prop_map(|n| json!(n)),
            1 => any::<i64>().prop_map(|n| json!(n)),
            1 => Just(json!(u64::MAX)),
            1 => prop::sample::select(vec![1e300, -1e300, 2.5, -0.5, 86_400.4, 1e19]).prop_map(|f| json!(f)),
            2 => prop::sample::select(vec![
                "", "1", "-3", "2.5e1", "first", "fifth", "last", "every", "bogus", "monday",
                "wensday", "daily", "weekly", "monthly", "yearly", "date", "hourly", "true",
                "99999999999999999999999",
            ]).prop_map(|s| json!(s)),
            1 => any::<bool>().prop_map(|b| json!(b)),
            1 => Just(Value::Null),
            1 => prop::collection::vec(-5i64..40, 0..4).prop_map(|v| json!(v)),
            1 => Just(json!({"a": 1})),
        ]
    }

    fn day() -> impl Strategy<Value = Value> {
        prop_oneof![8 => (1i64..=31).prop_map(|n| json!(n)), 1 => wild()]
    }

    fn wday() -> impl Strategy<Value = Value> {
        prop_oneof![
            20 => prop::sample::select(vec![
                "monday", "tuesday", "wednesday", "wensday", "thursday", "friday", "saturday",
                "sunday",
            ]).prop_map(|s| json!(s)),
            1 => wild(),
        ]
    }

    fn field<S: Strategy<Value = Value> + 'static>(s: S) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![1 => Just(None), 5 => s.prop_map(Some), 1 => wild().prop_map(Some)]
    }

    prop_compose! {
        fn rule_doc()(
            cycle in field(prop::sample::select(vec!["date", "daily", "weekly", "monthly", "yearly", ""]).prop_map(|s| json!(s))),
            interval in field(prop_oneof![8 => (1i64..8).prop_map(|n| json!(n)), 1 => (-3i64..=0).prop_map(|n| json!(n))]),
            days in field(prop::collection::vec(day(), 0..4).prop_map(Value::Array)),
            wdays in field(prop::collection::vec(wday(), 0..4).prop_map(Value::Array)),
            ordinal in field(prop::sample::select(vec!["first", "second", "third", "fourth", "fifth", "every", "last"]).prop_map(|s| json!(s))),
            month in field((0i64..=13).prop_map(|n| json!(n))),
            start in field((0i64..=200 * 365).prop_map(|d| json!(gsecs(1970, 1, 1) + d * 86_400 + 3_600 * (d % 24)))),
            window_start in field((-3_600i64..=90_000).prop_map(|n| json!(n))),
            window_stop in field((-3_600i64..=90_000).prop_map(|n| json!(n))),
            enabled in prop::option::of(prop_oneof![any::<bool>().prop_map(|b| json!(b)), wild()]),
        ) -> Value {
            let mut doc = Map::new();
            doc.insert("name".into(), json!("random"));
            for (key, value) in [
                ("cycle", cycle), ("interval", interval), ("days", days), ("wdays", wdays),
                ("ordinal", ordinal), ("month", month), ("start_date", start),
                ("time_window_start", window_start), ("time_window_stop", window_stop),
                ("enabled", enabled),
            ] {
                if let Some(v) = value {
                    doc.insert(key.into(), v);
                }
            }
            Value::Object(doc)
        }
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 1990-01-01 .. 2100-12-31.
        (631_152_000i64..4_133_980_799)
            .prop_map(|s| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default())
    }

    fn zone() -> impl Strategy<Value = Option<Value>> {
        prop::option::of(
            prop::sample::select(vec![
                "UTC",
                "America/New_York",
                "America/Los_Angeles",
                "Europe/Berlin",
                "Australia/Lord_Howe",
                "Pacific/Kiritimati",
                "Pacific/Honolulu",
                "Asia/Kolkata",
                "inherit",
                "+05:30",
                "-99:00",
                "Nowhere/City",
                "America/Los Angeles",
            ])
            .prop_map(|s| json!(s)),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Random rules (valid or not) at random instants never panic, always give a child
        /// key, and answer quickly.
        #[test]
        fn random_routes_never_panic(
            rules in prop::collection::vec(rule_doc(), 1..6),
            now in instant(),
            tz in zone(),
            account_tz in prop::option::of(prop::sample::select(vec!["Europe/London", "inherit", "", "Asia/Tokyo"])),
            use_set in any::<bool>(),
        ) {
            let mut docs = Docs::default();
            let ids: Vec<String> = (0..rules.len()).map(|i| format!("rule{i}")).collect();
            for (id, rule) in ids.iter().zip(rules) {
                docs = docs.rule(id, rule);
            }
            let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            docs = docs.set("set", &id_refs);
            let mut data = obj(json!({"rules": if use_set { json!(["set"]) } else { json!(ids) }}));
            if let Some(tz) = tz {
                data.insert("timezone".into(), tz);
            }
            let mut keys: Vec<&str> = id_refs.clone();
            keys.push("_");
            let started = Instant::now();
            let d = evaluate(&data, &keys, now, account_tz, &docs);
            let took = started.elapsed();
            prop_assert!(took < Duration::from_millis(50), "took {took:?}");
            prop_assert!(!d.child_key.is_empty());
            prop_assert!(!(d.crashed && d.stalled));
            if d.crashed || d.stalled {
                prop_assert_eq!(d.child_key.as_str(), "_");
            }
            if d.matched_rule.is_some() {
                prop_assert!(d.checks.last().is_some_and(|c| c.matched));
            }
        }
    }
}

// ---- crashes and endless loops --------------------------------------------------------

#[test]
fn kazoo_crashes_and_loops() {
    let start = gsecs(2011, 1, 1);
    let crash = |rule: Value, now: DateTime<Utc>, id: &str| {
        let d = one(rule, now);
        assert!(d.crashed, "{d:#?}");
        assert_eq!(d.child_key, "_");
        assert!(quirk_ids(&d).contains(&id), "{d:#?}");
    };
    crash(
        json!({"cycle": "hourly", "start_date": start}),
        noon(2026, 3, 10),
        "unknown_cycle_crash",
    );
    crash(
        json!({"cycle": "daily", "interval": 0, "start_date": start}),
        noon(2026, 3, 10),
        "zero_interval_crash",
    );
    // April 31 does not exist: searching from July 31 for an April Monday raises.
    let april_mondays = json!({"cycle": "yearly", "month": 4, "ordinal": "every", "wdays": ["monday"], "start_date": start});
    crash(
        april_mondays.clone(),
        noon(2026, 8, 1),
        "date_arithmetic_crash",
    );
    assert!(!one(april_mondays, noon(2026, 5, 1)).crashed);
    crash(
        json!({"cycle": "daily", "wdays": ["funday"], "start_date": start}),
        noon(2026, 3, 10),
        "rule_load_crash",
    );
    crash(
        json!({"cycle": "daily", "start_date": -5}),
        noon(2026, 3, 10),
        "rule_load_crash",
    );
    let d = one(
        json!({"cycle": "monthly", "ordinal": "5th", "wdays": ["monday"], "start_date": start}),
        noon(2026, 3, 10),
    );
    assert!(d.stalled && !d.crashed, "{d:#?}");
    assert!(quirk_ids(&d).contains(&"endless_loop"));
}

#[test]
fn a_bad_later_document_hides_an_earlier_match() {
    let start = gsecs(2011, 1, 1);
    let docs = Docs::default()
        .rule("open", json!({"cycle": "daily", "start_date": start}))
        .rule(
            "broken",
            json!({"cycle": "weekly", "wdays": ["someday"], "start_date": start}),
        );
    let data = obj(json!({"rules": ["open", "broken"], "timezone": "UTC"}));
    let d = evaluate(
        &data,
        &["open", "broken", "_"],
        noon(2026, 3, 10),
        None,
        &docs,
    );
    assert!(d.crashed);
    assert_eq!(d.child_key, "_");
    assert_eq!(d.checks[0].outcome, CheckOutcome::NotEvaluated);
    assert_eq!(d.checks[1].outcome, CheckOutcome::Crashed);
}

#[test]
fn offset_zones_work_for_now_but_not_for_start_dates() {
    let docs = Docs::default().rule(
        "r",
        json!({"cycle": "daily", "start_date": gsecs(2011, 1, 1)}),
    );
    let data = obj(json!({"rules": ["r"], "timezone": "+05:30"}));
    let d = evaluate(&data, &["r", "_"], noon(2026, 3, 10), None, &docs);
    assert!(d.crashed);
    assert_eq!(
        d.local_time.as_deref(),
        Some("2026-03-10 17:30:00 (Tuesday)")
    );
    // With no rule document to convert, the offset zone is harmless.
    let d = evaluate(
        &obj(json!({"rules": ["nope"], "timezone": "+05:30"})),
        &["_"],
        noon(2026, 3, 10),
        None,
        &docs,
    );
    assert!(!d.crashed);
}

#[test]
fn matched_rule_without_child_is_reported() {
    let docs = Docs::default().rule(
        "r",
        json!({"cycle": "daily", "start_date": gsecs(2011, 1, 1)}),
    );
    let data = obj(json!({"rules": ["r"], "timezone": "UTC"}));
    let d = evaluate(&data, &["_"], noon(2026, 3, 10), None, &docs);
    assert_eq!(d.child_key, "r");
    assert!(quirk_ids(&d).contains(&"matched_child_missing"));
}

#[test]
fn weekly_wensday_spelling() {
    let rule = json!({"cycle": "weekly", "wdays": ["wensday"], "start_date": gsecs(2011, 1, 1)});
    let d = one(rule.clone(), noon(2026, 3, 11));
    assert_eq!(d.child_key, "r");
    assert!(quirk_ids(&d).contains(&"wensday"));
    assert!(!matches(rule, noon(2026, 3, 12)));
}

#[test]
fn schema_default_start_date_sets_the_phase_of_biweekly_rules() {
    // 62586115200 is Monday 1983-04-11 (08:00 UTC): a bi-weekly Monday rule with that start
    // fires on Mondays an even number of ISO weeks later.
    let rule = json!({"cycle": "weekly", "interval": 2, "wdays": ["monday"], "start_date": 62_586_115_200i64});
    let a = matches(rule.clone(), noon(2026, 3, 9));
    let b = matches(rule, noon(2026, 3, 16));
    assert_ne!(a, b);
}

#[test]
fn clock_and_date_text() {
    use super::calendar::Ymd;
    assert_eq!(super::fmt_clock(3725), "01:02:05");
    assert_eq!(super::fmt_clock(-3600), "-01:00");
    assert_eq!(super::fmt_clock(93_600), "26:00");
    assert_eq!(super::fmt_date(Ymd::new(983, 4, 1)), "0983-04-01");
    assert_eq!(super::fmt_date(Ymd::new(12_345, 12, 31)), "12345-12-31");
}
