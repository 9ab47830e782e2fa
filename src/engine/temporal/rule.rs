//! Rule documents as Kazoo reads them: which JSON values count as what (Kazoo's lenient
//! `kz_json` getters and `kz_term` casts), the defaults of its rule record, and the checks that
//! make its process crash while loading rules (an unknown weekday name, a day that is not a
//! number).
//!
//! Owns: turning a `temporal_rules` document into a [`Rule`]. Must not: decide whether a rule
//! is active (see `recurrence`) or convert time zones (see `clock`).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::calendar::{Fault, Int, Res, Ymd};
use super::recurrence::{Cycle, Ordinal};

/// Numbers are read wide, then clamped per field: Erlang integers are unbounded, but past these
/// magnitudes every rule gives the same answer ("never", "far future", or a crash), and the
/// `i64` date arithmetic stays far from overflow.
type Wide = i128;
/// Clamp for intervals, days, months and window bounds (about 136 years of seconds).
const CLAMP: Wide = 1 << 32;
/// Clamp for start dates in gregorian seconds (the year 34,800 or so).
const START_CLAMP: Wide = 1 << 40;
/// Clamp while parsing, before a field's own clamp.
const PARSE_CLAMP: Wide = 1 << 100;

fn clamp(v: Wide) -> Wide {
    v.clamp(-PARSE_CLAMP, PARSE_CLAMP)
}

fn narrow(v: Wide, limit: Wide) -> Int {
    // The clamp makes the conversion exact.
    Int::try_from(v.clamp(-limit, limit)).unwrap_or_default()
}

/// What the `cycle` field resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CycleField {
    /// Missing or empty: Kazoo skips the rule as invalid.
    Empty,
    Known(Cycle),
    /// Any other text: no clause of Kazoo's `next_rule_date` matches, the process crashes.
    Other(String),
}

/// Where the rule's start date came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartSource {
    Document,
    /// No usable `start_date`: Kazoo uses the local wall-clock seconds as if they were UTC.
    Missing,
}

/// A rule document read the way Kazoo's `build_rule` reads it (the start date is resolved by
/// the caller, which needs the time zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub name: String,
    pub enabled: Option<bool>,
    pub cycle: CycleField,
    pub interval: Int,
    pub days: Vec<Int>,
    /// ISO weekday numbers sorted Monday..Sunday (stable); all seven when the list is empty.
    pub wdays: Vec<Int>,
    /// The document names a weekday with Kazoo's accepted misspelling "wensday" (and not
    /// "wednesday").
    pub uses_wensday: bool,
    pub ordinal: Ordinal,
    pub month: Int,
    pub window_start: Int,
    pub window_stop: Int,
}

/// The fields of a rule document Kazoo reads, found in one pass over the document (each
/// lookup in an order-preserving JSON map hashes the key; one pass is cheaper).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fields<'a> {
    name: Option<&'a Value>,
    start_date: Option<&'a Value>,
    cycle: Option<&'a Value>,
    days: Option<&'a Value>,
    wdays: Option<&'a Value>,
    ordinal: Option<&'a Value>,
    interval: Option<&'a Value>,
    month: Option<&'a Value>,
    window_start: Option<&'a Value>,
    window_stop: Option<&'a Value>,
    enabled: Option<&'a Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn of(doc: &'a Map<String, Value>) -> Self {
        let mut f = Fields::default();
        for (key, value) in doc {
            let slot = match key.as_str() {
                "name" => &mut f.name,
                "start_date" => &mut f.start_date,
                "cycle" => &mut f.cycle,
                "days" => &mut f.days,
                "wdays" => &mut f.wdays,
                "ordinal" => &mut f.ordinal,
                "interval" => &mut f.interval,
                "month" => &mut f.month,
                "time_window_start" => &mut f.window_start,
                "time_window_stop" => &mut f.window_stop,
                "enabled" => &mut f.enabled,
                _ => continue,
            };
            *slot = Some(value);
        }
        f
    }

    /// `enabled` as Kazoo's boolean getter reads it.
    pub(crate) fn enabled(&self) -> Option<bool> {
        self.enabled.and_then(to_boolean)
    }
}

/// The rule's name as Kazoo logs it (`no_name` when missing or empty).
pub(crate) fn rule_name(doc: &Fields<'_>) -> String {
    match doc.name.and_then(to_binary) {
        Some(name) if !name.is_empty() => name.into_owned(),
        _ => "no_name".to_owned(),
    }
}

/// `start_date` as Kazoo's integer getter reads it; `None` when missing or not a number.
pub(crate) fn start_seconds(doc: &Fields<'_>) -> Option<Int> {
    doc.start_date
        .and_then(to_integer_wide)
        .map(|v| narrow(v, START_CLAMP))
}

