//! When does a rule next occur: Kazoo's `next_rule_date` for each cycle, reproduced clause by
//! clause with its bugs, plus the window test that decides whether a rule is active now.
//!
//! Owns: the recurrence arithmetic over [`Ymd`] dates. Must not: parse documents (see `rule`),
//! convert time zones (see `clock`), or explain results in words (see the parent module).
//!
//! Where Kazoo's code has no clause for a combination (a monthly rule with neither days nor
//! exactly one weekday), raises (interval 0), or never returns (an unknown ordinal makes its
//! month search loop for ever), the functions answer the matching [`Fault`].

use super::calendar::{
    add, date_to_gregorian_days, day_of_the_week, find_next_weekday, from_iso_week,
    gregorian_days_to_date, iso_week_number, last_day_of_the_month, mul, normalize, sub,
    trunc_multiple, Fault, Int, Res, Ymd, DAY,
};

/// A rule's recurrence kind (the `cycle` values Kazoo has clauses for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cycle {
    Date,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// The `ordinal` field. `Other` is any other text: Kazoo then loops for ever looking for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ordinal {
    /// first .. fifth as 0 .. 4.
    Nth(Int),
    Every,
    Last,
    Other(String),
}

impl Ordinal {
    /// `kz_date:ordinal_to_position/1`; `None` where it raises.
    fn position(&self) -> Option<Int> {
        match self {
            Ordinal::Nth(n) => Some(*n),
            _ => None,
        }
    }
}

/// The fields of a built rule that `next_rule_date` reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recurrence<'a> {
    pub cycle: Cycle,
    pub interval: Int,
    pub days: &'a [Int],
    /// ISO weekday numbers (1 = Monday), sorted as Kazoo sorts them; never empty (an empty
    /// list means all seven days).
    pub wdays: &'a [Int],
    pub ordinal: &'a Ordinal,
    pub month: Int,
    pub start: Ymd,
}

/// Facts noticed while computing, used to explain results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Notes {
    /// The occurrence came from a day number past its month's end (carried into the next
    /// month), e.g. day 31 in April giving May 1.
    pub day_spilled: bool,
    /// The occurrence came from an "nth weekday" that the month does not have (carried into
    /// the next month), e.g. the fifth Monday of February 2021 giving March 1.
    pub ordinal_spilled: bool,
}

const NO_CLAUSE: Fault = Fault::Crash(
    "no clause of Kazoo's next_rule_date fits (function_clause): monthly and yearly rules need days or exactly one weekday",
);
const ORDINAL_LOOP: Fault = Fault::Hang(
    "the ordinal is not one of first..fifth, every or last: Kazoo's search for that weekday loops for ever",
);
const YEARLY_LOOP: Fault = Fault::Hang(
    "no year of the rule's interval has that weekday occurrence in that month: Kazoo's yearly search loops for ever",
);

/// `next_rule_date/2`: the first occurrence Kazoo computes from `search` (today for weekly
/// rules, yesterday for the others). The answer may be an improper date; the caller
/// normalises it as Kazoo does.
pub(crate) fn next_rule_date(r: &Recurrence<'_>, search: Ymd, notes: &mut Notes) -> Res<Ymd> {
    match r.cycle {
        Cycle::Date => Ok(r.start),
        Cycle::Daily => daily(r, search),
        Cycle::Weekly => weekly(r, search, 0),
        Cycle::Monthly => monthly(r, search, notes),
        Cycle::Yearly => yearly(r, search, notes),
    }
}

fn daily(r: &Recurrence<'_>, today: Ymd) -> Res<Ymd> {
    let ds0 = date_to_gregorian_days(r.start)?;
    let ds1 = date_to_gregorian_days(today)?;
    let offset = trunc_multiple(sub(ds1, ds0)?, r.interval)?;
    normalize(Ymd::new(
        r.start.y,
        r.start.m,
        add(add(r.start.d, offset)?, r.interval)?,
    ))
}

/// Whole ISO weeks between the Mondays of two dates' ISO weeks (never negative).
fn iso_week_difference(a: Ymd, b: Ymd) -> Res<Int> {
    let (ya, wa) = iso_week_number(a)?;
    let (yb, wb) = iso_week_number(b)?;
    let da = date_to_gregorian_days(from_iso_week(ya, wa)?)?;
    let db = date_to_gregorian_days(from_iso_week(yb, wb)?)?;
    Ok(sub(da, db)?.abs() / 7)
}

