//! Expression values with GitHub's coercions: JavaScript number formatting and
//! parsing (the runner's TypeScript and C# implementations agree on these),
//! case-insensitive objects, loose equality and ordering.

use std::collections::HashMap;
use std::sync::Arc;

/// An object: keys keep their first spelling and insertion order; lookups
/// ignore ASCII and Unicode case, as GitHub's dictionaries do.
#[derive(Debug, Clone, Default)]
pub struct Object {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Object {
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds `key` unless a key equal ignoring case is already there (first wins).
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        let lower = key.to_lowercase();
        if self.index.contains_key(&lower) {
            return;
        }
        self.index.insert(lower, self.entries.len());
        self.entries.push((key, value));
    }
    /// Sets `key`, replacing an existing value (keeps its position).
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        let lower = key.to_lowercase();
        if let Some(&i) = self.index.get(&lower) {
            self.entries[i].1 = value;
        } else {
            self.index.insert(lower, self.entries.len());
            self.entries.push((key, value));
        }
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = if let Some(i) = self.index.get(key) {
            *i
        } else {
            *self.index.get(&key.to_lowercase())?
        };
        self.entries.get(i).map(|(_, v)| v)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.entries.iter().map(|(_, v)| v)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<(String, Value)> for Object {
    fn from_iter<T: IntoIterator<Item = (String, Value)>>(iter: T) -> Self {
        let mut o = Object::new();
        for (k, v) in iter {
            o.insert(k, v);
        }
        o
    }
}

/// One expression value. Arrays and objects are shared: equality of two of
/// them is identity, as in GitHub's evaluator.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// `filtered` marks the result of a `*` filter, which further property
    /// accesses map over instead of indexing.
    Array {
        items: Arc<Vec<Value>>,
        filtered: bool,
    },
    Object(Arc<Object>),
}

/// The kind names GitHub prints (`Object`, not `Dictionary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "Null",
            Kind::Boolean => "Boolean",
            Kind::Number => "Number",
            Kind::String => "String",
            Kind::Array => "Array",
            Kind::Object => "Object",
        }
    }
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
    pub fn array(items: Vec<Value>) -> Value {
        Value::Array {
            items: Arc::new(items),
            filtered: false,
        }
    }
    pub fn object(o: Object) -> Value {
        Value::Object(Arc::new(o))
    }
    pub fn kind(&self) -> Kind {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Boolean,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array { .. } => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }
    pub fn is_primitive(&self) -> bool {
        !matches!(self, Value::Array { .. } | Value::Object(_))
    }
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array { items, .. } => Some(items),
            _ => None,
        }
    }
    /// Property lookup for code that builds contexts (`None` when absent).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    /// GitHub's string coercion (`Array`/`Object` for containers).
    pub fn coerce_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(true) => "true".into(),
            Value::Bool(false) => "false".into(),
            Value::Number(n) => number_to_display(*n),
            Value::String(s) => s.clone(),
            Value::Array { .. } => "Array".into(),
            Value::Object(_) => "Object".into(),
        }
    }

    /// GitHub's number coercion (JavaScript's `Number(x)`).
    pub fn number(&self) -> f64 {
        match self {
            Value::Null | Value::Bool(false) => 0.0,
            Value::Bool(true) => 1.0,
            Value::Number(n) => *n,
            Value::String(s) => parse_js_number(s),
            Value::Array { .. } | Value::Object(_) => f64::NAN,
        }
    }

    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
            Value::Array { .. } | Value::Object(_) => true,
        }
    }

    /// `JSON.stringify(value, replacer, "  ")` (what `toJSON` returns).
    pub fn to_json_pretty(&self) -> String {
        let mut out = String::new();
        write_json(self, &mut out, Some(0));
        out
    }
    /// Compact JSON.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        write_json(self, &mut out, None);
        out
    }

    /// From a `serde_json` value (contexts built by the runner).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::array(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// To a `serde_json` value (numbers that are whole stay integers).
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => {
                if n.fract() == 0.0 && n.abs() < 9e15 {
                    serde_json::Value::from(*n as i64)
                } else {
                    serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into)
                }
            }
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array { items, .. } => items.iter().map(Value::to_serde).collect(),
            Value::Object(o) => serde_json::Value::Object(
                o.iter().map(|(k, v)| (k.clone(), v.to_serde())).collect(),
            ),
        }
    }
}

