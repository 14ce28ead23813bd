//! Sprig's date functions over a Go-like `time.Time` (UTC; keel treats Go's
//! `Local` as UTC, what containers run with) and Go's layout-based
//! formatting and parsing (`2006-01-02 15:04:05`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;

use crate::funcs::{FuncDef, Ty, def};
use crate::value::{Object, Value};

/// A point in time: seconds and nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    pub fn now() -> Time {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }
}

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
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// (year, month 1-12, day) from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Days in `month` (1-12) of `year`; 0 for a month out of range.
pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
    wday: usize,
    yday: u32,
}

fn parts(t: Time) -> Parts {
    let days = t.secs.div_euclid(86_400);
    let rem = t.secs.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    let yday = (days - days_from_civil(year, 1, 1) + 1) as u32;
    Parts {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        min: ((rem % 3600) / 60) as u32,
        sec: (rem % 60) as u32,
        nanos: t.nanos,
        wday: (days + 4).rem_euclid(7) as usize,
        yday,
    }
}

/// Layout tokens, longest first where prefixes overlap (Go's nextStdChunk).
const TOKENS: &[&str] = &[
    "January",
    "Jan",
    "Monday",
    "Mon",
    "MST",
    "2006",
    "Z07:00:00",
    "Z07:00",
    "Z0700",
    "Z07",
    "-07:00:00",
    "-0700",
    "-07:00",
    "-07",
    "01",
    "02",
    "03",
    "04",
    "05",
    "06",
    "002",
    "_2",
    "15",
    "1",
    "2",
    "3",
    "4",
    "5",
    "PM",
    "pm",
];

fn next_token(layout: &str) -> Option<(usize, &'static str)> {
    let b = layout.as_bytes();
    for i in 0..b.len() {
        for tok in TOKENS {
            if layout[i..].starts_with(tok) {
                // Go: "Jan"/"Mon" only when not followed by a lower-case letter
                if (*tok == "Jan" || *tok == "Mon")
                    && layout[i + tok.len()..].starts_with(|c: char| c.is_ascii_lowercase())
                {
                    continue;
                }
                if *tok == "002" || *tok == "02" || *tok == "01" {
                    // "002" is day of year; fine
                }
                return Some((i, tok));
            }
        }
        // fractional seconds: .000 / ,000 / .999
        if (b[i] == b'.' || b[i] == b',')
            && i + 1 < b.len()
            && (b[i + 1] == b'0' || b[i + 1] == b'9')
        {
            let c = b[i + 1];
            let mut j = i + 1;
            while j < b.len() && b[j] == c {
                j += 1;
            }
            if j >= b.len() || !b[j].is_ascii_digit() {
                return Some((i, if c == b'0' { ".0" } else { ".9" }));
            }
        }
    }
    None
}

