//! Go's `time.ParseDuration` and `time.Duration.String`, on nanoseconds in an
//! `i64` as Go's `time.Duration` is.
//!
//! The grammar is `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` or a lone `0`; units are
//! `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`. Integer parts are summed
//! exactly; fractions go through an `f64` as in Go, so `1.1h` gives Go's
//! nanosecond, not a rounded one. Everything out of `i64` is an error, except
//! `-9223372036854775808ns` (Go's minimum).

use std::fmt::{self, Write as _};

/// Why a duration did not parse; `Display` is Go's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DurationError {
    /// The text handed to the parser.
    pub input: String,
    pub kind: DurationErrorKind,
}

/// Go's three duration errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationErrorKind {
    /// Bad syntax or out of range.
    Invalid,
    /// A number without a unit (`"30"`).
    MissingUnit,
    /// A unit Go does not know (`"3d"` holds `"d"`).
    UnknownUnit(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let orig = time_quote(&self.input);
        match &self.kind {
            DurationErrorKind::Invalid => write!(f, "time: invalid duration {orig}"),
            DurationErrorKind::MissingUnit => write!(f, "time: missing unit in duration {orig}"),
            DurationErrorKind::UnknownUnit(u) => {
                write!(f, "time: unknown unit {} in duration {orig}", time_quote(u))
            }
        }
    }
}

/// Nanoseconds per unit.
pub const NANOSECOND: i64 = 1;
pub const MICROSECOND: i64 = 1_000;
pub const MILLISECOND: i64 = 1_000_000;
pub const SECOND: i64 = 1_000_000_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;

const LIMIT: u64 = 1 << 63;

fn unit_of(u: &[u8]) -> Option<u64> {
    Some(match u {
        b"ns" => NANOSECOND,
        b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => MICROSECOND, // us, µs (U+00B5), μs (U+03BC)
        b"ms" => MILLISECOND,
        b"s" => SECOND,
        b"m" => MINUTE,
        b"h" => HOUR,
        _ => return None,
    } as u64)
}

/// Go's `time.ParseDuration`: `"1h30m"`, `"-1.5s"`, `"300ms"`, `"0"`.
#[allow(clippy::many_single_char_names)] // Go's names, to read side by side
pub fn parse_duration(input: &str) -> Result<i64, DurationError> {
    let err = |kind| DurationError {
        input: input.to_string(),
        kind,
    };
    let invalid = || err(DurationErrorKind::Invalid);
    let mut s = input.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut d: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let pre = before != s.len();
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if let Some((b'.', rest)) = s.split_first() {
            let before = rest.len();
            (f, scale, s) = leading_fraction(rest);
            post = before != s.len();
        }
        if !pre && !post {
            return Err(invalid());
        }
        let i = s
            .iter()
            .position(|c| *c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if i == 0 {
            return Err(err(DurationErrorKind::MissingUnit));
        }
        let (u, rest) = s.split_at(i);
        s = rest;
        let Some(unit) = unit_of(u) else {
            return Err(err(DurationErrorKind::UnknownUnit(
                String::from_utf8_lossy(u).into_owned(),
            )));
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            // Go: float64 is needed to be nanosecond accurate for fractions of hours.
            #[allow(clippy::cast_precision_loss)]
            let frac = f as f64 * (unit as f64 / scale);
            v += frac as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d += v;
        if d > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok((d as i64).wrapping_neg());
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(d as i64)
}

/// `[0-9]*`; `None` on overflow.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(s[i] - b'0');
        if x > LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// The digits after a `.`: value and `10^digits`, precision dropped (not an
/// error) once the value would overflow, as in Go.
#[allow(clippy::many_single_char_names)]
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        let c = s[i];
        i += 1;
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[i..])
}

/// Go's `time.Duration.String`: `"1h2m3.5s"`, `"1.5ms"`, `"0s"`, `"-2µs"`.
pub fn format_duration(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let mut u = d.unsigned_abs();
    // Built right to left, as Go does.
    let mut out: Vec<u8> = Vec::with_capacity(32);
    if u < SECOND as u64 {
        let (unit, prec): (&str, usize) = if u < MICROSECOND as u64 {
            ("ns", 0)
        } else if u < MILLISECOND as u64 {
            ("µs", 3)
        } else {
            ("ms", 6)
        };
        out.extend(unit.bytes().rev());
        u = frac(&mut out, u, prec);
        int(&mut out, u);
    } else {
        out.push(b's');
        u = frac(&mut out, u, 9);
        int(&mut out, u % 60);
        u /= 60;
        if u > 0 {
            out.push(b'm');
            int(&mut out, u % 60);
            u /= 60;
            if u > 0 {
                out.push(b'h');
                int(&mut out, u);
            }
        }
    }
    if d < 0 {
        out.push(b'-');
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits and µ")
}

/// Pushes (reversed) the `prec` fraction digits of `v` without trailing
/// zeros and the `.`; returns `v / 10^prec`.
fn frac(out: &mut Vec<u8>, mut v: u64, prec: usize) -> u64 {
    let mut printed = false;
    for _ in 0..prec {
        let digit = v % 10;
        printed = printed || digit != 0;
        if printed {
            out.push(b'0' + digit as u8);
        }
        v /= 10;
    }
    if printed {
        out.push(b'.');
    }
    v
}

/// Pushes (reversed) the decimal digits of `v`.
fn int(out: &mut Vec<u8>, mut v: u64) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    while v > 0 {
        out.push(b'0' + (v % 10) as u8);
        v /= 10;
    }
}

/// The `time` package's own `quote` for its error texts: ASCII as is
/// (with `"` and `\` escaped), every byte of anything else as `\xNN`.
fn time_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_examples() {
        // From Go's time package tests (parseDurationTests / durationTests).
        for (s, want) in [
            ("0", 0),
            ("5s", 5 * SECOND),
            ("-5s", -5 * SECOND),
            ("+5s", 5 * SECOND),
            ("1.004s", 1_004 * MILLISECOND),
            (".5s", 500 * MILLISECOND),
            ("1.s", SECOND),
            ("1h1m1s", HOUR + MINUTE + SECOND),
            ("1.1h", 3_960_000_000_000),
            ("10µs", 10 * MICROSECOND),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for s in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "9223372036854775808ns",
        ] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_duration("3").unwrap_err().to_string(),
            "time: missing unit in duration \"3\""
        );
        assert_eq!(
            parse_duration("3x").unwrap_err().to_string(),
            "time: unknown unit \"x\" in duration \"3x\""
        );
        assert_eq!(
            parse_duration("é").unwrap_err().to_string(),
            "time: invalid duration \"\\xc3\\xa9\""
        );
        for (d, s) in [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * MINUTE + 5 * SECOND, "4m5s"),
            (HOUR, "1h0m0s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(format_duration(d), s);
        }
    }
}