fn weekly(r: &Recurrence<'_>, today: Ymd, depth: u8) -> Res<Ymd> {
    let dow0 = day_of_the_week(today)?;
    let distance = iso_week_difference(r.start, today)?;
    let offset = trunc_multiple(distance, r.interval)?;
    // Kazoo also computes the start's weekday here; it raises on the same dates as above.
    day_of_the_week(r.start)?;
    let first_active = r.wdays.iter().copied().find(|&d| d >= dow0);
    let active_week = distance == offset;
    match first_active {
        // A start later this week: search again from the start date (recursion depth 1, as the
        // start date is then "today").
        Some(_) if today < r.start && active_week && depth == 0 => weekly(r, r.start, 1),
        Some(day) if today == r.start && day == dow0 && active_week => Ok(r.start),
        Some(day) if active_week => normalize(Ymd::new(today.y, today.m, today.d + day - dow0)),
        _ => {
            let (wy0, w0) = iso_week_number(r.start)?;
            let monday = from_iso_week(wy0, add(add(w0, offset)?, r.interval)?)?;
            let first = r.wdays.first().copied().unwrap_or(1);
            normalize(Ymd::new(monday.y, monday.m, monday.d - 1 + first))
        }
    }
}

/// Month distance as Kazoo computes it (start month to search month).
fn month_distance(start: Ymd, search: Ymd) -> Res<Int> {
    add(sub(mul(sub(search.y, start.y)?, 12)?, start.m)?, search.m)
}

/// `{Y0 + M div 12, M rem 12, Day}` with Erlang's truncating `div`/`rem`.
fn year_month(y0: Int, m: Int, day: Int) -> Res<Ymd> {
    Ok(Ymd::new(add(y0, m / 12)?, m % 12, day))
}

/// True when an unnormalised date's day lies past its month's end (so normalising carries it
/// into a later month).
fn day_past_month_end(date: Ymd) -> bool {
    let month_only = match normalize(Ymd::new(date.y, date.m, 1)) {
        Ok(first) => first,
        Err(_) => return false,
    };
    match last_day_of_the_month(month_only.y, month_only.m) {
        Ok(last) => date.d > last,
        Err(_) => false,
    }
}

fn monthly(r: &Recurrence<'_>, search: Ymd, notes: &mut Notes) -> Res<Ymd> {
    let start = r.start;
    if let Some(&first_day) = r.days.first() {
        let distance = month_distance(start, search)?;
        let offset = trunc_multiple(distance, r.interval)?;
        // Kazoo keeps the days in the order given: the first listed day after yesterday's
        // day-of-month wins, even if an earlier day is listed later.
        let later = r.days.iter().copied().find(|&d| d > search.d);
        let raw = match later {
            Some(day) if distance == offset => year_month(start.y, add(start.m, offset)?, day)?,
            _ => year_month(start.y, add(add(start.m, offset)?, r.interval)?, first_day)?,
        };
        notes.day_spilled = day_past_month_end(raw);
        return normalize(raw);
    }
    let weekday = match r.wdays {
        [one] => *one,
        _ => return Err(NO_CLAUSE),
    };
    let distance = month_distance(start, search)?;
    let offset = trunc_multiple(distance, r.interval)?;
    let active = distance == offset;
    let next_month = add(add(start.m, offset)?, r.interval)?;
    match r.ordinal {
        Ordinal::Every => {
            if active {
                let date = find_next_weekday(search, weekday)?;
                if (date.y == search.y && date.m == search.m) || r.interval == 1 {
                    return Ok(date);
                }
            }
            let (date, spilled) = find_ordinal_weekday(start.y, next_month, weekday, Some(0))?;
            notes.ordinal_spilled = spilled;
            Ok(date)
        }
        Ordinal::Last => {
            if active {
                let date = find_last_weekday(search.y, search.m, weekday)?;
                if search.d < date.d {
                    return Ok(date);
                }
            }
            find_last_weekday(start.y, next_month, weekday)
        }
        Ordinal::Nth(_) | Ordinal::Other(_) => {
            if active {
                let (date, spilled) =
                    find_ordinal_weekday(search.y, search.m, weekday, r.ordinal.position())?;
                let this_month = date.m == search.m && search.d < date.d && r.interval > 1;
                let every_month = r.interval == 1 && (search.d < date.d || search.m < date.m);
                if this_month || every_month {
                    notes.ordinal_spilled = spilled;
                    return Ok(date);
                }
            }
            let (date, spilled) =
                find_ordinal_weekday(start.y, next_month, weekday, r.ordinal.position())?;
            notes.ordinal_spilled = spilled;
            Ok(date)
        }
    }
}

