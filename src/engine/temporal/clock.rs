//! Time zones the way Kazoo's temporal routes use them: which zone applies (the node's
//! `timezone`, else the account's, else the system default), the local wall-clock "now", and a
//! rule's start date converted from UTC seconds to a local date.
//!
//! Owns: zone names, offsets and the conversions (through `chrono-tz`). Must not: read the
//! clock (the instant is handed in) or know about rule recurrence.
//!
//! Kazoo converts with the erlang-localtime library: it accepts zone names with spaces for
//! underscores, treats "UTC"/"Etc/UTC"/"GMT" and "+HH:MM"/"-HH:MM" specially when computing
//! "now", and when converting a start date it fails (crashing the module) for offsets it does
//! not know and for instants in the second pass of a repeated (fall-back) hour.

use std::borrow::Cow;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::calendar::{Fault, Int, Res, Ymd, DAY};
use super::recurrence::LocalNow;
use super::rule::{to_binary, utc_date_of};

/// Kazoo's system default (`accounts.default_timezone`).
pub const DEFAULT_TIMEZONE: &str = "America/Los_Angeles";

/// Gregorian seconds (since 0000-01-01) of the Unix epoch.
const UNIX_EPOCH_GREGORIAN: Int = 62_167_219_200;

/// Where the zone name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimezoneSource {
    /// The node's `data.timezone`.
    Node,
    /// The account document's `timezone`.
    Account,
    /// Neither was usable (missing or "inherit"): the system default.
    SystemDefault,
}

/// A usable zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    Named(Tz),
    /// "+HH:MM" / "-HH:MM" (and "+00:00"): usable for "now", unknown to the start-date
    /// conversion.
    Offset(i64),
}

/// Picks the zone name as `cf_util:get_timezone/2` and `kzd_accounts:timezone/1` do. The
/// account's parent chain is not followed ("inherit" on the account goes straight to the
/// system default).
pub(crate) fn zone_name(
    data: &Map<String, Value>,
    account_timezone: Option<&str>,
) -> (String, TimezoneSource) {
    match data.get("timezone").and_then(to_binary) {
        Some(tz) if !tz.is_empty() && tz != "inherit" => (tz.into_owned(), TimezoneSource::Node),
        _ => match account_timezone {
            Some(tz) if tz != "inherit" => (tz.to_owned(), TimezoneSource::Account),
            _ => (DEFAULT_TIMEZONE.to_owned(), TimezoneSource::SystemDefault),
        },
    }
}

/// Resolves a zone name for computing "now" (`kz_time:adjust_utc_timestamp/2`).
pub(crate) fn parse_zone(name: &str) -> Res<Zone> {
    if name == "+00:00" {
        return Ok(Zone::Offset(0));
    }
    if let Some(rest) = name.strip_prefix(['+', '-']) {
        let negative = name.starts_with('-');
        let bytes = rest.as_bytes();
        let parsed = if bytes.len() == 5 && bytes[2] == b':' {
            two_digit(&rest[..2]).zip(two_digit(&rest[3..]))
        } else {
            None
        };
        let (h, m) = parsed.ok_or(Fault::Crash(
            "the time zone looks like an offset but is not +HH:MM (invalid_offset)",
        ))?;
        let secs = h * 3600 + m * 60;
        return Ok(Zone::Offset(if negative { -secs } else { secs }));
    }
    // erlang-localtime reads spaces as underscores ("America/Los Angeles").
    let normalized = if name.contains(' ') {
        Cow::Owned(name.replace(' ', "_"))
    } else {
        Cow::Borrowed(name)
    };
    Tz::from_str(&normalized)
        .map(Zone::Named)
        .map_err(|_| Fault::Crash("unknown time zone (Kazoo raises unknown_tz)"))
}