fn write_json(v: &Value, out: &mut String, indent: Option<usize>) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_finite() {
                out.push_str(&js_number_to_string(*n));
            } else {
                out.push_str("null");
            }
        }
        Value::String(s) => json_quote(s, out),
        Value::Array { items, .. } => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent.map(|d| d + 1));
                write_json(item, out, indent.map(|d| d + 1));
            }
            newline(out, indent);
            out.push(']');
        }
        Value::Object(o) => {
            if o.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent.map(|d| d + 1));
                json_quote(k, out);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_json(item, out, indent.map(|d| d + 1));
            }
            newline(out, indent);
            out.push('}');
        }
    }
}

fn newline(out: &mut String, indent: Option<usize>) {
    if let Some(d) = indent {
        out.push('\n');
        for _ in 0..d {
            out.push_str("  ");
        }
    }
}

/// JSON string quoting as `JSON.stringify` does it.
pub fn json_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = std::fmt::Write::write_fmt(out, format_args!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// JavaScript's `Number.prototype.toString()` (shortest round-trip digits,
/// exponent form outside 1e-7..1e21).
pub fn js_number_to_string(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    let sign = if n < 0.0 { "-" } else { "" };
    // `{:e}` prints Rust's shortest round-trip digits: "d.ddde±x".
    let e = format!("{:e}", n.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i32;
    let point = exp + 1;
    let body = if k <= point && point <= 21 {
        format!("{digits}{}", "0".repeat((point - k) as usize))
    } else if 0 < point && point <= 21 {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    } else if -6 < point && point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else {
        let e = point - 1;
        let es = if e >= 0 {
            format!("+{e}")
        } else {
            e.to_string()
        };
        if k == 1 {
            format!("{digits}e{es}")
        } else {
            format!("{}.{}e{es}", &digits[..1], &digits[1..])
        }
    };
    format!("{sign}{body}")
}

/// A number as GitHub's C# parser prints it (`double.ToString("G15")`,
/// invariant culture): 15 significant digits, plain notation for
/// exponents from -4 to 14, else `1.5E+18` / `1E-07` (two exponent digits
/// at least); `-0`, `NaN`, `Infinity`, `-Infinity`.
pub fn dotnet_g15(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // d.dddddddddddddde±x, correctly rounded to 15 significant digits.
    let sci = format!("{:.14e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if n < 0.0 { "-" } else { "" };
    let body = if (-4..15).contains(&exp) {
        let len = i32::try_from(digits.len()).unwrap_or(15);
        if exp < 0 {
            let zeros = usize::try_from(-exp - 1).unwrap_or(0);
            format!("0.{}{digits}", "0".repeat(zeros))
        } else if exp + 1 >= len {
            let zeros = usize::try_from(exp + 1 - len).unwrap_or(0);
            format!("{digits}{}", "0".repeat(zeros))
        } else {
            let point = usize::try_from(exp + 1).unwrap_or(1);
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    } else {
        let frac = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{}{frac}E{esign}{:02}", &digits[..1], exp.abs())
    };
    format!("{sign}{body}")
}

/// GitHub's number-to-string: at most 15 decimals, trailing zeros dropped
/// (`(+n.toFixed(15)).toString()`).
pub fn number_to_display(n: f64) -> String {
    if n == 0.0 {
        return "0".into();
    }
    if !n.is_finite() || n.abs() >= 1e21 {
        return js_number_to_string(n);
    }
    let fixed = format!("{n:.15}");
    js_number_to_string(fixed.parse::<f64>().unwrap_or(n))
}

fn is_js_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// JavaScript's `Number(string)`.
#[allow(clippy::many_single_char_names)]
pub fn parse_js_number(s: &str) -> f64 {
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return 0.0;
    }
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    let radix = |digits: &str, base: u32| -> f64 {
        if digits.is_empty() {
            return f64::NAN;
        }
        let mut v = 0.0f64;
        for c in digits.chars() {
            match c.to_digit(base) {
                Some(d) => v = v * f64::from(base) + f64::from(d),
                None => return f64::NAN,
            }
        }
        v
    };
    let lower = t.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0x") {
        return radix(h, 16);
    }
    if let Some(o) = lower.strip_prefix("0o") {
        return radix(o, 8);
    }
    if let Some(b) = lower.strip_prefix("0b") {
        return radix(b, 2);
    }
    // StrDecimalLiteral: [+-] (digits [. digits] | . digits) [e [+-] digits]
    let b = t.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        mantissa_digits += i - f;
    }
    if mantissa_digits == 0 {
        return f64::NAN;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return f64::NAN;
        }
    }
    if i != b.len() {
        return f64::NAN;
    }
    t.parse::<f64>().unwrap_or(f64::NAN)
}