/// Go's `Time.Format` (UTC).
pub fn format(t: Time, layout: &str) -> String {
    let p = parts(t);
    let mut out = String::new();
    let mut rest = layout;
    while let Some((i, tok)) = next_token(rest) {
        out.push_str(&rest[..i]);
        let mut len = tok.len();
        match tok {
            "January" => out.push_str(MONTHS[p.month as usize - 1]),
            "Jan" => out.push_str(&MONTHS[p.month as usize - 1][..3]),
            "Monday" => out.push_str(DAYS[p.wday]),
            "Mon" => out.push_str(&DAYS[p.wday][..3]),
            "MST" => out.push_str("UTC"),
            "2006" => {
                let _ = write!(out, "{:04}", p.year);
            }
            "06" => {
                let _ = write!(out, "{:02}", p.year.rem_euclid(100));
            }
            "01" => {
                let _ = write!(out, "{:02}", p.month);
            }
            "1" => out.push_str(&p.month.to_string()),
            "02" => {
                let _ = write!(out, "{:02}", p.day);
            }
            "_2" => {
                let _ = write!(out, "{:>2}", p.day);
            }
            "2" => out.push_str(&p.day.to_string()),
            "002" => {
                let _ = write!(out, "{:03}", p.yday);
            }
            "15" => {
                let _ = write!(out, "{:02}", p.hour);
            }
            "03" => {
                let _ = write!(
                    out,
                    "{:02}",
                    if p.hour.is_multiple_of(12) {
                        12
                    } else {
                        p.hour % 12
                    }
                );
            }
            "3" => out.push_str(
                &(if p.hour.is_multiple_of(12) {
                    12
                } else {
                    p.hour % 12
                })
                .to_string(),
            ),
            "04" => {
                let _ = write!(out, "{:02}", p.min);
            }
            "4" => out.push_str(&p.min.to_string()),
            "05" => {
                let _ = write!(out, "{:02}", p.sec);
            }
            "5" => out.push_str(&p.sec.to_string()),
            "PM" => out.push_str(if p.hour >= 12 { "PM" } else { "AM" }),
            "pm" => out.push_str(if p.hour >= 12 { "pm" } else { "am" }),
            "Z07:00:00" | "Z07:00" | "Z0700" | "Z07" => out.push('Z'),
            "-07:00:00" => out.push_str("+00:00:00"),
            "-0700" => out.push_str("+0000"),
            "-07:00" => out.push_str("+00:00"),
            "-07" => out.push_str("+00"),
            ".0" | ".9" => {
                let c = rest.as_bytes()[i + 1];
                let mut n = 0;
                while i + 1 + n < rest.len() && rest.as_bytes()[i + 1 + n] == c {
                    n += 1;
                }
                len = 1 + n;
                let digits = format!("{:09}", p.nanos);
                let mut frac = digits[..n.min(9)].to_string();
                if tok == ".9" {
                    frac = frac.trim_end_matches('0').to_string();
                    if !frac.is_empty() {
                        out.push(rest.as_bytes()[i] as char);
                        out.push_str(&frac);
                    }
                } else {
                    out.push(rest.as_bytes()[i] as char);
                    out.push_str(&frac);
                }
            }
            _ => out.push_str(tok),
        }
        rest = &rest[i + len..];
    }
    out.push_str(rest);
    out
}

