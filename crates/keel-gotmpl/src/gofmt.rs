//! Go's `fmt` and `strconv` formatting of [`Value`]s: `Sprint`, `Sprintln`,
//! `Sprintf` with verbs, flags, width and precision, and `strconv.Quote`.

use std::fmt::Write as _;

use crate::value::Value;

/// `fmt.Sprint(v)` for one value.
pub fn sprint_value(v: &Value) -> String {
    let mut s = String::new();
    fmt_value(&mut s, v, 'v', &Spec::default(), 0);
    s
}

/// `fmt.Sprint(args...)`: spaces between operands when neither is a string.
pub fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = matches!(a, Value::Str(_));
        if i > 0 && !is_str && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        fmt_value(&mut out, a, 'v', &Spec::default(), 0);
    }
    out
}

/// `fmt.Sprintln(args...)`: always spaces, then a newline.
pub fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        fmt_value(&mut out, a, 'v', &Spec::default(), 0);
    }
    out.push('\n');
    out
}

#[derive(Default, Clone, Debug)]
struct Spec {
    minus: bool,
    plus: bool,
    /// `%+v`: struct field names (Go's plusV).
    plus_v: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `fmt.Sprintf(format, args...)`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    let mut argi = 0;
    let mut reordered = false;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        // flags
        while i < chars.len() {
            match chars[i] {
                '-' => {
                    spec.minus = true;
                    spec.zero = false;
                }
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = !spec.minus,
                _ => break,
            }
            i += 1;
        }
        // argument index [n]
        let parse_index = |i: &mut usize, argi: &mut usize, reordered: &mut bool| -> bool {
            if *i < chars.len() && chars[*i] == '[' {
                *reordered = true;
                let mut j = *i + 1;
                let mut n = 0usize;
                let mut ok = false;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    n = n * 10 + (chars[j] as usize - '0' as usize);
                    j += 1;
                    ok = true;
                }
                if j < chars.len() && chars[j] == ']' && ok && n >= 1 {
                    *argi = n - 1;
                    *i = j + 1;
                    return true;
                }
                *i = j + usize::from(j < chars.len());
                return false;
            }
            true
        };
        let mut good_index = parse_index(&mut i, &mut argi, &mut reordered);
        // width
        if i < chars.len() && chars[i] == '*' {
            i += 1;
            match args.get(argi).and_then(Value::as_int) {
                Some(w) => {
                    if w < 0 {
                        spec.minus = true;
                        spec.zero = false;
                    }
                    spec.width = Some(w.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            argi += 1;
        } else {
            let mut w = None;
            while i < chars.len() && chars[i].is_ascii_digit() {
                w = Some(w.unwrap_or(0) * 10 + (chars[i] as usize - '0' as usize));
                i += 1;
            }
            spec.width = w;
        }
        // precision
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            if good_index {
                good_index = parse_index(&mut i, &mut argi, &mut reordered);
            }
            if i < chars.len() && chars[i] == '*' {
                i += 1;
                match args.get(argi).and_then(Value::as_int) {
                    Some(p) if p >= 0 => spec.prec = Some(p as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                argi += 1;
            } else {
                let mut p = 0;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    p = p * 10 + (chars[i] as usize - '0' as usize);
                    i += 1;
                }
                spec.prec = Some(p);
            }
        }
        if good_index {
            good_index = parse_index(&mut i, &mut argi, &mut reordered);
        }
        if i >= chars.len() {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = chars[i];
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        if !good_index {
            let _ = write!(out, "%!{verb}(BADINDEX)");
            continue;
        }
        let Some(arg) = args.get(argi) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argi += 1;
        if verb == 'v' && spec.plus {
            // %+v only changes structs; plain values print as %v.
            spec.plus = false;
            spec.plus_v = true;
        }
        if verb == 'v' && spec.sharp {
            spec.sharp = false;
            go_syntax(&mut out, arg);
            continue;
        }
        fmt_value(&mut out, arg, verb, &spec, 0);
    }
    if !reordered && argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[argi..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            if a.is_nil_like() {
                out.push_str("<nil>");
            } else {
                let _ = write!(out, "{}={}", a.type_name(), sprint_value(a));
            }
        }
        out.push(')');
    }
    out
}

fn pad(out: &mut String, s: &str, spec: &Spec) {
    let n = s.chars().count();
    let w = spec.width.unwrap_or(0);
    if n >= w {
        out.push_str(s);
        return;
    }
    let fill = w - n;
    if spec.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        let c = if spec.zero { '0' } else { ' ' };
        out.extend(std::iter::repeat_n(c, fill));
        out.push_str(s);
    }
}