/// The two-byte integer casts Kazoo applies to an offset's hours and minutes (Erlang integer
/// syntax, so "-1" is accepted).
fn two_digit(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// The local wall clock at `now` (whole seconds, as Erlang's `universal_time/0` gives).
pub(crate) fn local_now(zone: Zone, now: DateTime<Utc>) -> LocalNow {
    let naive = match zone {
        Zone::Named(tz) => now.with_timezone(&tz).naive_local(),
        Zone::Offset(secs) => now.naive_utc() + chrono::Duration::seconds(secs),
    };
    let secs = Int::from(naive.and_utc().timestamp()) + UNIX_EPOCH_GREGORIAN;
    let days = secs.div_euclid(DAY);
    // 1970 +/- chrono's range is far inside what the calendar port handles.
    let date = utc_date_of(days * DAY).unwrap_or(Ymd::new(1970, 1, 1));
    LocalNow { date, secs }
}

/// `kz_date:from_gregorian_seconds/2`: the local date of a start instant given in gregorian
/// seconds, with the failures erlang-localtime has.
pub(crate) fn start_date(zone: Zone, gregorian: Int) -> Res<Ymd> {
    if gregorian < 0 {
        return Err(Fault::Crash(
            "start_date is negative (Erlang's calendar raises)",
        ));
    }
    let tz = match zone {
        Zone::Named(tz) => tz,
        Zone::Offset(_) => {
            return Err(Fault::Crash(
                "the start-date conversion does not know offset time zones (badmatch in Kazoo)",
            ))
        }
    };
    let unix = gregorian - UNIX_EPOCH_GREGORIAN;
    let instant = DateTime::<Utc>::from_timestamp(unix, 0);
    let Some(instant) = instant else {
        // Outside the zone database's range: the UTC date is as good as any (such dates are
        // decades of millennia away, so only their order matters).
        return utc_date_of(gregorian);
    };
    let local = instant.with_timezone(&tz);
    let wall: NaiveDateTime = local.naive_local();
    let offset = i64::from(local.offset().fix().local_minus_utc());
    if gregorian + Int::from(offset) < 0 {
        return Err(Fault::Crash(
            "start_date is before year 0 in local time (Erlang's calendar raises)",
        ));
    }
    // Only an instant shortly after a backward shift can be the second pass of a repeated
    // hour: compare with the offset three hours earlier before asking the zone.
    let earlier = instant - chrono::Duration::hours(3);
    let earlier_offset = i64::from(earlier.with_timezone(&tz).offset().fix().local_minus_utc());
    if earlier_offset <= offset {
        let secs = Int::from(wall.and_utc().timestamp()) + UNIX_EPOCH_GREGORIAN;
        return utc_date_of(secs);
    }
    if let LocalResult::Ambiguous(a, b) = tz.from_local_datetime(&wall) {
        let later = if a.timestamp() > b.timestamp() { a } else { b };
        if later.timestamp() == instant.timestamp() {
            return Err(Fault::Crash(
                "start_date falls in the repeated hour after a DST change: erlang-localtime answers two times and Kazoo's match fails",
            ));
        }
    }
    let secs = Int::from(wall.and_utc().timestamp()) + UNIX_EPOCH_GREGORIAN;
    utc_date_of(secs)
}

/// Gregorian seconds for a UTC date-time (for tests and explanations).
#[cfg(test)]
pub(crate) fn gregorian_seconds(t: DateTime<Utc>) -> Int {
    Int::from(t.timestamp()) + UNIX_EPOCH_GREGORIAN
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ny() -> Zone {
        parse_zone("America/New_York").expect("known zone")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn zone_resolution_order() {
        let data = json!({"timezone": "Europe/Paris"});
        let data = data.as_object().expect("object");
        assert_eq!(zone_name(data, Some("UTC")).1, TimezoneSource::Node);
        let inherit = json!({"timezone": "inherit"});
        let inherit = inherit.as_object().expect("object");
        assert_eq!(
            zone_name(inherit, Some("Asia/Tokyo")),
            ("Asia/Tokyo".to_owned(), TimezoneSource::Account)
        );
        assert_eq!(
            zone_name(inherit, Some("inherit")),
            (DEFAULT_TIMEZONE.to_owned(), TimezoneSource::SystemDefault)
        );
        assert_eq!(
            zone_name(&Map::new(), None).1,
            TimezoneSource::SystemDefault
        );
    }

    #[test]
    fn zone_parsing() {
        assert!(parse_zone("America/Los Angeles").is_ok());
        assert_eq!(parse_zone("-05:30"), Ok(Zone::Offset(-19_800)));
        assert!(parse_zone("+5").is_err());
        assert!(parse_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn schema_default_start_date_is_1983_04_11() {
        // 62586115200 is 1983-04-11 08:00 UTC (not 2011-01-01): midnight in Los Angeles, still
        // the 10th in Honolulu.
        let la = parse_zone(DEFAULT_TIMEZONE).expect("known zone");
        assert_eq!(start_date(la, 62_586_115_200), Ok(Ymd::new(1983, 4, 11)));
        let utc_zone = parse_zone("UTC").expect("known zone");
        assert_eq!(
            start_date(utc_zone, 62_586_115_200),
            Ok(Ymd::new(1983, 4, 11))
        );
        let hawaii = parse_zone("Pacific/Honolulu").expect("known zone");
        assert_eq!(
            start_date(hawaii, 62_586_115_200),
            Ok(Ymd::new(1983, 4, 10))
        );
        assert_eq!(
            start_date(utc_zone, 63_461_059_200),
            Ok(Ymd::new(2011, 1, 1))
        );
    }

    #[test]
    fn repeated_hour_start_crashes_only_on_second_pass() {
        // 2026-11-01: 05:30Z is 01:30 EDT (first pass), 06:30Z is 01:30 EST (second pass).
        let first = gregorian_seconds(utc("2026-11-01T05:30:00Z"));
        let second = gregorian_seconds(utc("2026-11-01T06:30:00Z"));
        assert_eq!(start_date(ny(), first), Ok(Ymd::new(2026, 11, 1)));
        assert!(start_date(ny(), second).is_err());
    }

    #[test]
    fn local_now_follows_dst() {
        let before = local_now(ny(), utc("2026-03-08T06:59:00Z"));
        let after = local_now(ny(), utc("2026-03-08T07:00:00Z"));
        assert_eq!(before.second_of_day(), 3600 + 59 * 60);
        assert_eq!(after.second_of_day(), 3 * 3600);
        assert_eq!(after.date, Ymd::new(2026, 3, 8));
    }
}
