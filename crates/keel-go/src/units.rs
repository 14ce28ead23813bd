//! Docker's `go-units` sizes, as docker, its CLI and compose-go use them
//! (go-units v0.5.0): `RAMInBytes` (binary: `64m` = 64 MiB), `FromHumanSize`
//! (decimal: `64MB` = 64,000,000), `HumanSize`/`HumanSizeWithPrecision`
//! (`4.26MB`), `BytesSize` (`1.5KiB`) and `HumanDuration` (`About an hour`).

use crate::strconv::{FloatError, format_g, parse_float};

/// Why a size did not parse; `Display` is go-units' error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No digit at all, or a negative number.
    #[error("invalid size: '{0}'")]
    Invalid(String),
    /// Anything after the number that is not `[kmgtp]?(b|ib)?`.
    #[error("invalid suffix: '{0}'")]
    Suffix(String),
    /// The number is not a Go float.
    #[error(transparent)]
    Number(#[from] FloatError),
}

const DECIMAL: [(u8, i64); 5] = [
    (b'k', 1_000),
    (b'm', 1_000_000),
    (b'g', 1_000_000_000),
    (b't', 1_000_000_000_000),
    (b'p', 1_000_000_000_000_000),
];
const BINARY: [(u8, i64); 5] = [
    (b'k', 1 << 10),
    (b'm', 1 << 20),
    (b'g', 1 << 30),
    (b't', 1 << 40),
    (b'p', 1 << 50),
];

/// Docker's `RAMInBytes`: `512`, `64k`, `256MiB`, `1.5g`, `1 GB` (binary
/// units, case-insensitive, `b`/`ib` optional).
pub fn ram_in_bytes(s: &str) -> Result<i64, SizeError> {
    parse_size(s, &BINARY)
}

/// Docker's `FromHumanSize`: `44kB`, `17MB` (decimal units).
pub fn from_human_size(s: &str) -> Result<i64, SizeError> {
    parse_size(s, &DECIMAL)
}

fn parse_size(s: &str, units: &[(u8, i64)]) -> Result<i64, SizeError> {
    let b = s.as_bytes();
    let Some(sep) = b
        .iter()
        .rposition(|c| c.is_ascii_digit() || *c == b'.' || *c == b' ')
    else {
        return Err(SizeError::Invalid(s.to_string()));
    };
    // The separator is ASCII, so both sides are on char boundaries.
    let (num, sfx) = if b[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let mut size = parse_float(num)?;
    if size < 0.0 {
        return Err(SizeError::Invalid(s.to_string()));
    }
    if sfx.is_empty() {
        return Ok(go_f64_to_i64(size));
    }
    let bad = || SizeError::Suffix(sfx.to_string());
    if sfx.len() > 3 {
        return Err(bad());
    }
    let lower = sfx.to_ascii_lowercase();
    let l = lower.as_bytes();
    if l[0] == b'b' {
        return if l.len() > 1 {
            Err(bad())
        } else {
            Ok(go_f64_to_i64(size))
        };
    }
    let Some((_, mul)) = units.iter().find(|(u, _)| *u == l[0]) else {
        return Err(bad());
    };
    #[allow(clippy::cast_precision_loss)] // powers of 1000 and 1024 up to 2^50 are exact
    {
        size *= *mul as f64;
    }
    if (l.len() == 2 && l[1] != b'b') || (l.len() == 3 && &l[1..] != b"ib") {
        return Err(bad());
    }
    Ok(go_f64_to_i64(size))
}

/// Go's `int64(f)` on amd64 (CVTTSD2SI): truncation, and `math.MinInt64` for
/// NaN and everything out of range. Docker then hands that on, so sizes
/// like `1e30` come out as a negative number there too; callers refuse
/// negatives.
fn go_f64_to_i64(f: f64) -> i64 {
    #[allow(clippy::cast_precision_loss)]
    if f.is_nan() || f >= i64::MAX as f64 || f < i64::MIN as f64 {
        i64::MIN
    } else {
        f as i64
    }
}

const DECIMAL_ABBRS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY_ABBRS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn size_and_unit(mut size: f64, base: f64, abbrs: &[&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < abbrs.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, abbrs[i])
}

/// Docker's `HumanSizeWithPrecision`: decimal units, `precision` significant
/// digits with Go's `%g` (`docker images` uses 3: `4.26MB`).
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    let (v, unit) = size_and_unit(size, 1000.0, &DECIMAL_ABBRS);
    format!("{}{unit}", format_g(v, precision))
}

/// Docker's `HumanSize`: four significant digits (`2.746MB`).
pub fn human_size(size: f64) -> String {
    human_size_with_precision(size, 4)
}

