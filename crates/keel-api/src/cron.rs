//! `CronJob` schedules as Kubernetes reads them (robfig/cron's standard
//! parser): five fields (minute, hour, day of month, month, day of week)
//! with `*`, `?`, lists, ranges, steps (`*/5`, `1-30/2`, `5/15`), month and
//! weekday names, and the descriptors `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly`. When both day fields are
//! restricted a day matching either runs (Vixie cron's rule).
//!
//! Written here because the cron crates parse other dialects (seconds
//! first, Quartz's `L`/`W`, different day rules); times are in an IANA zone
//! through chrono-tz. Used by `CronJob` validation and the `CronJob`
//! controller.

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// The day fields started with `*` or `?` (without a step).
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field: the bits set and whether it was a bare star.
fn field(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {s}"))?,
                ),
            ),
            None => (part, None),
        };
        let value = |s: &str| -> Result<u32, String> {
            let lower = s.to_ascii_lowercase();
            if let Some(i) = names.iter().position(|n| *n == lower) {
                return Ok(u32::try_from(i).unwrap_or(0) + min);
            }
            s.parse::<u32>()
                .map_err(|_| format!("failed to parse int from {s}"))
        };
        let (lo, hi, is_star) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?, false)
        } else {
            let v = value(range)?;
            // `N/step` runs from N to the end.
            (v, if step.is_some() { max } else { v }, false)
        };
        if lo < min {
            return Err(format!(
                "beginning of range ({lo}) below minimum ({min}): {part}"
            ));
        }
        if hi > max {
            return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
        }
        if lo > hi {
            return Err(format!(
                "beginning of range ({lo}) beyond end of range ({hi}): {part}"
            ));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        star |= is_star && step == 1;
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            let Some(n) = v.checked_add(step) else { break };
            v = n;
        }
    }
    Ok((bits, star))
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err("schedule must not contain TZ or CRON_TZ; use spec.timeZone".into());
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                fields.len()
            ));
        }
        let (minute, _) = field(fields[0], 0, 59, &[])?;
        let (hour, _) = field(fields[1], 0, 23, &[])?;
        let (dom, dom_star) = field(fields[2], 1, 31, &[])?;
        let (month, _) = field(fields[3], 1, 12, &MONTHS)?;
        let (dow, dow_star) = field(fields[4], 0, 6, &DAYS)?;
        Ok(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }
}