fn take_num(s: &str, min: usize, max: usize) -> Option<(i64, &str)> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// Go's `time.Parse` for the common layout tokens (UTC); `None` on mismatch.
pub fn parse(layout: &str, value: &str) -> Option<Time> {
    let (mut year, mut month, mut day, mut hour, mut min, mut sec, mut nanos) =
        (0i64, 1u32, 1u32, 0u32, 0u32, 0u32, 0u32);
    let mut pm = None;
    let mut offset: i64 = 0;
    let mut rest_l = layout;
    let mut v = value;
    while let Some((i, tok)) = next_token(rest_l) {
        let lit = &rest_l[..i];
        v = v.strip_prefix(lit)?;
        let mut len = tok.len();
        match tok {
            "2006" => {
                let (n, r) = take_num(v, 4, 4)?;
                year = n;
                v = r;
            }
            "06" => {
                let (n, r) = take_num(v, 2, 2)?;
                year = if n >= 69 { 1900 + n } else { 2000 + n };
                v = r;
            }
            "01" | "1" => {
                let (n, r) = take_num(v, if tok == "01" { 2 } else { 1 }, 2)?;
                month = n as u32;
                v = r;
            }
            "02" | "2" | "_2" => {
                let t = if tok == "_2" {
                    v.strip_prefix(' ').unwrap_or(v)
                } else {
                    v
                };
                let (n, r) = take_num(t, if tok == "02" { 2 } else { 1 }, 2)?;
                day = n as u32;
                v = r;
            }
            "15" | "03" | "3" => {
                let (n, r) = take_num(v, if tok == "3" { 1 } else { 2 }, 2)?;
                hour = n as u32;
                v = r;
            }
            "04" | "4" => {
                let (n, r) = take_num(v, if tok == "4" { 1 } else { 2 }, 2)?;
                min = n as u32;
                v = r;
            }
            "05" | "5" => {
                let (n, r) = take_num(v, if tok == "5" { 1 } else { 2 }, 2)?;
                sec = n as u32;
                v = r;
                // Go accepts fractional seconds after seconds even if the layout has none
                if let Some(f) = v.strip_prefix('.')
                    && !rest_l[i + len..].starts_with(['.', ','])
                {
                    let n = f.bytes().take_while(u8::is_ascii_digit).count();
                    if n > 0 {
                        nanos = format!("{:0<9}", &f[..n.min(9)]).parse().ok()?;
                        v = &f[n..];
                    }
                }
            }
            "Jan" | "January" => {
                let idx = MONTHS.iter().position(|m| {
                    let name = if tok == "Jan" { &m[..3] } else { m };
                    v.starts_with(name)
                })?;
                let name_len = if tok == "Jan" { 3 } else { MONTHS[idx].len() };
                month = idx as u32 + 1;
                v = &v[name_len..];
            }
            "Mon" | "Monday" => {
                let idx = DAYS
                    .iter()
                    .position(|d| v.starts_with(if tok == "Mon" { &d[..3] } else { d }))?;
                v = &v[if tok == "Mon" { 3 } else { DAYS[idx].len() }..];
            }
            "PM" | "pm" => {
                let up = v.get(..2)?.to_ascii_uppercase();
                pm = Some(up == "PM");
                v = &v[2..];
            }
            "MST" => {
                let n = v.bytes().take_while(u8::is_ascii_uppercase).count();
                v = &v[n..];
            }
            "Z07:00" | "Z0700" | "Z07" | "-07:00" | "-0700" | "-07" | "Z07:00:00" | "-07:00:00" => {
                if tok.starts_with('Z') && v.starts_with('Z') {
                    v = &v[1..];
                } else {
                    let sign = match v.as_bytes().first()? {
                        b'+' => 1,
                        b'-' => -1,
                        _ => return None,
                    };
                    let (h, r) = take_num(&v[1..], 2, 2)?;
                    let r = r.strip_prefix(':').unwrap_or(r);
                    let (m, r) = if tok.ends_with("07") {
                        (0, r)
                    } else {
                        take_num(r, 2, 2)?
                    };
                    offset = sign * (h * 3600 + m * 60);
                    v = r;
                }
            }
            ".0" | ".9" => {
                let c = rest_l.as_bytes()[i + 1];
                let mut n = 0;
                while i + 1 + n < rest_l.len() && rest_l.as_bytes()[i + 1 + n] == c {
                    n += 1;
                }
                len = 1 + n;
                if let Some(f) = v.strip_prefix(['.', ',']) {
                    let k = f.bytes().take_while(u8::is_ascii_digit).count();
                    nanos = format!("{:0<9}", &f[..k.min(9)]).parse().ok()?;
                    v = &f[k..];
                } else if tok == ".0" {
                    return None;
                }
            }
            _ => {
                v = v.strip_prefix(tok)?;
            }
        }
        rest_l = &rest_l[i + len..];
    }
    v = v.strip_prefix(rest_l)?;
    if !v.is_empty() {
        return None;
    }
    if let Some(pm) = pm {
        if hour > 12 {
            return None;
        }
        if pm && hour < 12 {
            hour += 12;
        } else if !pm && hour == 12 {
            hour = 0;
        }
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(Time {
        secs: days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec)
            - offset,
        nanos,
    })
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i128> {
    keel_go::parse_duration(s).ok().map(i128::from)
}

/// Go's `time.Duration.String`.
pub fn duration_string(d: i64) -> String {
    keel_go::format_duration(d)
}

impl Object for Time {
    fn type_name(&self) -> String {
        "time.Time".into()
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn method_arity(&self, name: &str) -> Option<usize> {
        match name {
            "Unix" | "Nanosecond" | "Year" | "Day" | "Hour" | "Minute" | "Second" | "YearDay"
            | "UTC" | "Local" | "String" => Some(0),
            "Format" | "Add" => Some(1),
            _ => None,
        }
    }
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let p = parts(*self);
        Some(Ok(match name {
            "Unix" => Value::Int64(self.secs),
            "Nanosecond" => Value::Int(i64::from(self.nanos)),
            "Year" => Value::Int(p.year),
            "Day" => Value::Int(i64::from(p.day)),
            "Hour" => Value::Int(i64::from(p.hour)),
            "Minute" => Value::Int(i64::from(p.min)),
            "Second" => Value::Int(i64::from(p.sec)),
            "YearDay" => Value::Int(i64::from(p.yday)),
            "UTC" | "Local" => Value::Object(Rc::new(*self)),
            "String" => Value::string(self.display()),
            "Format" => match args.first() {
                Some(Value::Str(l)) => Value::string(format(*self, l)),
                _ => return Some(Err("wrong type for value; expected string".into())),
            },
            "Add" => match args.first().and_then(Value::as_int) {
                Some(d) => Value::Object(Rc::new(add(*self, i128::from(d)))),
                None => return Some(Err("wrong type for value; expected time.Duration".into())),
            },
            _ => return None,
        }))
    }
    fn display(&self) -> String {
        let mut s = format(*self, "2006-01-02 15:04:05.999999999 -0700 MST");
        if s.ends_with(" MST") {
            s.truncate(s.len() - 4);
        }
        s
    }
}

fn add(t: Time, d: i128) -> Time {
    let total = i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos) + d;
    Time {
        secs: total.div_euclid(1_000_000_000) as i64,
        nanos: total.rem_euclid(1_000_000_000) as u32,
    }
}

