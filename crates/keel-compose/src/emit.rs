//! YAML output the way `docker compose config` writes it (go-yaml v3 with
//! two-space indentation): sequences indented under their key, strings
//! quoted only where a plain scalar would read back as something else.

use std::fmt::Write as _;

use serde_yaml_ng::Value;

/// `docker compose config` doubles every `$` of its output, so that the
/// printed model reads back with the same values.
pub fn escape_dollars(s: &str) -> String {
    s.replace('$', "$$")
}

/// Renders `v` as a YAML document.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Mapping(m) if !m.is_empty() => mapping(m, 0, &mut out),
        Value::Sequence(s) if !s.is_empty() => sequence(s, 0, &mut out),
        other => {
            out.push_str(&inline(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => scalar_str(s, 0),
        other => inline(other, 0),
    }
}

fn mapping(m: &serde_yaml_ng::Mapping, indent: usize, out: &mut String) {
    for (k, v) in m {
        pad(indent, out);
        out.push_str(&key_text(k));
        out.push(':');
        value_after_key(v, indent, out);
    }
}

fn value_after_key(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            mapping(m, indent + 2, out);
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            sequence(s, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, indent + 2));
            out.push('\n');
        }
    }
}

fn sequence(s: &[Value], indent: usize, out: &mut String) {
    for item in s {
        pad(indent, out);
        out.push_str("- ");
        match item {
            Value::Mapping(m) if !m.is_empty() => {
                // The first key shares the dash's line.
                let mut first = true;
                for (k, v) in m {
                    if !first {
                        pad(indent + 2, out);
                    }
                    first = false;
                    out.push_str(&key_text(k));
                    out.push(':');
                    value_after_key(v, indent + 2, out);
                }
            }
            Value::Sequence(inner) if !inner.is_empty() => {
                out.push('\n');
                sequence(inner, indent + 2, out);
            }
            other => {
                out.push_str(&inline(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn inline(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_str(s, indent),
        Value::Sequence(_) => "[]".into(),
        Value::Mapping(_) => "{}".into(),
        Value::Tagged(t) => inline(&t.value, indent),
    }
}

/// Would a plain scalar with this text be read as something other than a string?
fn resolves_non_string(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "~" | "null"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".inf"
            | "-.inf"
            | "+.inf"
            | ".nan"
    ) {
        return true;
    }
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    if t.is_empty() {
        return false;
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && t.bytes().next().is_some_and(|b| b.is_ascii_digit())
    {
        return true;
    }
    if let Some(h) = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0o"))
        .or_else(|| t.strip_prefix("0b"))
    {
        return !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit());
    }
    s.parse::<f64>().is_ok() && s.bytes().any(|b| b.is_ascii_digit())
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || resolves_non_string(s) {
        return true;
    }
    let first = s.chars().next().unwrap();
    let last = s.chars().last().unwrap();
    if first.is_whitespace() || last.is_whitespace() {
        return true;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-` and `?`/`:` start plain scalars only when followed by a non-space.
        let second = s.chars().nth(1);
        let ok = matches!(first, '-' | '?' | ':') && second.is_some_and(|c| !c.is_whitespace());
        if !ok {
            return true;
        }
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return true;
    }
    s.chars().any(|c| c.is_control() || c == '\u{feff}')
}

fn scalar_str(s: &str, indent: usize) -> String {
    if s.contains('\n') && !s.chars().any(|c| c.is_control() && c != '\n') && !s.starts_with(' ') {
        // Literal block, as go-yaml writes multi-line strings.
        let chomp = if s.ends_with('\n') { "|" } else { "|-" };
        let body = s.strip_suffix('\n').unwrap_or(s);
        let mut out = String::from(chomp);
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&" ".repeat(indent));
                out.push_str(line);
            }
        }
        return out;
    }
    if !needs_quotes(s) {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_yaml_style() {
        let v: Value = serde_yaml_ng::from_str(
            "a:\n  b: [1, {x: '8080', y: 'true'}]\n  c: {}\n  d: []\n  e: ''\n  f: \"l1\\nl2\"\n  g: 'x: y'\n  h: -x\n",
        )
        .unwrap();
        assert_eq!(
            to_yaml(&v),
            "a:\n  b:\n    - 1\n    - x: \"8080\"\n      \"y\": \"true\"\n  c: {}\n  d: []\n  e: \"\"\n  f: |-\n    l1\n    l2\n  g: \"x: y\"\n  h: -x\n"
        );
        // What we print reads back as the same value.
        let back: Value = serde_yaml_ng::from_str(&to_yaml(&v)).unwrap();
        assert_eq!(back, v);
    }
}