/// `kz_date:wday_to_dow/1` (with the misspelling Kazoo accepts).
pub(crate) fn wday_to_dow(name: &str) -> Option<Int> {
    Some(match name {
        "monday" => 1,
        "tuesday" => 2,
        "wednesday" | "wensday" => 3,
        "thursday" => 4,
        "friday" => 5,
        "saturday" => 6,
        "sunday" => 7,
        _ => return None,
    })
}

/// `build_rule/4` minus the start date (`name` from [`rule_name`]). Raises where Kazoo's
/// loader raises.
pub(crate) fn build(doc: &Fields<'_>, name: String) -> Res<Rule> {
    let cycle = match doc.cycle.and_then(to_binary).as_deref() {
        None | Some("") => CycleField::Empty,
        Some("date") => CycleField::Known(Cycle::Date),
        Some("daily") => CycleField::Known(Cycle::Daily),
        Some("weekly") => CycleField::Known(Cycle::Weekly),
        Some("monthly") => CycleField::Known(Cycle::Monthly),
        Some("yearly") => CycleField::Known(Cycle::Yearly),
        Some(other) => CycleField::Other(other.to_owned()),
    };
    let days = match doc.days {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                to_integer(v).ok_or(Fault::Crash(
                    "a value in 'days' is not a number (Kazoo's loader raises)",
                ))
            })
            .collect::<Res<Vec<Int>>>()?,
        _ => Vec::new(),
    };
    let (wdays, uses_wensday) = sorted_wdays(doc.wdays)?;
    let ordinal = match doc.ordinal.and_then(to_binary).as_deref() {
        None | Some("first") => Ordinal::Nth(0),
        Some("second") => Ordinal::Nth(1),
        Some("third") => Ordinal::Nth(2),
        Some("fourth") => Ordinal::Nth(3),
        Some("fifth") => Ordinal::Nth(4),
        Some("every") => Ordinal::Every,
        Some("last") => Ordinal::Last,
        Some(other) => Ordinal::Other(other.to_owned()),
    };
    Ok(Rule {
        name,
        enabled: doc.enabled(),
        cycle,
        interval: integer_or(doc.interval, 1),
        days,
        wdays,
        uses_wensday,
        ordinal,
        month: integer_or(doc.month, 1),
        window_start: integer_or(doc.window_start, 0),
        window_stop: integer_or(doc.window_stop, 86_400),
    })
}

/// `sort_wdays/1`: every entry must be a weekday name (else Kazoo raises); stable sort by
/// weekday number; an empty (or missing, or non-list) value means all seven days.
fn sorted_wdays(value: Option<&Value>) -> Res<(Vec<Int>, bool)> {
    let items = match value {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => return Ok(((1..=7).collect(), false)),
    };
    let mut wensday = false;
    let mut wednesday = false;
    let mut dows = Vec::with_capacity(items.len());
    for item in items {
        let name = item.as_str().ok_or(Fault::Crash(
            "a value in 'wdays' is not a weekday name (Kazoo's loader raises)",
        ))?;
        let dow = wday_to_dow(name).ok_or(Fault::Crash(
            "a value in 'wdays' is not a weekday name (Kazoo's loader raises)",
        ))?;
        wensday |= name == "wensday";
        wednesday |= name == "wednesday";
        dows.push(dow);
    }
    dows.sort();
    Ok((dows, wensday && !wednesday))
}

fn integer_or(value: Option<&Value>, default: Int) -> Int {
    value.and_then(to_integer).unwrap_or(default)
}

/// `kz_term:to_boolean/1` under `safe_cast`: true/false and their text forms.
fn to_boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        Value::Array(_) => match charlist(v).as_deref() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// [`to_integer_wide`] clamped for intervals, days, months and windows.
pub(crate) fn to_integer(v: &Value) -> Option<Int> {
    to_integer_wide(v).map(|w| narrow(w, CLAMP))
}

/// `kz_term:to_integer/1` (not strict) under `safe_cast`: integers, floats rounded, text
/// holding an Erlang integer or float, and lists of character codes holding the same.
fn to_integer_wide(v: &Value) -> Option<Wide> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Wide::from(i))
            } else if let Some(u) = n.as_u64() {
                Some(clamp(Wide::from(u)))
            } else {
                n.as_f64().and_then(round_float)
            }
        }
        Value::String(s) => text_to_integer(s),
        Value::Array(_) => charlist(v).and_then(|s| text_to_integer(&s)),
        _ => None,
    }
}

/// Erlang's `round/1` (half away from zero), clamped.
fn round_float(f: f64) -> Option<Wide> {
    if !f.is_finite() {
        return None;
    }
    let r = f.round();
    Some(if r >= PARSE_CLAMP as f64 {
        PARSE_CLAMP
    } else if r <= -(PARSE_CLAMP as f64) {
        -PARSE_CLAMP
    } else {
        r as Wide
    })
}

