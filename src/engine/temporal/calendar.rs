//! Kazoo's date arithmetic, reproduced: the parts of Erlang's `calendar` module and of Kazoo's
//! `kz_date` helpers that temporal rules use, including every place where they raise.
//!
//! Owns: improper dates (a month of 13, a day of 31 in April, a day of 0) and how Kazoo
//! normalises them, day counts since year 0, weekdays, ISO weeks. Must not: read clocks or time
//! zones (that is `clock`), know about rule documents (that is `rule`).
//!
//! Every function answers `Err(Fault)` where the Erlang original raises, so callers can
//! reproduce a crash of Kazoo's process instead of inventing a value. Arithmetic is on `i64`
//! (native division keeps it fast) with checked operations: `rule` clamps inputs to ±2^32
//! (start dates to ±2^40 seconds), far beyond any meaningful value and far below the limit,
//! and a checked failure is reported as a crash rather than a panic.

/// Integer type of all date arithmetic (Erlang integers are unbounded; see the clamps in
/// `rule`).
pub(crate) type Int = i64;

/// Seconds in a day.
pub(crate) const DAY: Int = 86_400;

/// How Kazoo's process ends when a computation cannot finish normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The Erlang process raises (function_clause, badarith, badmatch, ...): the executor
    /// treats the module as crashed and continues to `_`.
    Crash(&'static str),
    /// The Erlang process loops forever: the call never leaves this node.
    Hang(&'static str),
}

pub(crate) type Res<T> = Result<T, Fault>;

const OVERFLOW: Fault = Fault::Crash("a number in the rule is too large to compute with");

/// Checked arithmetic that reports overflow as a crash (never reached with clamped inputs).
pub(crate) fn add(a: Int, b: Int) -> Res<Int> {
    a.checked_add(b).ok_or(OVERFLOW)
}
pub(crate) fn sub(a: Int, b: Int) -> Res<Int> {
    a.checked_sub(b).ok_or(OVERFLOW)
}
pub(crate) fn mul(a: Int, b: Int) -> Res<Int> {
    a.checked_mul(b).ok_or(OVERFLOW)
}
/// Erlang's `trunc(A / B) * B` for integers: division rounding toward zero (the float
/// division is exact enough for every distance a rule can produce), `badarith` on zero.
pub(crate) fn trunc_multiple(a: Int, b: Int) -> Res<Int> {
    if b == 0 {
        return Err(Fault::Crash(
            "interval 0 divides by zero (badarith in Kazoo)",
        ));
    }
    let q = a.checked_div(b).ok_or(OVERFLOW)?;
    mul(q, b)
}

/// A date as Kazoo passes it around: `{Year, Month, Day}` where month and day may be out of
/// range until normalised. Field order gives Erlang's tuple ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ymd {
    pub y: Int,
    pub m: Int,
    pub d: Int,
}

impl Ymd {
    pub(crate) const fn new(y: Int, m: Int, d: Int) -> Self {
        Ymd { y, m, d }
    }
}

/// Beyond this magnitude the day-count formulas are not used (far outside anything a clamped
/// rule can produce); reported as a crash instead of risking overflow.
const LIMIT: Int = 1 << 50;

fn in_range(v: Int) -> Res<Int> {
    if v.abs() > LIMIT {
        Err(OVERFLOW)
    } else {
        Ok(v)
    }
}

/// Days from 0000-01-01 to a valid proleptic Gregorian date (no checks).
fn days_from_civil(y: Int, m: Int, d: Int) -> Res<Int> {
    let y = in_range(y)? - Int::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // 0000-03-01 is day 60 of year 0 (a leap year); the era formula counts from March.
    add(mul(era, 146_097)?, doe + 60)
}

/// Inverse of [`days_from_civil`] for any day count.
fn civil_from_days(n: Int) -> Res<Ymd> {
    let z = in_range(n)? - 60;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = add(mul(era, 400)?, yoe)? + Int::from(m <= 2);
    Ok(Ymd::new(y, m, d))
}

/// `calendar:is_leap_year/1`: only defined for years >= 0.
pub(crate) fn is_leap_year(y: Int) -> Res<bool> {
    if y < 0 {
        return Err(Fault::Crash("a negative year reached Erlang's calendar"));
    }
    Ok(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
}

/// `calendar:last_day_of_the_month/2`: years >= 0, months 1..12.
pub(crate) fn last_day_of_the_month(y: Int, m: Int) -> Res<Int> {
    if y < 0 {
        return Err(Fault::Crash("a negative year reached Erlang's calendar"));
    }
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => Ok(31),
        4 | 6 | 9 | 11 => Ok(30),
        2 => Ok(if is_leap_year(y)? { 29 } else { 28 }),
        _ => Err(Fault::Crash(
            "a month outside 1..12 reached Erlang's calendar",
        )),
    }
}