fn yearly(r: &Recurrence<'_>, search: Ymd, notes: &mut Notes) -> Res<Ymd> {
    let start = r.start;
    let month = r.month;
    let distance = sub(search.y, start.y)?;
    let offset = trunc_multiple(distance, r.interval)?;
    let active = distance == offset;
    let next_year = add(add(start.y, offset)?, r.interval)?;
    if let Some(&first_day) = r.days.first() {
        let raw = if !active || search.m > month {
            Ymd::new(next_year, month, first_day)
        } else if search.m < month {
            Ymd::new(search.y, month, first_day)
        } else {
            // Drop leading days up to yesterday's day, keep list order (same unsorted-days
            // behaviour as monthly rules).
            match r.days.iter().copied().find(|&d| search.d < d) {
                None => Ymd::new(next_year, month, first_day),
                Some(day) => Ymd::new(search.y, month, day),
            }
        };
        notes.day_spilled = day_past_month_end(raw);
        // The caller normalises (Kazoo returns this clause's date unnormalised).
        return Ok(raw);
    }
    let weekday = match r.wdays {
        [one] => *one,
        _ => return Err(NO_CLAUSE),
    };
    let in_this_year = |date: Ymd| {
        date.y == search.y && (search.m < month || (search.m == month && search.d < date.d))
    };
    match r.ordinal {
        Ordinal::Every => {
            if active {
                let date = find_next_weekday(Ymd::new(search.y, month, search.d), weekday)?;
                if date.m == month && in_this_year(date) {
                    return Ok(date);
                }
            }
            let (date, spilled) = find_ordinal_weekday(next_year, month, weekday, Some(0))?;
            notes.ordinal_spilled = spilled;
            Ok(date)
        }
        Ordinal::Last => {
            if active {
                let date = find_last_weekday(search.y, month, weekday)?;
                if in_this_year(date) {
                    return Ok(date);
                }
            }
            find_last_weekday(next_year, month, weekday)
        }
        Ordinal::Nth(_) | Ordinal::Other(_) => {
            let position = r.ordinal.position();
            if active {
                let (date, spilled) = find_ordinal_weekday(search.y, month, weekday, position)?;
                if date.m == month && in_this_year(date) {
                    notes.ordinal_spilled = spilled;
                    return Ok(date);
                }
            }
            find_next_yearly_ordinal_weekday(next_year, month, weekday, position, r.interval)
        }
    }
}

/// Keep trying later years (by the interval) until the nth weekday falls inside `month`.
fn find_next_yearly_ordinal_weekday(
    year: Int,
    month: Int,
    weekday: Int,
    position: Option<Int>,
    interval: Int,
) -> Res<Ymd> {
    let mut y = year;
    // Weekday patterns repeat every 400 years, so 400 tries (plus the years before year 0,
    // which all give the same date) cover every case that ever finishes.
    for _ in 0..1_000 {
        let (date, _) = find_ordinal_weekday(y, month, weekday, position)?;
        if date.m == month {
            return Ok(date);
        }
        y = add(y, interval)?;
    }
    Err(YEARLY_LOOP)
}

/// Carry a month above 12 into the year, as Kazoo's helpers do one year at a time.
fn carry_months(y: Int, m: Int) -> Res<(Int, Int)> {
    if m > 12 {
        Ok((add(y, (m - 1) / 12)?, (m - 1) % 12 + 1))
    } else {
        Ok((y, m))
    }
}

/// `find_ordinal_weekday/4`: the nth weekday of a (possibly improper) month. Kazoo retries the
/// following month whenever its unsafe helper raises, so invalid months walk forward; the
/// answer may lie in the next month when the month lacks a fifth occurrence (second value).
fn find_ordinal_weekday(y: Int, m: Int, weekday: Int, position: Option<Int>) -> Res<(Ymd, bool)> {
    let Some(position) = position else {
        return Err(ORDINAL_LOOP);
    };
    let (mut y, mut m) = carry_months(y, m)?;
    if y < 0 {
        // Every month before year 0 fails, and so does January of year 0.
        y = 0;
        m = 2;
    }
    if m <= 0 {
        m = 1;
    }
    for _ in 0..3 {
        match date_of_dow(y, m, weekday, position) {
            Ok(found) => return Ok(found),
            Err(_) => {
                (y, m) = carry_months(y, m + 1)?;
            }
        }
    }
    Err(Fault::Crash("no month could be computed"))
}