impl Schedule {
    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time (unix seconds) after `t`, reading the
    /// fields in `tz`; `None` when nothing matches within five years (as
    /// upstream gives up).
    pub fn next_after(&self, t: i64, tz: Tz) -> Option<i64> {
        let local = tz.timestamp_opt(t, 0).single()?.naive_local();
        let mut day = local.date();
        for _ in 0..=(366 * 5) {
            if self.month & (1 << day.month()) != 0 && self.day_matches(day) {
                for h in (0..24).filter(|h| self.hour & (1 << h) != 0) {
                    for m in (0..60).filter(|m| self.minute & (1 << m) != 0) {
                        let naive = day.and_hms_opt(h, m, 0)?;
                        // A time skipped by a DST change does not run.
                        let Some(at) = tz.from_local_datetime(&naive).earliest() else {
                            continue;
                        };
                        if at.timestamp() > t {
                            return Some(at.timestamp());
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// The latest scheduled time in `(after, now]` and how many there were
    /// (counting stops past `cap`).
    pub fn most_recent(&self, after: i64, now: i64, tz: Tz, cap: u32) -> (Option<i64>, u32) {
        let mut count = 0;
        let mut last = None;
        let mut t = after;
        while let Some(n) = self.next_after(t, tz).filter(|n| *n <= now) {
            count += 1;
            last = Some(n);
            t = n;
            if count > cap {
                // Too many to walk: find the latest from windows before now.
                for window in [3_600, 86_400, 32 * 86_400, 366 * 86_400, 5 * 366 * 86_400] {
                    let from = (now - window).max(t);
                    let mut t2 = from;
                    let mut found = None;
                    while let Some(n) = self.next_after(t2, tz).filter(|n| *n <= now) {
                        found = Some(n);
                        t2 = n;
                    }
                    if found.is_some() {
                        return (found, count);
                    }
                }
                return (last, count);
            }
        }
        (last, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    fn next(spec: &str, from: &str, tz: Tz) -> String {
        let s: Schedule = spec.parse().unwrap();
        let n = s.next_after(ts(from), tz).unwrap();
        chrono::DateTime::from_timestamp(n, 0)
            .unwrap()
            .with_timezone(&tz)
            .to_rfc3339()
    }

    #[test]
    fn next_times_follow_robfig() {
        let utc = chrono_tz::UTC;
        assert_eq!(
            next("*/5 * * * *", "2024-01-01T00:02:00Z", utc),
            "2024-01-01T00:05:00+00:00"
        );
        assert_eq!(
            next("@hourly", "2024-01-01T00:00:00Z", utc),
            "2024-01-01T01:00:00+00:00"
        );
        assert_eq!(
            next("@daily", "2024-01-01T00:00:00Z", utc),
            "2024-01-02T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 1 1 *", "2024-06-01T00:00:00Z", utc),
            "2025-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2024-01-06T00:00:00Z", utc),
            "2024-01-08T09:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * FEB *", "2024-01-06T00:00:00Z", utc),
            "2024-02-01T00:00:00+00:00"
        );
        // Both day fields restricted: either matches (13th or a Friday).
        assert_eq!(
            next("0 0 13 * 5", "2024-01-01T00:00:00Z", utc),
            "2024-01-05T00:00:00+00:00"
        );
        // `*/2` in a day field is restricted, so either matches.
        assert_eq!(
            next("0 0 */2 * 1", "2024-01-01T12:00:00Z", utc),
            "2024-01-03T00:00:00+00:00"
        );
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T00:06:00Z", utc),
            "2024-01-01T00:25:00+00:00"
        );
        let feb30: Schedule = "0 0 30 2 *".parse().unwrap();
        assert_eq!(feb30.next_after(ts("2024-01-01T00:00:00Z"), utc), None);
    }

    #[test]
    fn time_zones_and_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            next("30 9 * * *", "2024-03-30T12:00:00Z", berlin),
            "2024-03-31T09:30:00+02:00"
        );
        // 02:30 does not exist on the day clocks go forward.
        assert_eq!(
            next("30 2 * * *", "2024-03-30T12:00:00Z", berlin),
            "2024-04-01T02:30:00+02:00"
        );
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            next("30 9 * * *", "2024-01-01T00:00:00Z", kolkata),
            "2024-01-01T09:30:00+05:30"
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "@every 5m",
            "@sometimes",
            "TZ=UTC * * * * *",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn most_recent_counts_missed_times() {
        let s: Schedule = "* * * * *".parse().unwrap();
        let utc = chrono_tz::UTC;
        let from = ts("2024-01-01T00:00:30Z");
        let (last, n) = s.most_recent(from, from + 300, utc, 100);
        assert_eq!((last, n), (Some(ts("2024-01-01T00:05:00Z")), 5));
        let (last, n) = s.most_recent(from, from + 86_400, utc, 100);
        assert_eq!(last, Some(ts("2024-01-02T00:00:00Z")));
        assert!(n > 100);
        assert_eq!(s.most_recent(from, from + 10, utc, 100), (None, 0));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(spec in "[0-9*?/,a-zA-Z@ -]{0,40}") {
            if let Ok(s) = spec.parse::<Schedule>() {
                let _ = s.next_after(0, chrono_tz::UTC);
            }
        }

        #[test]
        fn fields_never_panic(f in "[0-9*/,-]{1,12}") {
            let spec = format!("{f} {f} * * {f}");
            let _ = spec.parse::<Schedule>();
        }
    }
}