/// `binary_to_integer/1`, else `round(binary_to_float/1)`.
fn text_to_integer(s: &str) -> Option<Wide> {
    erlang_integer(s).or_else(|| erlang_float(s).and_then(round_float))
}

/// Erlang integer syntax: optional sign, one or more decimal digits.
fn erlang_integer(s: &str) -> Option<Wide> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: Wide = 0;
    for b in digits.bytes() {
        v = clamp(v.saturating_mul(10).saturating_add(Wide::from(b - b'0')));
    }
    Some(if negative { -v } else { v })
}

/// Erlang float syntax: optional sign, digits, a dot, digits, optional exponent.
fn erlang_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    if let Some(e) = exponent {
        if !digits(e.strip_prefix(['+', '-']).unwrap_or(e)) {
            return None;
        }
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A JSON array read as an Erlang character list (every element a valid code point).
fn charlist(v: &Value) -> Option<String> {
    let Value::Array(items) = v else {
        return None;
    };
    items
        .iter()
        .map(|c| {
            c.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .and_then(char::from_u32)
        })
        .collect()
}

/// `kz_term:to_binary/1` under `safe_cast`, as text: strings as they are, numbers and atoms
/// (true/false/null) spelled out, objects encoded, lists as iolists (strings and bytes).
pub(crate) fn to_binary(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Null => Some(Cow::Borrowed("null")),
        Value::Object(_) => Some(Cow::Owned(v.to_string())),
        Value::Array(_) => {
            let mut bytes = Vec::new();
            iolist(v, &mut bytes)?;
            Some(Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()))
        }
    }
}

fn iolist(v: &Value, out: &mut Vec<u8>) -> Option<()> {
    match v {
        Value::String(s) => out.extend_from_slice(s.as_bytes()),
        Value::Number(n) => out.push(u8::try_from(n.as_u64()?).ok()?),
        Value::Array(items) => {
            for item in items {
                iolist(item, out)?;
            }
        }
        _ => return None,
    }
    Some(())
}

/// A start date in gregorian seconds as a UTC date (no time zone), for dates too far out for
/// the time-zone database.
pub(crate) fn utc_date_of(seconds: Int) -> Res<Ymd> {
    super::calendar::gregorian_days_to_date(seconds.div_euclid(super::calendar::DAY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn build(doc: &Map<String, Value>) -> Res<Rule> {
        let fields = Fields::of(doc);
        super::build(&fields, rule_name(&fields))
    }

    #[test]
    fn defaults_follow_kazoos_rule_record() {
        let r = build(&doc(json!({"cycle": "weekly"}))).expect("valid");
        assert_eq!(r.cycle, CycleField::Known(Cycle::Weekly));
        assert_eq!(r.interval, 1);
        assert_eq!(r.wdays, vec![1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(r.ordinal, Ordinal::Nth(0));
        assert_eq!(r.month, 1);
        assert_eq!((r.window_start, r.window_stop), (0, 86_400));
        assert_eq!(r.enabled, None);
        assert_eq!(r.name, "no_name");
    }

    #[test]
    fn lenient_casts() {
        let r = build(&doc(json!({
            "cycle": ["week", "ly"], "interval": "2", "month": 2.5, "days": ["5", 7.4, [49, 50]],
            "enabled": "true", "time_window_start": "1.5e1", "ordinal": 3
        })))
        .expect("valid");
        assert_eq!(r.cycle, CycleField::Known(Cycle::Weekly));
        assert_eq!(r.interval, 2);
        assert_eq!(r.month, 3);
        assert_eq!(r.days, vec![5, 7, 12]);
        assert_eq!(r.enabled, Some(true));
        assert_eq!(r.window_start, 15);
        assert_eq!(r.ordinal, Ordinal::Other("3".into()));
        let r = build(&doc(
            json!({"interval": "two", "enabled": null, "cycle": null}),
        ))
        .expect("valid");
        assert_eq!(r.interval, 1);
        assert_eq!(r.enabled, None);
        assert_eq!(r.cycle, CycleField::Other("null".into()));
    }

    #[test]
    fn loader_crashes() {
        assert!(build(&doc(json!({"wdays": ["funday"]}))).is_err());
        assert!(build(&doc(json!({"wdays": [1]}))).is_err());
        assert!(build(&doc(json!({"days": [true]}))).is_err());
        assert!(build(&doc(json!({"days": ["x"]}))).is_err());
    }

    #[test]
    fn weekdays_sorted_and_wensday_accepted() {
        let r = build(&doc(json!({"wdays": ["friday", "wensday", "monday"]}))).expect("valid");
        assert_eq!(r.wdays, vec![1, 3, 5]);
        assert!(r.uses_wensday);
    }
}