/// Docker's `BytesSize`: binary units, four significant digits (`1.5KiB`).
pub fn bytes_size(size: f64) -> String {
    let (v, unit) = size_and_unit(size, 1024.0, &BINARY_ABBRS);
    format!("{}{unit}", format_g(v, 4))
}

/// Docker's `HumanDuration` of `ns` nanoseconds, as `docker ps` shows ages
/// (`Up 2 hours`, `3 days ago`). Go's `Seconds`/`Minutes`/`Hours` are
/// floats truncated by `int()`, hours rounded to the nearest one.
#[allow(clippy::cast_precision_loss)] // as Go computes them
pub fn human_duration(ns: i64) -> String {
    const SECOND: i64 = 1_000_000_000;
    let float = |unit: i64| (ns / unit) as f64 + (ns % unit) as f64 / unit as f64;
    let seconds = float(SECOND) as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = float(60 * SECOND) as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours_f = float(3600 * SECOND);
    let hours = (hours_f + 0.5) as i64;
    if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours_f as i64 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_units_v050_cases() {
        // go-units v0.5.0's size_test.go (TestRAMInBytes, TestFromHumanSize),
        // the version docker and compose-go vendor; the differential test
        // checks the numbers against Debian's go-units on the grammar both
        // versions share.
        const KIB: i64 = 1024;
        const MIB: i64 = KIB * KIB;
        for (s, want) in [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 * KIB),
            ("32K", 32 * KIB),
            ("32kb", 32 * KIB),
            ("32Kb", 32 * KIB),
            ("32Kib", 32 * KIB),
            ("32KIB", 32 * KIB),
            ("32Mb", 32 * MIB),
            ("32Gb", 32 << 30),
            ("32Tb", 32 << 40),
            ("32Pb", 32 << 50),
            ("32PB", 32 << 50),
            ("32P", 32 << 50),
            ("32.3", 32),
            ("32.3 mb", (32.3 * 1_048_576.0) as i64),
            ("0.3MB", (0.3 * 1_048_576.0) as i64),
        ] {
            assert_eq!(ram_in_bytes(s), Ok(want), "{s}");
        }
        for s in ["", "hello", "-32", " 32 ", "32m b", "32bm"] {
            assert!(ram_in_bytes(s).is_err(), "{s:?} should fail");
        }
        for (s, want) in [
            ("0", 0),
            ("0b", 0),
            ("0B", 0),
            ("0 B", 0),
            ("32", 32),
            ("32k", 32_000),
            ("32Kb", 32_000),
            ("32Mb", 32_000_000),
            ("32Gb", 32_000_000_000),
            ("32Tb", 32_000_000_000_000),
            ("32Pb", 32_000_000_000_000_000),
            ("32.5kB", 32_500),
            ("32.5 kB", 32_500),
            ("32.5 B", 32),
            ("0.3 K", 300),
            (".3kB", 300),
            ("0.", 0),
            ("0. ", 0),
            ("0.b", 0),
            ("-0", 0),
            ("-0 B", 0),
            ("32.", 32),
            ("32. b", 32),
            ("0 ", 0),
        ] {
            assert_eq!(from_human_size(s), Ok(want), "{s}");
        }
        for s in [
            " 0", " 0b", "0b ", "0 B ", "", "hello", ".", ". ", " ", "  ", " .", " . ", "-32",
            "-32 B", "32b.", "32 b.", "32 bb", "32 b b", "32  b", " 32 ", "32m b", "32bm",
        ] {
            assert!(from_human_size(s).is_err(), "{s:?} should fail");
        }
        assert_eq!(
            ram_in_bytes("32kk").unwrap_err().to_string(),
            "invalid suffix: 'kk'"
        );
        assert_eq!(
            ram_in_bytes("hello").unwrap_err().to_string(),
            "invalid size: 'hello'"
        );
        assert_eq!(
            ram_in_bytes("1.2.3").unwrap_err().to_string(),
            "strconv.ParseFloat: parsing \"1.2.3\": invalid syntax"
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(1024.0), "1.024kB");
        assert_eq!(human_size(1_000_000.0), "1MB");
        assert_eq!(human_size(1_048_576.0), "1.049MB");
        assert_eq!(human_size(2_097_152.0), "2.097MB");
        assert_eq!(human_size(3.42e9), "3.42GB");
        assert_eq!(human_size(5.372e12), "5.372TB");
        assert_eq!(human_size(2.22e15), "2.22PB");
        assert_eq!(human_size(1e28), "1e+04YB");
        assert_eq!(human_size_with_precision(999_500.0, 3), "1e+03kB");
        assert_eq!(bytes_size(1024.0), "1KiB");
        assert_eq!(bytes_size(3.42 * 1024f64.powi(3)), "3.42GiB");
        assert_eq!(bytes_size(1024f64.powi(10)), "1.049e+06YiB");
    }
}