fn bad_verb(out: &mut String, v: &Value, verb: char, spec: &Spec) {
    if v.is_nil_like() {
        let _ = write!(out, "%!{verb}(<nil>)");
    } else {
        // Go prints the operand with %v and the flags given for the bad verb.
        let _ = write!(out, "%!{verb}({}=", v.type_name());
        fmt_value(out, v, 'v', spec, 1);
        out.push(')');
    }
}

fn fmt_value(out: &mut String, v: &Value, verb: char, spec: &Spec, _depth: usize) {
    if verb == 'T' {
        let t = if v.is_nil_like() {
            "<nil>".to_string()
        } else {
            v.type_name()
        };
        pad(out, &t, spec);
        return;
    }
    match v {
        Value::Invalid | Value::Nil => {
            if verb == 'v' {
                pad(out, "<nil>", spec);
            } else {
                bad_verb(out, v, verb, spec);
            }
        }
        Value::Bool(b) => match verb {
            'v' | 't' => pad(out, if *b { "true" } else { "false" }, spec),
            _ => bad_verb(out, v, verb, spec),
        },
        Value::Int(i) | Value::Int64(i) => fmt_int(out, *i, verb, spec, v),
        Value::Float(f) => match verb {
            'v' => fmt_float(out, *f, 'g', None, spec),
            'e' | 'E' | 'f' | 'F' => fmt_float(out, *f, verb, Some(spec.prec.unwrap_or(6)), spec),
            'g' | 'G' => fmt_float(out, *f, verb, spec.prec, spec),
            'x' | 'X' | 'b' if !spec.sharp && spec.prec.is_none() && f.is_finite() => {
                let s = if verb == 'b' {
                    float_bin(*f)
                } else {
                    float_hex(*f, verb == 'X')
                };
                let s = if spec.plus && !s.starts_with('-') {
                    format!("+{s}")
                } else {
                    s
                };
                pad(
                    out,
                    &s,
                    &Spec {
                        zero: false,
                        ..spec.clone()
                    },
                );
            }
            _ => bad_verb(out, v, verb, spec),
        },
        Value::Str(s) => fmt_str(out, s, verb, spec, v),
        Value::List(l) => {
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_value(out, e, verb, spec, 0);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, e)) in m.borrow().iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_str(out, k, verb, spec, &Value::str(k));
                out.push(':');
                fmt_value(out, e, verb, spec, 0);
            }
            out.push(']');
        }
        Value::Object(o) => match verb {
            'v' if spec.plus_v && o.struct_fields().is_some() => {
                out.push('{');
                for (i, (k, e)) in o.struct_fields().unwrap_or_default().iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    fmt_value(out, e, verb, spec, 0);
                }
                out.push('}');
            }
            'v' | 's' => pad(out, &o.display(), spec),
            'q' => pad(out, &quote(&o.display()), spec),
            _ => bad_verb(out, v, verb, spec),
        },
    }
}

/// `%#v`: Go-syntax representation.
fn go_syntax(out: &mut String, v: &Value) {
    match v {
        Value::Invalid | Value::Nil => out.push_str("<nil>"),
        Value::Str(s) => out.push_str(&quote(s)),
        Value::Float(f) => out.push_str(&format_float(*f, 'g', None)),
        Value::List(l) => {
            out.push_str("[]interface {}{");
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                go_syntax(out, e);
            }
            out.push('}');
        }
        Value::Map(m) => {
            out.push_str("map[string]interface {}{");
            for (i, (k, e)) in m.borrow().iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&quote(k));
                out.push(':');
                go_syntax(out, e);
            }
            out.push('}');
        }
        v => out.push_str(&sprint_value(v)),
    }
}