/// `find_last_weekday/2`: the fifth occurrence if it stays in the month, else the fourth.
fn find_last_weekday(y: Int, m: Int, weekday: Int) -> Res<Ymd> {
    let (y, m) = if m == 13 {
        (add(y, 1)?, 1)
    } else {
        carry_months(y, m)?
    };
    match date_of_dow(y, m, weekday, 4) {
        Ok((date, _)) if date.y == y && date.m == m => Ok(date),
        _ => Ok(date_of_dow(y, m, weekday, 3)?.0),
    }
}

/// `date_of_dow/4`: count from the last day of the previous month. The second value is true
/// when the answer left the requested month (no such occurrence that month).
fn date_of_dow(y: Int, m: Int, weekday: Int, position: Int) -> Res<(Ymd, bool)> {
    let (y, m) = if m == 1 { (sub(y, 1)?, 13) } else { (y, m) };
    let ref_month = m - 1;
    let ref_date = Ymd::new(y, ref_month, last_day_of_the_month(y, ref_month)?);
    let ref_days = date_to_gregorian_days(ref_date)?;
    let ref_dow = day_of_the_week(ref_date)?;
    let step = if ref_dow == weekday {
        7
    } else if weekday < ref_dow {
        weekday + (7 - ref_dow)
    } else {
        weekday - ref_dow
    };
    let days = add(add(ref_days, step)?, mul(7, position)?)?;
    let date = normalize(gregorian_days_to_date(days)?)?;
    let (want_y, want_m) = if m == 13 { (y + 1, 1) } else { (y, m) };
    Ok((date, date.y != want_y || date.m != want_m))
}

/// Whether `now` falls in the rule's window on its next occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// The window (on `base`) has not opened yet.
    Before { base: Ymd, opens: Int },
    /// The window (on `base`) has closed.
    After { base: Ymd, closed: Int },
    /// Inside the window (both ends inclusive).
    Active { base: Ymd, closes: Int },
}

impl Window {
    pub(crate) fn is_active(&self) -> bool {
        matches!(self, Window::Active { .. })
    }
}

/// The local "now" Kazoo compares against: the date, and gregorian seconds of the local wall
/// clock (seconds since 0000-01-01 00:00 as if the wall clock were UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalNow {
    pub date: Ymd,
    pub secs: Int,
}

impl LocalNow {
    /// Seconds since local midnight.
    pub(crate) fn second_of_day(&self) -> Int {
        self.secs.rem_euclid(DAY)
    }
}

/// The search start Kazoo uses: today for weekly rules, yesterday for every other cycle.
pub(crate) fn search_date(cycle: Cycle, today: Ymd) -> Res<Ymd> {
    match cycle {
        Cycle::Weekly => Ok(today),
        _ => normalize(Ymd::new(today.y, today.m, today.d - 1)),
    }
}

/// `process_rules/3` for one scheduled rule: find the base date, then test
/// `base 00:00 + start <= now <= base 00:00 + stop` on the local wall clock.
pub(crate) fn check_window(
    r: &Recurrence<'_>,
    window_start: Int,
    window_stop: Int,
    now: &LocalNow,
    notes: &mut Notes,
) -> Res<Window> {
    let search = search_date(r.cycle, now.date)?;
    let base = normalize(next_rule_date(r, search, notes)?)?;
    window_on(base, window_start, window_stop, now)
}

/// The window test on a given base date.
pub(crate) fn window_on(
    base: Ymd,
    window_start: Int,
    window_stop: Int,
    now: &LocalNow,
) -> Res<Window> {
    let midnight = mul(date_to_gregorian_days(base)?, DAY)?;
    let opens = add(midnight, window_start)?;
    let closes = add(midnight, window_stop)?;
    Ok(if now.secs < opens {
        Window::Before { base, opens }
    } else if now.secs > closes {
        Window::After {
            base,
            closed: closes,
        }
    } else {
        Window::Active { base, closes }
    })
}
