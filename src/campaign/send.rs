//! Send windows and time zones: when each target may be contacted, in the customer's own
//! local time, as an instant in UTC.
//!
//! `"send_window": {"from": "09:00", "to": "20:00", "days": ["mon", ..., "sat"],
//! "time_zone": {"feature": "tz"}, "default_time_zone": "Europe/Berlin"}` gives every row of
//! the list its earliest allowed send time (`send_at`): the run's time if that is inside the
//! customer's window, else the start of their next window. The zone is the customer's `tz`
//! (a text column: IANA names such as `America/New_York`), else the default.
//!
//! Zones come from `chrono-tz`, which compiles the IANA database into the binary: a run gives
//! the same bytes on every machine whatever its own zone files, and daylight-saving changes
//! are those of the database. A window holds the instants whose local time is inside it: one
//! a spring-forward gap swallows whole holds none that day (a window the gap cuts opens at its
//! end), and on a night whose hour repeats, the window's minutes come round twice.
//!
//! The same zones give calendar periods: the start of the customer's local week (a frequency
//! cap over `calendar_week`) and of the campaign's local day or week (a calendar capacity).
//! This module also reads its part of the campaign file ([`read`]). Pure: no I/O, no clock
//! (the run's time is passed in).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use simd_json::prelude::*;

use crate::model::walk::{index, join, Faults, Value};

/// The week's days as campaign files name them, Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A send window, checked: minutes after local midnight, the allowed days, the zones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendWindow {
    /// First allowed minute of the local day.
    pub from_minute: u32,
    /// First minute no longer allowed (up to 1440).
    pub to_minute: u32,
    /// Allowed days, bit 0 Monday.
    pub days: u8,
    /// The text column holding each customer's zone name, if any.
    pub zone_feature: Option<String>,
    /// The zone of customers without a known one, and the campaign's own.
    pub default_time_zone: String,
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes after midnight.
pub fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// The IANA zone of that name, if the database has it.
pub fn zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// The first instant whose local time in `tz` is at least `local` (the end of a gap when a
/// daylight-saving change skips `local`).
fn instant(tz: Tz, local: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(first, _) => first,
        LocalResult::None => {
            // Skipped: step by minutes to the first local time that exists (gaps last at
            // most a few hours).
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t;
                }
            }
            tz.from_utc_datetime(&local)
        }
    }
}

/// The last instant whose local time in `tz` is `local` (the second of a repeated hour's two;
/// the end of a gap, as [`instant`], when a change skips it).
fn last_instant(tz: Tz, local: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&local) {
        LocalResult::Ambiguous(_, second) => second,
        _ => instant(tz, local),
    }
}

fn at_minute(date: NaiveDate, minute: u32) -> NaiveDateTime {
    date.and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .checked_add_signed(Duration::minutes(i64::from(minute)))
        .unwrap_or_default()
}

fn utc_ms(now_ms: i64) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp_millis(now_ms).unwrap_or_default()
}

impl SendWindow {
    /// The earliest instant at or after `now_ms` inside the window in `tz` (Unix ms); `None`
    /// when the window is empty (no day, or `from` not before `to`).
    pub fn earliest(&self, tz: Tz, now_ms: i64) -> Option<i64> {
        if self.days == 0 || self.from_minute >= self.to_minute {
            return None;
        }
        let local_today = utc_ms(now_ms).with_timezone(&tz).date_naive();
        // Two weeks: a window open one day a week that a spring-forward gap swallows opens
        // on that day of the week after.
        for ahead in 0..15 {
            let date = local_today + Duration::days(ahead);
            if self.days >> date.weekday().num_days_from_monday() & 1 == 0 {
                continue;
            }
            // From the first instant the local clock shows `from` to the last it shows `to`
            // (the second, on a night whose hour repeats): inside that span the local time is
            // in the window but where a change moves it out, a repeated hour's first pass
            // beyond `to`; a window a spring-forward gap swallows whole holds no instant.
            let start = instant(tz, at_minute(date, self.from_minute)).timestamp_millis();
            let end = last_instant(tz, at_minute(date, self.to_minute)).timestamp_millis();
            let mut t = start.max(now_ms);
            while t < end {
                if self.holds(tz, date, t) {
                    return Some(t);
                }
                t = (t.div_euclid(60_000) + 1) * 60_000;
            }
        }
        None
    }