fn fmt_str(out: &mut String, s: &str, verb: char, spec: &Spec, v: &Value) {
    let s: &str = match spec.prec {
        Some(p) if matches!(verb, 'v' | 's' | 'q' | 'x' | 'X') => match s.char_indices().nth(p) {
            Some((idx, _)) => &s[..idx],
            None => s,
        },
        _ => s,
    };
    match verb {
        'v' | 's' => pad(out, s, spec),
        'q' => {
            if spec.sharp && !s.contains('`') && s.chars().all(|c| c == '\t' || !c.is_control()) {
                pad(out, &format!("`{s}`"), spec);
            } else if spec.plus {
                pad(out, &quote_ascii(s), spec);
            } else {
                pad(out, &quote(s), spec);
            }
        }
        'x' | 'X' => {
            let mut h = String::new();
            for (i, b) in s.bytes().enumerate() {
                if spec.space && i > 0 {
                    h.push(' ');
                }
                if spec.sharp && (spec.space || i == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    let _ = write!(h, "{b:02x}");
                } else {
                    let _ = write!(h, "{b:02X}");
                }
            }
            pad(out, &h, spec);
        }
        _ => bad_verb(out, v, verb, spec),
    }
}

fn fmt_int(out: &mut String, i: i64, verb: char, spec: &Spec, v: &Value) {
    let (base, upper) = match verb {
        'v' | 'd' => (10, false),
        'b' => (2, false),
        'o' | 'O' => (8, false),
        'x' => (16, false),
        'X' => (16, true),
        'c' => {
            let c = char::from_u32(i as u32).unwrap_or('\u{FFFD}');
            pad(out, &c.to_string(), spec);
            return;
        }
        'q' => {
            let c = char::from_u32(i as u32).unwrap_or('\u{FFFD}');
            pad(out, &quote_rune(c), spec);
            return;
        }
        'U' => {
            let mut s = format!("U+{i:04X}");
            if spec.sharp
                && let Some(c) = char::from_u32(i as u32)
                && !c.is_control()
            {
                let _ = write!(s, " '{c}'");
            }
            pad(out, &s, spec);
            return;
        }
        _ => {
            bad_verb(out, v, verb, spec);
            return;
        }
    };
    let neg = i < 0;
    let mag = i.unsigned_abs();
    let mut digits = match base {
        2 => format!("{mag:b}"),
        8 => format!("{mag:o}"),
        16 if upper => format!("{mag:X}"),
        16 => format!("{mag:x}"),
        _ => mag.to_string(),
    };
    if let Some(p) = spec.prec {
        if p == 0 && mag == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    let mut prefix = String::new();
    if spec.sharp {
        match verb {
            'b' => prefix.push_str("0b"),
            'o' if !digits.starts_with('0') => {
                prefix.push('0');
            }
            'x' => prefix.push_str("0x"),
            'X' => prefix.push_str("0X"),
            _ => {}
        }
    }
    if verb == 'O' {
        prefix.push_str("0o");
    }
    let sign = if neg {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let body = format!("{prefix}{digits}");
    let w = spec.width.unwrap_or(0);
    if spec.zero && spec.prec.is_none() && !spec.minus && w > sign.len() + body.len() {
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', w - sign.len() - body.len()));
        out.push_str(&body);
    } else {
        let s = format!("{sign}{body}");
        let sp = Spec {
            zero: false,
            ..spec.clone()
        };
        pad(out, &s, &sp);
    }
}

fn fmt_float(out: &mut String, f: f64, verb: char, prec: Option<usize>, spec: &Spec) {
    let prec = spec.prec.or(prec);
    let mut num = format_float(f, verb, prec.map(|p| p as i64));
    if spec.sharp && !f.is_nan() && !f.is_infinite() {
        num = sharp_float(&num, verb, prec);
    }
    let (neg, mag) = match num.strip_prefix('-') {
        Some(m) => (true, m.to_string()),
        None => (false, num),
    };
    let sign = if neg {
        "-"
    } else if spec.plus || (f.is_infinite() && !spec.space) {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let w = spec.width.unwrap_or(0);
    let special = f.is_nan() || f.is_infinite();
    let sign = if f.is_nan() && !spec.plus && !spec.space {
        ""
    } else {
        sign
    };
    if spec.zero && !spec.minus && !special && w > sign.len() + mag.len() {
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', w - sign.len() - mag.len()));
        out.push_str(&mag);
    } else {
        let s = format!("{sign}{mag}");
        let sp = Spec {
            zero: false,
            ..spec.clone()
        };
        pad(out, &s, &sp);
    }
}

/// `strconv.FormatFloat(f, 'x', -1, 64)`: shortest hexadecimal mantissa.
fn float_hex(f: f64, upper: bool) -> String {
    let bits = f.to_bits();
    let neg = bits >> 63 == 1;
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1u64 << 52) - 1);
    let mut exp = exp_bits - 1023;
    if exp_bits == 0 {
        if mant == 0 {
            exp = 0;
        } else {
            // subnormal: normalize
            exp = -1022;
            while mant & (1u64 << 52) == 0 {
                mant <<= 1;
                exp -= 1;
            }
            mant &= (1u64 << 52) - 1;
        }
    }
    let lead = if exp_bits == 0 && bits & ((1u64 << 52) - 1) == 0 {
        '0'
    } else {
        '1'
    };
    let mut digits = format!("{mant:013x}");
    while digits.ends_with('0') {
        digits.pop();
    }
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push_str("0x");
    s.push(lead);
    if !digits.is_empty() {
        s.push('.');
        s.push_str(&digits);
    }
    s.push('p');
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.abs());
    if upper { s.to_uppercase() } else { s }
}