/// `calendar:date_to_gregorian_days/1`: the date must be valid (day >= 1, day <= month length,
/// year >= 0).
pub(crate) fn date_to_gregorian_days(date: Ymd) -> Res<Int> {
    if date.d <= 0 {
        return Err(Fault::Crash("a day below 1 reached Erlang's calendar"));
    }
    let last = last_day_of_the_month(date.y, date.m)?;
    if date.d > last {
        return Err(Fault::Crash(
            "a day past the end of its month reached Erlang's calendar",
        ));
    }
    days_from_civil(date.y, date.m, date.d)
}

/// `calendar:gregorian_days_to_date/1`: only for day counts >= 0.
pub(crate) fn gregorian_days_to_date(days: Int) -> Res<Ymd> {
    if days < 0 {
        return Err(Fault::Crash(
            "a date before year 0 reached Erlang's calendar",
        ));
    }
    civil_from_days(days)
}

/// `calendar:day_of_the_week/1`: 1 = Monday .. 7 = Sunday.
pub(crate) fn day_of_the_week(date: Ymd) -> Res<Int> {
    Ok((date_to_gregorian_days(date)? + 5) % 7 + 1)
}

/// Gregorian day of Monday of ISO week 1 of `year` (OTP's private helper).
fn iso_week_one(year: Int) -> Res<Int> {
    let jan1 = Ymd::new(year, 1, 1);
    let d0101 = date_to_gregorian_days(jan1)?;
    let dow = day_of_the_week(jan1)?;
    Ok(if dow <= 4 {
        d0101 - dow + 1
    } else {
        d0101 + 7 - dow + 1
    })
}

/// `calendar:iso_week_number/1`, including its crash for the first days of year 0 (it looks at
/// year -1).
pub(crate) fn iso_week_number(date: Ymd) -> Res<(Int, Int)> {
    let d = date_to_gregorian_days(date)?;
    let w01 = iso_week_one(date.y)?;
    let w01_next = iso_week_one(add(date.y, 1)?)?;
    if w01 <= d && d < w01_next {
        Ok((date.y, (d - w01) / 7 + 1))
    } else if d < w01 {
        let prev = date.y - 1;
        let weeks = if day_of_the_week(Ymd::new(prev, 1, 1))? == 4
            || day_of_the_week(Ymd::new(prev, 12, 31))? == 4
        {
            53
        } else {
            52
        };
        Ok((prev, weeks))
    } else {
        Ok((date.y + 1, 1))
    }
}

/// `kz_date:days_in_month/2`: months 0 and 13 mean the neighbouring years' December/January;
/// anything else outside 1..12 raises.
pub(crate) fn days_in_month(y: Int, m: Int) -> Res<Int> {
    match m {
        0 | 13 => Ok(31),
        2 => Ok(if is_leap_year(y)? { 29 } else { 28 }),
        1..=12 => last_day_of_the_month(y.max(0), m),
        _ => Err(Fault::Crash(
            "a negative month reached kz_date:days_in_month",
        )),
    }
}

/// `kz_date:normalize/1`: carries months over 12 into years, month 0 into the previous
/// December, day 0 into the last day of the previous month, and days past the month's end into
/// the following months (this is the "spill-over" behind several Kazoo quirks). Negative days
/// are returned unchanged (later calendar calls then raise), and a negative month raises.
pub(crate) fn normalize(date: Ymd) -> Res<Ymd> {
    let Ymd {
        mut y,
        mut m,
        mut d,
    } = date;
    // Each pass applies the first matching Erlang clause; only the day-overflow clause can
    // repeat many times, and it is done in one step once the year is >= 0, so the loop is short.
    for _ in 0..64 {
        if m == 0 {
            y = sub(y, 1)?;
            m = 12;
            continue;
        }
        if d == 0 {
            let prev = normalize_month_start(y, m)?;
            let last = last_day_of_the_month(prev.y, prev.m)?;
            return Ok(Ymd::new(prev.y, prev.m, last));
        }
        if m > 12 {
            y = add(y, m / 12)?;
            m %= 12;
            continue;
        }
        let dim = days_in_month(y, m)?;
        if d - dim <= 0 {
            return Ok(Ymd::new(y, m, d));
        }
        if y >= 0 {
            // Stepping month by month from the 1st of (y, m) is adding d - 1 days.
            let first = days_from_civil(y, m, 1)?;
            return civil_from_days(add(first, d - 1)?);
        }
        m += 1;
        d -= dim;
    }
    Err(Fault::Crash("date normalisation did not settle"))
}

/// `normalize({Y, M - 1, 1})`, the first step of the day-0 clause.
fn normalize_month_start(y: Int, m: Int) -> Res<Ymd> {
    normalize(Ymd::new(y, sub(m, 1)?, 1))
}