    /// Whether the local time of `t` in `tz` is on `date` and inside the window's minutes.
    fn holds(&self, tz: Tz, date: NaiveDate, t: i64) -> bool {
        let local = utc_ms(t).with_timezone(&tz).naive_local();
        let minute = (local - at_minute(date, 0)).num_minutes();
        (i64::from(self.from_minute)..i64::from(self.to_minute)).contains(&minute)
    }
}

/// The start of the local day in `tz` that holds `now_ms` (Unix ms).
pub fn day_start(tz: Tz, now_ms: i64) -> i64 {
    let date = utc_ms(now_ms).with_timezone(&tz).date_naive();
    instant(tz, at_minute(date, 0)).timestamp_millis()
}

/// The start of the local week (Monday 00:00) in `tz` that holds `now_ms` (Unix ms).
pub fn week_start(tz: Tz, now_ms: i64) -> i64 {
    let date = utc_ms(now_ms).with_timezone(&tz).date_naive();
    let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
    instant(tz, at_minute(monday, 0)).timestamp_millis()
}

/// A send time as the list states it: rounded up to the whole second (never before the
/// window opens), in milliseconds.
pub fn whole_second(ms: i64) -> i64 {
    (ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) > 0)) * 1000
}

/// An instant as the list writes it: RFC 3339 in UTC, whole seconds (rounded up, so never
/// before the window opens).
pub fn format_utc(ms: i64) -> String {
    DateTime::from_timestamp(whole_second(ms) / 1000, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Customers' zones by name, each name parsed once; unknown names fall back to the default
/// and are counted.
pub struct Zones {
    default: Tz,
    /// True when a zone feature names each customer's zone (so a row without one is counted).
    by_feature: bool,
    parsed: HashMap<Box<str>, Option<Tz>>,
    /// Rows whose zone name the database does not know, by name.
    pub unknown: HashMap<Box<str>, u64>,
    /// Rows whose customer has no zone in the zone feature (an empty cell).
    pub missing: u64,
}

impl Zones {
    /// Zones with `default` for customers without a known one; `by_feature` when the window
    /// reads each customer's zone from a feature.
    pub fn new(default: Tz, by_feature: bool) -> Self {
        Zones {
            default,
            by_feature,
            parsed: HashMap::new(),
            unknown: HashMap::new(),
            missing: 0,
        }
    }

    /// The zone of a customer whose zone name is `name` (none or empty: the default).
    pub fn of(&mut self, name: Option<&str>) -> Tz {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            self.missing += u64::from(self.by_feature);
            return self.default;
        };
        let tz = match self.parsed.get(name) {
            Some(tz) => *tz,
            None => {
                let tz = zone(name);
                self.parsed.insert(name.into(), tz);
                tz
            }
        };
        tz.unwrap_or_else(|| {
            *self.unknown.entry(name.into()).or_default() += 1;
            self.default
        })
    }
}

/// Reads `send_window` from a campaign file: local hours and days, and where each customer's
/// time zone comes from; every fault with its path.
pub fn read(f: &mut Faults, v: &Value<'_>) -> Option<SendWindow> {
    let path = "send_window";
    let obj = f.object(
        v,
        path,
        &["from", "to", "days", "time_zone", "default_time_zone"],
    )?;
    let clock = |f: &mut Faults, key: &str| {
        let p = join(path, key);
        let s = f.req(obj, key, path).and_then(|v| f.string(v, &p, 8))?;
        let m = parse_clock(s);
        if m.is_none() {
            f.push(
                &p,
                format!("`{s}`: expected a local time HH:MM, 00:00 to 24:00"),
            );
        }
        m
    };
    let (from, to) = (clock(f, "from"), clock(f, "to"));
    if let (Some(a), Some(b)) = (from, to) {
        if a >= b {
            f.push(
                path,
                "the send window is empty: `from` must be before `to` (a window past midnight is two days' windows)",
            );
        }
    }
    let days = match obj.get("days") {
        None => Some(0x7f),
        Some(v) => f.string_list(v, &join(path, "days"), 7).map(|list| {
            let mut mask = 0u8;
            for (i, d) in list.iter().enumerate() {
                match DAYS.iter().position(|x| x == d) {
                    Some(k) => mask |= 1 << k,
                    None => f.push(
                        &index(&join(path, "days"), i),
                        format!("`{d}`: expected one of {}", DAYS.join(", ")),
                    ),
                }
            }
            mask
        }),
    };
    let zone_feature = match obj.get("time_zone") {
        None => Some(None),
        Some(z) => {
            let p = join(path, "time_zone");
            f.object(z, &p, &["feature"]).and_then(|o| {
                f.req(o, "feature", &p)
                    .and_then(|v| f.string(v, &join(&p, "feature"), 128))
                    .map(|s| Some(s.to_owned()))
            })
        }
    };
    let default = f
        .req(obj, "default_time_zone", path)
        .and_then(|v| f.string(v, &join(path, "default_time_zone"), 64));
    if let Some(name) = default {
        if zone(name).is_none() {
            f.push(
                &join(path, "default_time_zone"),
                format!(
                    "unknown time zone `{name}`: expected an IANA name such as `Europe/Berlin`"
                ),
            );
        }
    }
    Some(SendWindow {
        from_minute: from?,
        to_minute: to?,
        days: days?,
        zone_feature: zone_feature?,
        default_time_zone: default.filter(|n| zone(n).is_some())?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    fn window(from: &str, to: &str, days: &[&str]) -> SendWindow {
        SendWindow {
            from_minute: parse_clock(from).unwrap(),
            to_minute: parse_clock(to).unwrap(),
            days: days
                .iter()
                .map(|d| 1u8 << DAYS.iter().position(|x| x == d).unwrap())
                .fold(0, |a, b| a | b),
            zone_feature: None,
            default_time_zone: "Europe/Berlin".into(),
        }
    }

    const WEEK: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

    #[test]
    fn berlin_across_the_october_change() {
        let berlin = zone("Europe/Berlin").unwrap();
        let w = window("09:00", "20:00", WEEK);
        // Saturday 24 October 2026, 21:00 CEST (UTC+2): the next window is Sunday 09:00,
        // which is CET (UTC+1) after the change at 03:00 that night.
        let at = w.earliest(berlin, ms("2026-10-24T19:00:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-10-25T08:00:00Z");
        // The day before the change, 09:00 CEST is 07:00 UTC.
        let at = w.earliest(berlin, ms("2026-10-24T03:00:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-10-24T07:00:00Z");
        // Inside the window: now, rounded up to the second.
        let at = w.earliest(berlin, ms("2026-10-25T10:00:00.250Z")).unwrap();
        assert_eq!(format_utc(at), "2026-10-25T10:00:01Z");
        // A window in the repeated hour (02:00-03:00 happens twice): its first start.
        let night = window("02:30", "04:00", WEEK);
        let at = night.earliest(berlin, ms("2026-10-24T23:00:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-10-25T00:30:00Z");
        assert_eq!(
            week_start(berlin, ms("2026-10-25T12:00:00Z")),
            ms("2026-10-18T22:00:00Z")
        );
        assert_eq!(
            day_start(berlin, ms("2026-10-25T12:00:00Z")),
            ms("2026-10-24T22:00:00Z")
        );
    }

    #[test]
    fn new_york_across_both_changes_and_closed_days() {
        let ny = zone("America/New_York").unwrap();
        let w = window("09:00", "20:00", &["mon", "tue", "wed", "thu", "fri"]);
        // Friday 30 October 2026 after hours (EDT, UTC-4): Monday 2 November, after the
        // change of Sunday 1 November, is EST (UTC-5).
        let at = w.earliest(ny, ms("2026-10-31T01:00:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-11-02T14:00:00Z");
        // Spring: 02:30 on Sunday 8 March 2026 does not exist; the window opens at 03:00 EDT.
        let night = window("02:30", "05:00", WEEK);
        let at = night.earliest(ny, ms("2026-03-08T05:00:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-03-08T07:00:00Z");
    }

    /// A window a spring-forward gap swallows whole holds no instant that day (its `to` is
    /// not in it), and on a night whose hour repeats, the window's minutes come round twice.
    #[test]
    fn windows_inside_a_gap_or_a_repeated_hour() {
        let berlin = zone("Europe/Berlin").unwrap();
        // 02:00-03:00 does not exist on Sunday 29 March 2026 in Berlin: Monday 02:00 CEST.
        let gap = window("02:00", "03:00", WEEK);
        let at = gap.earliest(berlin, ms("2026-03-28T22:00:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-03-30T00:00:00Z");
        // Open on Sundays alone, run on the Friday before: the Sunday after.
        let sundays = window("02:00", "03:00", &["sun"]);
        let at = sundays
            .earliest(berlin, ms("2026-03-27T12:00:00Z"))
            .unwrap();
        assert_eq!(format_utc(at), "2026-04-05T00:00:00Z");
        // Lord Howe moves its clock half an hour: 02:00-02:30 is skipped on 4 October 2026.
        let howe = zone("Australia/Lord_Howe").unwrap();
        let gap = window("02:00", "02:30", WEEK);
        let at = gap.earliest(howe, ms("2026-10-03T14:00:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-10-04T15:00:00Z");
        // A window the gap cuts: from its end.
        let cut = window("02:30", "03:30", WEEK);
        let at = cut.earliest(berlin, ms("2026-03-28T22:00:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-03-29T01:00:00Z");
        // New York, Sunday 1 November 2026: 01:00-01:59 EDT, then 01:00-01:59 EST again.
        let ny = zone("America/New_York").unwrap();
        let sundays = window("00:00", "01:30", &["sun"]);
        // 01:10 EDT: now.
        let at = sundays.earliest(ny, ms("2026-11-01T05:10:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-11-01T05:10:00Z");
        // 01:30 EDT, past the window until the clock goes back to 01:00 EST at 06:00 UTC.
        let at = sundays.earliest(ny, ms("2026-11-01T05:30:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-11-01T06:00:00Z");
        // 01:20 EST: now; 01:30 EST: next Sunday.
        let at = sundays.earliest(ny, ms("2026-11-01T06:20:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-11-01T06:20:00Z");
        let at = sundays.earliest(ny, ms("2026-11-01T06:30:00Z")).unwrap();
        assert_eq!(format_utc(at), "2026-11-08T05:00:00Z");
    }

    #[test]
    fn empty_windows_and_unknown_zones() {
        let berlin = zone("Europe/Berlin").unwrap();
        assert_eq!(window("10:00", "10:00", WEEK).earliest(berlin, 0), None);
        assert_eq!(window("09:00", "20:00", &[]).earliest(berlin, 0), None);
        assert_eq!(parse_clock("24:00"), Some(1440));
        assert_eq!(parse_clock("24:01"), None);
        assert_eq!(parse_clock("9:00"), None);
        let mut zones = Zones::new(berlin, true);
        assert_eq!(zones.of(Some("Mars/Olympus")), berlin);
        assert_eq!(zones.of(Some("Mars/Olympus")), berlin);
        assert_eq!(zones.of(Some("Asia/Tokyo")), zone("Asia/Tokyo").unwrap());
        assert_eq!(zones.of(None), berlin);
        assert_eq!(zones.of(Some("")), berlin);
        assert_eq!(zones.unknown.get("Mars/Olympus"), Some(&2));
        assert_eq!(zones.missing, 2, "the empty cells are counted");
        // Without a zone feature every customer is in the default zone: nothing is missing.
        let mut fixed = Zones::new(berlin, false);
        assert_eq!(fixed.of(None), berlin);
        assert_eq!(fixed.missing, 0);
    }
}