/// `strconv.FormatFloat(f, 'b', -1, 64)`: mantissa and binary exponent.
fn float_bin(f: f64) -> String {
    let bits = f.to_bits();
    let neg = bits >> 63 == 1;
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1u64 << 52) - 1);
    let exp = if exp_bits == 0 {
        -1074
    } else {
        mant |= 1u64 << 52;
        exp_bits - 1075
    };
    format!(
        "{}{mant}p{}{}",
        if neg { "-" } else { "" },
        if exp < 0 { "-" } else { "+" },
        exp.abs()
    )
}

/// `%#g`-style forced decimal point and trailing zeros.
fn sharp_float(num: &str, verb: char, prec: Option<usize>) -> String {
    let mut digits: i64 = match verb {
        'v' | 'g' | 'G' => prec.map_or(6, |p| p as i64),
        _ => 0,
    };
    let (body, tail) = match num.find(['e', 'E']) {
        Some(i) => (&num[..i], &num[i..]),
        None => (num, ""),
    };
    let mut body = body.to_string();
    let mut has_point = false;
    let mut saw_nonzero = false;
    for c in body.chars() {
        match c {
            '.' => has_point = true,
            '-' | '+' => {}
            _ => {
                if c != '0' {
                    saw_nonzero = true;
                }
                if saw_nonzero {
                    digits -= 1;
                }
            }
        }
    }
    if !has_point {
        if body.trim_start_matches('-') == "0" {
            digits -= 1;
        }
        body.push('.');
    }
    while digits > 0 {
        body.push('0');
        digits -= 1;
    }
    body.push_str(tail);
    body
}

/// Decimal digits of a float: `d` (no leading/trailing zeros), decimal point
/// position `dp` (value = 0.d × 10^dp).
struct Digits {
    d: Vec<u8>,
    dp: i64,
}

fn digits_from_sci(s: &str) -> Digits {
    // s like "1.2345e5" or "0e0"
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        return Digits { d, dp: 0 };
    }
    Digits { d, dp: exp + 1 }
}

/// `strconv.FormatFloat(f, fmt, prec, 64)`; `prec` None means shortest (-1).
pub fn format_float(f: f64, fmtc: char, prec: Option<i64>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = f.is_sign_negative();
    let a = f.abs();
    let lower = fmtc.to_ascii_lowercase();
    let upper = fmtc.is_ascii_uppercase();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    match prec {
        None => {
            let digs = digits_from_sci(&format!("{a:e}"));
            let nd = digs.d.len() as i64;
            match lower {
                'e' => fmt_e(&mut out, &digs, nd - 1, upper),
                'f' => fmt_f(&mut out, &digs, (nd - digs.dp).max(0)),
                _ => fmt_g(&mut out, &digs, nd, true, upper),
            }
        }
        Some(p) => match lower {
            'e' => {
                let digs = digits_from_sci(&format!("{a:.*e}", p as usize));
                fmt_e(&mut out, &digs, p, upper);
            }
            'f' => {
                let _ = write!(out, "{a:.*}", p as usize);
            }
            _ => {
                let p = p.max(1);
                let digs = digits_from_sci(&format!("{a:.*e}", (p - 1) as usize));
                fmt_g(&mut out, &digs, p, false, upper);
            }
        },
    }
    out
}