/// Uppercase for comparisons, leaving the dotless i alone (GitHub's
/// `toUpperSpecial`, which mirrors .NET's ordinal-ignore-case).
pub fn upper_special(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == 'ı' {
            out.push(c);
        } else {
            out.extend(c.to_uppercase());
        }
    }
    out
}

/// JavaScript's abstract equality coercion, minus object-to-primitive.
fn coerce(l: &Value, r: &Value) -> (Value, Value) {
    if l.kind() == r.kind() {
        return (l.clone(), r.clone());
    }
    match (l, r) {
        (Value::Number(_), Value::String(_)) => return (l.clone(), Value::Number(r.number())),
        (Value::String(_), Value::Number(_)) => return (Value::Number(l.number()), r.clone()),
        (Value::Null | Value::Bool(_), _) => return coerce(&Value::Number(l.number()), r),
        _ => {}
    }
    if matches!(r, Value::Null | Value::Bool(_)) {
        return coerce(l, &Value::Number(r.number()));
    }
    (l.clone(), r.clone())
}

/// GitHub's `==`.
pub fn loose_eq(l: &Value, r: &Value) -> bool {
    let (l, r) = coerce(l, r);
    match (&l, &r) {
        (Value::Null, Value::Null) => true,
        (Value::Number(a), Value::Number(b)) => !a.is_nan() && !b.is_nan() && a == b,
        (Value::String(a), Value::String(b)) => upper_special(a) == upper_special(b),
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Array { items: a, .. }, Value::Array { items: b, .. }) => Arc::ptr_eq(a, b),
        (Value::Object(a), Value::Object(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// GitHub's `>` (`lt` swaps the operands).
pub fn greater(l: &Value, r: &Value) -> bool {
    let (l, r) = coerce(l, r);
    match (&l, &r) {
        (Value::Number(a), Value::Number(b)) => !a.is_nan() && !b.is_nan() && a > b,
        (Value::String(a), Value::String(b)) => {
            utf16_cmp(&upper_special(a), &upper_special(b)).is_gt()
        }
        (Value::Bool(a), Value::Bool(b)) => *a && !*b,
        _ => false,
    }
}

/// JavaScript compares strings by UTF-16 code units.
fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn js_numbers() {
        for (n, s) in [
            (1.0, "1"),
            (-1.5, "-1.5"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (123_456_789_012_345_680_000.0, "123456789012345680000"),
            (1e-7, "1e-7"),
            (0.000_001, "0.000001"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(js_number_to_string(n), s);
        }
        assert_eq!(number_to_display(0.1 + 0.2), "0.3");
        for (n, want) in [
            (1e15, "1E+15"),
            (1.5, "1.5"),
            (-0.0, "-0"),
            (0.0, "0"),
            (123_456.123_456, "123456.123456"),
            (1_587_106_672_383_762_400.0, "1.58710667238376E+18"),
            (f64::MAX, "1.79769313486232E+308"),
            (1.5e-7, "1.5E-07"),
            (0.0001, "0.0001"),
            (0.000_012_5, "1.25E-05"),
            (123_456_789_012_345.0, "123456789012345"),
            (-2.5, "-2.5"),
            (0.1 + 0.2, "0.3"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
            (5e-324, "4.94065645841247E-324"),
        ] {
            assert_eq!(dotnet_g15(n), want, "{n:e}");
        }
        assert_eq!(parse_js_number(" 0x1F "), 31.0);
        assert!(parse_js_number("1_0").is_nan());
        assert!(parse_js_number("inf").is_nan());
        assert_eq!(parse_js_number(".5"), 0.5);
        assert_eq!(parse_js_number("5."), 5.0);
        assert_eq!(parse_js_number(""), 0.0);
    }
}