fn time_arg(v: &Value) -> Option<Time> {
    match v {
        Value::Object(o) if o.type_name() == "time.Time" => {
            let secs = o.method("Unix", &[])?.ok()?.as_int()?;
            let nanos = o.method("Nanosecond", &[])?.ok()?.as_int()?;
            Some(Time {
                secs,
                nanos: nanos as u32,
            })
        }
        Value::Int(i) | Value::Int64(i) => Some(Time { secs: *i, nanos: 0 }),
        _ => None,
    }
}

fn tv(t: Time) -> Value {
    Value::Object(Rc::new(t))
}

pub(crate) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Str};
    let date: crate::funcs::PlainFn = |a| {
        let t = time_arg(&a[1]).unwrap_or_else(Time::now);
        Ok(Value::string(format(t, a[0].as_str().unwrap_or(""))))
    };
    m.insert("date", def(&[Str, Any], None, date));
    let in_zone: crate::funcs::PlainFn = |a| {
        let t = time_arg(&a[1]).unwrap_or_else(Time::now);
        Ok(Value::string(format(t, a[0].as_str().unwrap_or(""))))
    };
    m.insert("dateInZone", def(&[Str, Any, Str], None, in_zone));
    m.insert("date_in_zone", def(&[Str, Any, Str], None, in_zone));
    m.insert(
        "htmlDate",
        def(&[Any], None, |a| {
            Ok(Value::string(format(
                time_arg(&a[0]).unwrap_or_else(Time::now),
                "2006-01-02",
            )))
        }),
    );
    m.insert(
        "htmlDateInZone",
        def(&[Any, Str], None, |a| {
            Ok(Value::string(format(
                time_arg(&a[0]).unwrap_or_else(Time::now),
                "2006-01-02",
            )))
        }),
    );
    m.insert("now", def(&[], None, |_| Ok(tv(Time::now()))));
    m.insert(
        "toDate",
        def(&[Str, Str], None, |a| {
            Ok(tv(parse(
                a[0].as_str().unwrap_or(""),
                a[1].as_str().unwrap_or(""),
            )
            .unwrap_or(Time {
                secs: -62_135_596_800,
                nanos: 0,
            })))
        }),
    );
    m.insert(
        "mustToDate",
        def(&[Str, Str], None, |a| {
            let (l, v) = (a[0].as_str().unwrap_or(""), a[1].as_str().unwrap_or(""));
            parse(l, v).map(tv).ok_or_else(|| {
                format!(
                    "parsing time {} as {}: cannot parse",
                    crate::gofmt::quote(v),
                    crate::gofmt::quote(l)
                )
            })
        }),
    );
    m.insert(
        "unixEpoch",
        def(&[Any], None, |a| {
            Ok(Value::string(
                time_arg(&a[0]).map_or(0, |t| t.secs).to_string(),
            ))
        }),
    );
    let modify: crate::funcs::PlainFn = |a| {
        let t = time_arg(&a[1]).unwrap_or_else(Time::now);
        Ok(tv(match parse_duration(a[0].as_str().unwrap_or("")) {
            Some(d) => add(t, d),
            None => t,
        }))
    };
    m.insert("dateModify", def(&[Str, Any], None, modify));
    m.insert("date_modify", def(&[Str, Any], None, modify));
    let must_modify: crate::funcs::PlainFn = |a| {
        let t = time_arg(&a[1]).unwrap_or_else(Time::now);
        let s = a[0].as_str().unwrap_or("");
        keel_go::parse_duration(s)
            .map(|d| tv(add(t, i128::from(d))))
            .map_err(|e| e.to_string())
    };
    m.insert("mustDateModify", def(&[Str, Any], None, must_modify));
    m.insert("must_date_modify", def(&[Str, Any], None, must_modify));
    m.insert(
        "ago",
        def(&[Any], None, |a| {
            let t = time_arg(&a[0]).unwrap_or_else(Time::now);
            let now = Time::now();
            // Go's time.Since saturates at the ends of a Duration.
            let d = (i128::from(now.secs) - i128::from(t.secs)) * 1_000_000_000;
            let d = i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX });
            Ok(Value::string(duration_string(d)))
        }),
    );
    m.insert(
        "duration",
        def(&[Any], None, |a| {
            let n: i64 = match &a[0] {
                Value::Str(s) => s.parse().unwrap_or(0),
                Value::Int64(i) => *i,
                _ => 0,
            };
            // Go: time.Duration(n) * time.Second, which wraps around.
            Ok(Value::string(duration_string(
                n.wrapping_mul(1_000_000_000),
            )))
        }),
    );
    m.insert(
        "durationRound",
        def(&[Any], None, |a| {
            let d: i128 = match &a[0] {
                Value::Str(s) => parse_duration(s).unwrap_or(0),
                Value::Int64(i) => i128::from(*i),
                v => time_arg(v).map_or(0, |t| {
                    let now = Time::now();
                    (i128::from(now.secs) - i128::from(t.secs)) * 1_000_000_000
                }),
            };
            let u = d.unsigned_abs();
            let (year, month, day, hour, minute, second) = (
                3600 * 24 * 365 * 1_000_000_000u128,
                3600 * 24 * 30 * 1_000_000_000u128,
                3600 * 24 * 1_000_000_000u128,
                3600 * 1_000_000_000u128,
                60 * 1_000_000_000u128,
                1_000_000_000u128,
            );
            let s = if u > year {
                format!("{}y", u / year)
            } else if u > month {
                format!("{}mo", u / month)
            } else if u > day {
                format!("{}d", u / day)
            } else if u > hour {
                format!("{}h", u / hour)
            } else if u > minute {
                format!("{}m", u / minute)
            } else if u > second {
                format!("{}s", u / second)
            } else {
                "0s".into()
            };
            Ok(Value::string(s))
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_layouts() {
        let t = parse("2006-01-02 15:04:05", "2024-03-05 13:07:09").unwrap();
        assert_eq!(
            format(t, "Mon Jan _2 03:04:05PM 2006 -0700 MST"),
            "Tue Mar  5 01:07:09PM 2024 +0000 UTC"
        );
        assert_eq!(t.display(), "2024-03-05 13:07:09 +0000 UTC");
        assert_eq!(duration_string(95_000_000_000), "1m35s");
        assert_eq!(duration_string(1_500_000), "1.5ms");
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
    }

    /// Regression (outputs from Go 1.19 with sprig): `duration` overflowed
    /// into an i128 where Go's `time.Duration(n) * time.Second` wraps, and
    /// `mustDateModify` said "invalid duration" for every error.
    #[test]
    fn durations_like_go() {
        let render = |t: &str| {
            let mut s = crate::Templates::new();
            s.parse("t", t).unwrap();
            s.execute("t", &Value::Nil)
        };
        assert_eq!(
            render(r#"{{ duration "9223372037" }}"#).unwrap(),
            "-2562047h47m16.709551616s"
        );
        let e = render(r#"{{ mustDateModify "1x" now }}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(r#"error calling mustDateModify: time: unknown unit "x" in duration "1x""#),
            "{e}"
        );
        assert_eq!(
            render(r#"{{ printf "%q" "\u0378" }}"#).unwrap(),
            r#""\u0378""#
        );
    }
}