fn fmt_g(out: &mut String, digs: &Digits, mut prec: i64, shortest: bool, upper: bool) {
    let nd = digs.d.len() as i64;
    let mut eprec = prec;
    if eprec > nd && nd >= digs.dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = digs.dp - 1;
    if exp < -4 || exp >= eprec {
        if prec > nd {
            prec = nd;
        }
        fmt_e(out, digs, prec - 1, upper);
        return;
    }
    if prec > digs.dp {
        prec = nd;
    }
    fmt_f(out, digs, (prec - digs.dp).max(0));
}

fn fmt_e(out: &mut String, digs: &Digits, prec: i64, upper: bool) {
    let nd = digs.d.len() as i64;
    out.push(if nd == 0 { '0' } else { digs.d[0] as char });
    if prec > 0 {
        out.push('.');
        let mut i = 1;
        let m = nd.min(prec + 1);
        while i < m {
            out.push(digs.d[i as usize] as char);
            i += 1;
        }
        while i <= prec {
            out.push('0');
            i += 1;
        }
    }
    out.push(if upper { 'E' } else { 'e' });
    let mut exp = digs.dp - 1;
    if nd == 0 {
        exp = 0;
    }
    if exp < 0 {
        out.push('-');
        exp = -exp;
    } else {
        out.push('+');
    }
    if exp < 10 {
        out.push('0');
    }
    let _ = write!(out, "{exp}");
}

fn fmt_f(out: &mut String, digs: &Digits, prec: i64) {
    let nd = digs.d.len() as i64;
    if digs.dp > 0 {
        let m = nd.min(digs.dp);
        for k in 0..m {
            out.push(digs.d[k as usize] as char);
        }
        for _ in m..digs.dp {
            out.push('0');
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            let j = digs.dp + i - 1;
            let ch = if j >= 0 && j < nd {
                digs.d[j as usize] as char
            } else {
                '0'
            };
            out.push(ch);
        }
    }
}

/// `strconv.Quote`.
pub use keel_go::quote;
use keel_go::strconv::quote_rune;
/// `strconv.QuoteToASCII`.
pub use keel_go::strconv::quote_to_ascii as quote_ascii;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_go() {
        assert_eq!(format_float(1_000_000.0, 'g', None), "1e+06");
        assert_eq!(format_float(123_456.0, 'g', None), "123456");
        assert_eq!(format_float(0.000_01, 'g', None), "1e-05");
        assert_eq!(format_float(0.0001, 'g', None), "0.0001");
        assert_eq!(format_float(1.5, 'g', None), "1.5");
        assert_eq!(format_float(0.0, 'g', None), "0");
        assert_eq!(format_float(3.25, 'f', Some(2)), "3.25");
        assert_eq!(format_float(1234.5678, 'e', Some(3)), "1.235e+03");
        assert_eq!(format_float(1234.5678, 'g', Some(3)), "1.23e+03");
        assert_eq!(format_float(100.0, 'g', Some(3)), "100");
    }

    #[test]
    fn printf_verbs() {
        let v = |x: i64| Value::Int(x);
        assert_eq!(
            sprintf("%05d|%-4d|%+d|%x|%#o", &[v(42), v(7), v(3), v(255), v(8)]),
            "00042|7   |+3|ff|010"
        );
        assert_eq!(sprintf("%d %s", &[v(1)]), "1 %!s(MISSING)");
        assert_eq!(
            sprintf("%d", &[v(1), Value::str("a")]),
            "1%!(EXTRA string=a)"
        );
        assert_eq!(sprintf("%s", &[v(1)]), "%!s(int=1)");
        assert_eq!(sprintf("%q", &[Value::str("a\"b\n")]), "\"a\\\"b\\n\"");
        assert_eq!(
            sprintf("%6.2f|%v", &[Value::Float(3.333_33), Value::Nil]),
            "  3.33|<nil>"
        );
    }
}
