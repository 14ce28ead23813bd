//! Go's `strconv`: `Quote`, `QuoteToASCII`, `QuoteRune`, `IsPrint`,
//! `ParseFloat` (64-bit) and the `%.Ng` of `FormatFloat`/`fmt`.

use std::fmt::Write as _;

use crate::isprint::PRINTABLE;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols
/// and U+0020 (Go 1.19's Unicode tables).
pub fn is_print(c: char) -> bool {
    let c = c as u32;
    PRINTABLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Go's `strconv.Quote` of a string.
pub fn quote(s: &str) -> String {
    quote_with(s.as_bytes(), b'"', false)
}

/// Go's `strconv.Quote` of bytes that may not be UTF-8: each invalid byte
/// comes out as `\xNN`.
pub fn quote_bytes(s: &[u8]) -> String {
    quote_with(s, b'"', false)
}

/// Go's `strconv.QuoteToASCII`.
pub fn quote_to_ascii(s: &str) -> String {
    quote_with(s.as_bytes(), b'"', true)
}

/// Go's `strconv.QuoteRune`.
pub fn quote_rune(c: char) -> String {
    let mut out = String::from("'");
    escape_rune(&mut out, c, b'\'', false);
    out.push('\'');
    out
}

fn quote_with(mut s: &[u8], quote: u8, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote as char);
    while !s.is_empty() {
        if let Some((c, width)) = decode_rune(s) {
            escape_rune(&mut out, c, quote, ascii_only);
            s = &s[width..];
        } else {
            push_hex_byte(&mut out, s[0]);
            s = &s[1..];
        }
    }
    out.push(quote as char);
    out
}