/// `kz_date:from_iso_week/1`: Monday of ISO week `week` of `year` (weeks past the year's end
/// simply count on).
pub(crate) fn from_iso_week(year: Int, week: Int) -> Res<Ymd> {
    let jan4 = Ymd::new(year, 1, 4);
    let jan4_days = date_to_gregorian_days(jan4)?;
    let jan4_dow = day_of_the_week(jan4)?;
    let days = add(jan4_days - (jan4_dow - 1), mul(sub(week, 1)?, 7)?)?;
    gregorian_days_to_date(days)
}

/// `kz_date:find_next_weekday/2`: the next `dow` strictly after `date` when `date` is that
/// weekday, else the next one on or after it.
pub(crate) fn find_next_weekday(date: Ymd, dow: Int) -> Res<Ymd> {
    let cur = day_of_the_week(date)?;
    let step = if cur == dow {
        7
    } else if dow > cur {
        dow - cur
    } else {
        7 - cur + dow
    };
    normalize(Ymd::new(date.y, date.m, add(date.d, step)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counts_match_erlang_calendar() {
        assert_eq!(date_to_gregorian_days(Ymd::new(0, 1, 1)), Ok(0));
        assert_eq!(date_to_gregorian_days(Ymd::new(2011, 1, 1)), Ok(734_503));
        assert_eq!(gregorian_days_to_date(734_503), Ok(Ymd::new(2011, 1, 1)));
        assert_eq!(day_of_the_week(Ymd::new(0, 1, 1)), Ok(6));
        assert_eq!(day_of_the_week(Ymd::new(2021, 3, 1)), Ok(1));
        for n in [0, 59, 60, 365, 366, 1000, 734_503, 800_000, 146_097 * 7 + 3] {
            let date = gregorian_days_to_date(n).expect("valid day count");
            assert_eq!(date_to_gregorian_days(date), Ok(n), "{date:?}");
        }
    }

    #[test]
    fn invalid_dates_raise_like_erlang() {
        assert!(date_to_gregorian_days(Ymd::new(2021, 2, 30)).is_err());
        assert!(date_to_gregorian_days(Ymd::new(-1, 12, 31)).is_err());
        assert!(gregorian_days_to_date(-1).is_err());
        assert!(iso_week_number(Ymd::new(0, 1, 1)).is_err());
        assert_eq!(iso_week_number(Ymd::new(0, 1, 3)), Ok((0, 1)));
        assert!(is_leap_year(-4).is_err());
    }

    #[test]
    fn iso_weeks() {
        assert_eq!(iso_week_number(Ymd::new(2021, 1, 1)), Ok((2020, 53)));
        assert_eq!(iso_week_number(Ymd::new(2019, 12, 30)), Ok((2020, 1)));
        assert_eq!(from_iso_week(2020, 53), Ok(Ymd::new(2020, 12, 28)));
        assert_eq!(from_iso_week(2021, 1), Ok(Ymd::new(2021, 1, 4)));
    }

    #[test]
    fn normalize_spills_like_kz_date() {
        assert_eq!(normalize(Ymd::new(2011, 1, 36)), Ok(Ymd::new(2011, 2, 5)));
        assert_eq!(normalize(Ymd::new(2021, 4, 31)), Ok(Ymd::new(2021, 5, 1)));
        assert_eq!(normalize(Ymd::new(2021, 3, 0)), Ok(Ymd::new(2021, 2, 28)));
        assert_eq!(normalize(Ymd::new(2021, 1, 0)), Ok(Ymd::new(2020, 12, 31)));
        assert_eq!(normalize(Ymd::new(2021, 0, 5)), Ok(Ymd::new(2020, 12, 5)));
        assert_eq!(normalize(Ymd::new(2020, 24, 5)), Ok(Ymd::new(2021, 12, 5)));
        assert_eq!(normalize(Ymd::new(2020, 13, 40)), Ok(Ymd::new(2021, 2, 9)));
        assert_eq!(normalize(Ymd::new(2021, 5, -3)), Ok(Ymd::new(2021, 5, -3)));
        assert_eq!(normalize(Ymd::new(-1, 12, 40)), Ok(Ymd::new(0, 1, 9)));
        assert!(normalize(Ymd::new(2021, -1, 5)).is_err());
        assert!(normalize(Ymd::new(-3, 12, 70)).is_err());
        assert_eq!(normalize(Ymd::new(2021, 1, 400)), Ok(Ymd::new(2022, 2, 4)));
    }

    #[test]
    fn next_weekday() {
        // 2021-03-01 is a Monday: the next Monday is a week later, the next Friday this week.
        assert_eq!(
            find_next_weekday(Ymd::new(2021, 3, 1), 1),
            Ok(Ymd::new(2021, 3, 8))
        );
        assert_eq!(
            find_next_weekday(Ymd::new(2021, 3, 1), 5),
            Ok(Ymd::new(2021, 3, 5))
        );
        assert_eq!(
            find_next_weekday(Ymd::new(2021, 3, 5), 2),
            Ok(Ymd::new(2021, 3, 9))
        );
    }
}