/// The first rune of `s` and its width, `None` where Go's
/// `utf8.DecodeRune` gives `RuneError` of width 1.
fn decode_rune(s: &[u8]) -> Option<(char, usize)> {
    let width = match s[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let prefix = s.get(..width)?;
    let c = std::str::from_utf8(prefix).ok()?.chars().next()?;
    Some((c, width))
}

fn push_hex_byte(out: &mut String, b: u8) {
    out.push_str("\\x");
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

fn escape_rune(out: &mut String, c: char, quote: u8, ascii_only: bool) {
    if c as u32 == u32::from(quote) || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    let printable = if ascii_only {
        c.is_ascii() && is_print(c)
    } else {
        is_print(c)
    };
    if printable {
        out.push(c);
        return;
    }
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if c < ' ' || c == '\x7f' => push_hex_byte(out, c as u8),
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Why `parse_float` failed; `Display` is Go's `*strconv.NumError` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strconv.ParseFloat: parsing {}: {}", quote(.input), if *.range { "value out of range" } else { "invalid syntax" })]
pub struct FloatError {
    pub input: String,
    /// Well-formed but beyond `f64` (Go also returns ±Inf then).
    pub range: bool,
}

/// Go's `strconv.ParseFloat(s, 64)`: Go's float literal syntax (decimal and
/// hexadecimal, `_` between digits), `inf`/`infinity`/`nan` in any case.
pub fn parse_float(s: &str) -> Result<f64, FloatError> {
    let syntax = || FloatError {
        input: s.to_string(),
        range: false,
    };
    if let Some(f) = special(s) {
        return Ok(f);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let neg = matches!(b.first(), Some(b'-'));
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let hex = i + 2 < b.len() && b[i] == b'0' && b[i + 1].eq_ignore_ascii_case(&b'x');
    if hex {
        i += 2;
    }
    let (mut underscores, mut sawdot, mut sawdigits) = (false, false, false);
    // Hex only: Go's mantissa (up to 16 digits), digit counts, dot position.
    let (mut mantissa, mut nd, mut nd_mant, mut dp, mut trunc) = (0u64, 0i64, 0i64, 0i64, false);
    while i < b.len() {
        let c = b[i];
        let digit = match c {
            b'_' => {
                underscores = true;
                i += 1;
                continue;
            }
            b'.' => {
                if sawdot {
                    break;
                }
                sawdot = true;
                dp = nd;
                i += 1;
                continue;
            }
            b'0'..=b'9' => u64::from(c - b'0'),
            b'a'..=b'f' | b'A'..=b'F' if hex => u64::from(c.to_ascii_lowercase() - b'a' + 10),
            _ => break,
        };
        sawdigits = true;
        i += 1;
        if digit == 0 && nd == 0 && c == b'0' {
            dp -= 1;
            continue;
        }
        nd += 1;
        if nd_mant < 16 {
            mantissa = mantissa * 16 + digit;
            nd_mant += 1;
        } else if c != b'0' {
            trunc = true;
        }
    }
    if !sawdigits {
        return Err(syntax());
    }
    if !sawdot {
        dp = nd;
    }
    if hex {
        dp *= 4;
        nd_mant *= 4;
    }
    let exp_char = if hex { b'p' } else { b'e' };
    if i < b.len() && b[i].to_ascii_lowercase() == exp_char {
        i += 1;
        let mut esign = 1i64;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            if b[i] == b'-' {
                esign = -1;
            }
            i += 1;
        }
        if i >= b.len() || !b[i].is_ascii_digit() {
            return Err(syntax());
        }
        let mut e = 0i64;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            if b[i] == b'_' {
                underscores = true;
            } else if e < 10_000 {
                e = e * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        dp += e * esign;
    } else if hex {
        return Err(syntax());
    }
    if i != b.len() || (underscores && !underscore_ok(s)) {
        return Err(syntax());
    }
    let f = if hex {
        let exp = if mantissa == 0 { 0 } else { dp - nd_mant };
        atof_hex(mantissa, exp, neg, trunc)
    } else {
        // The syntax is Go's, checked above; Rust's own parser rounds the
        // same decimal correctly.
        let clean: String = s.chars().filter(|c| *c != '_').collect();
        clean.parse::<f64>().map_err(|_| syntax())?
    };
    if f.is_infinite() {
        return Err(FloatError {
            input: s.to_string(),
            range: true,
        });
    }
    Ok(f)
}

/// `inf`, `infinity` (signed) and `nan`, case-insensitive, as the whole input.
fn special(s: &str) -> Option<f64> {
    let (sign, body) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => {
            if s.eq_ignore_ascii_case("nan") {
                return Some(f64::NAN);
            }
            (1.0, s)
        }
    };
    (body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity"))
        .then_some(sign * f64::INFINITY)
}

/// Go's rule: `_` only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some(b'+' | b'-') = b.first() {
        b = &b[1..];
    }
    let mut saw = b'^';
    let mut hex = false;
    let mut i = 0;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else if saw == b'_' {
            return false;
        } else {
            saw = b'!';
        }
    }
    saw != b'_'
}

/// `mantissa * 2^exp` rounded to nearest even, as Go's `atofHex` does it
/// (two guard bits and a sticky bit for truncated digits).
fn atof_hex(mut mantissa: u64, exp: i64, neg: bool, trunc: bool) -> f64 {
    const MANT_BITS: u32 = 52;
    const BIAS: i64 = -1023;
    const MAX_EXP: i64 = 1023;
    const MIN_EXP: i64 = -1022;
    let mut exp = exp + i64::from(MANT_BITS);
    while mantissa != 0 && mantissa >> (MANT_BITS + 2) == 0 {
        mantissa <<= 1;
        exp -= 1;
    }
    if trunc {
        mantissa |= 1;
    }
    while mantissa >> (1 + MANT_BITS + 2) != 0 {
        mantissa = (mantissa >> 1) | (mantissa & 1);
        exp += 1;
    }
    while mantissa > 1 && exp < MIN_EXP - 2 {
        mantissa = (mantissa >> 1) | (mantissa & 1);
        exp += 1;
    }
    let mut round = mantissa & 3;
    mantissa >>= 2;
    round |= mantissa & 1;
    exp += 2;
    if round == 3 {
        mantissa += 1;
        if mantissa == 1 << (1 + MANT_BITS) {
            mantissa >>= 1;
            exp += 1;
        }
    }
    if mantissa >> MANT_BITS == 0 {
        exp = BIAS;
    }
    let sign = if neg { -1.0 } else { 1.0 };
    if exp > MAX_EXP {
        return sign * f64::INFINITY;
    }
    let bits = (mantissa & ((1 << MANT_BITS) - 1)) | ((((exp - BIAS) & 0x7ff) as u64) << MANT_BITS);
    sign * f64::from_bits(bits)
}

/// Go's `%.{precision}g` (`strconv.FormatFloat(f, 'g', precision, 64)`):
/// `precision` significant digits, no trailing zeros, exponent form when
/// the exponent is below -4 or at least the precision.
pub fn format_g(f: f64, precision: usize) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let prec = precision.max(1);
    let neg = f.is_sign_negative();
    // Rust's `{:e}` rounds the exact binary value half to even, as Go does.
    let e = format!("{:.*e}", prec - 1, f.abs());
    let (mant, exp) = e.split_once('e').expect("{:e} has an exponent");
    let exp: i64 = exp.parse().expect("{:e} exponent is a number");
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits == b"0" {
        digits.clear();
    }
    let nd = digits.len() as i64;
    let dp = if nd == 0 { 0 } else { exp + 1 };
    let prec = prec as i64;
    let mut eprec = prec;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let x = dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let digit = |i: i64| -> char {
        if i >= 0 && i < nd {
            digits[i as usize] as char
        } else {
            '0'
        }
    };
    if x < -4 || x >= eprec {
        let p = prec.min(nd) - 1;
        out.push(digit(0));
        if p > 0 {
            out.push('.');
            for i in 1..=p {
                out.push(digit(i));
            }
        }
        let x = if nd == 0 { 0 } else { x };
        let _ = write!(out, "e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs());
    } else {
        let p = if prec > dp { nd } else { prec };
        let frac = (p - dp).max(0);
        if dp > 0 {
            for i in 0..dp {
                out.push(digit(i));
            }
        } else {
            out.push('0');
        }
        if frac > 0 {
            out.push('.');
            for i in 0..frac {
                out.push(digit(dp + i));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes() {
        assert_eq!(quote("a\u{0}\u{7f}\u{a0}♥"), "\"a\\x00\\x7f\\u00a0♥\"");
        assert_eq!(quote("\"\\\n"), "\"\\\"\\\\\\n\"");
        assert_eq!(quote_bytes(b"a\xffb"), "\"a\\xffb\"");
        assert_eq!(quote_to_ascii("☺\n"), "\"\\u263a\\n\"");
        assert_eq!(quote_rune('\''), "'\\''");
        assert_eq!(quote("\u{e0000}"), "\"\\U000e0000\"");
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float("1_000"), Ok(1000.0));
        assert_eq!(parse_float("0x1.8p1"), Ok(3.0));
        assert!(parse_float("1__0").is_err());
        assert!(parse_float("1e400").unwrap_err().range);
        assert_eq!(format_g(999.5, 3), "1e+03");
        assert_eq!(format_g(100.0, 3), "100");
        assert_eq!(format_g(0.000_012_34, 4), "1.234e-05");
        assert_eq!(format_g(0.0, 4), "0");
        assert_eq!(format_g(2.5, 1), "2");
    }
}
