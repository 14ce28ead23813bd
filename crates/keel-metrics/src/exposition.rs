//! A parser of Prometheus' text exposition format (version 0.0.4), the
//! body of a `/metrics` scrape: `# HELP`/`# TYPE` lines, samples
//! `name{label="value",...} value [timestamp_ms]`. As Prometheus does, one
//! bad line fails the whole scrape, with `line:col` of the fault.
//!
//! Written by hand: the crates that parse this format build a whole client
//! registry around it (prometheus, prometheus-client); this needs only the
//! samples, and must never panic on what a target sends.

use crate::labels::{Labels, NAME};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the epoch, when the target gave one.
    pub timestamp: Option<i64>,
}

/// Where and why a body is not valid exposition text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Parses a whole scrape body.
pub fn parse(body: &[u8]) -> Result<Vec<Sample>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = memchr_count(before) + 1;
        let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        ParseError {
            line,
            col,
            message: "invalid UTF-8".into(),
        }
    })?;
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let mut c = Cursor {
            s: line,
            pos: 0,
            line: i + 1,
        };
        c.skip_blank();
        if c.rest().is_empty() {
            continue;
        }
        if c.rest().starts_with('#') {
            comment(&mut c)?;
            continue;
        }
        out.push(sample(&mut c)?);
    }
    Ok(out)
}

fn memchr_count(b: &[u8]) -> usize {
    b.split(|c| *c == b'\n').count() - 1
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }
    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            col: self.s[..self.pos].chars().count() + 1,
            message: message.into(),
        }
    }
    /// A run of characters `ok` accepts, the first also by `first`.
    fn ident(&mut self, first: fn(char) -> bool, ok: fn(char) -> bool) -> &'a str {
        let start = self.pos;
        if self.peek().is_some_and(first) {
            self.pos += 1;
            while self.peek().is_some_and(ok) {
                self.pos += 1;
            }
        }
        &self.s[start..self.pos]
    }
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|c| c != ' ' && c != '\t') {
            self.bump();
        }
        &self.s[start..self.pos]
    }
}

fn name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}
fn label_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `# HELP name text`, `# TYPE name type`, or any other comment.
fn comment(c: &mut Cursor) -> Result<(), ParseError> {
    c.bump();
    c.skip_blank();
    let kw = c.word();
    if kw != "HELP" && kw != "TYPE" {
        return Ok(());
    }
    let is_type = kw == "TYPE";
    c.skip_blank();
    if c.ident(name_start, name_char).is_empty() {
        return Err(c.err(format!("invalid metric name in # {kw} line")));
    }
    if is_type {
        c.skip_blank();
        let t = c.word();
        if !matches!(
            t,
            "counter" | "gauge" | "histogram" | "summary" | "untyped" | "unknown"
        ) {
            return Err(c.err(format!("unknown metric type {t:?}")));
        }
    }
    Ok(())
}

fn sample(c: &mut Cursor) -> Result<Sample, ParseError> {
    let name = c.ident(name_start, name_char).to_string();
    if name.is_empty() {
        return Err(c.err("expected a metric name"));
    }
    let mut pairs = vec![(NAME.to_string(), name)];
    c.skip_blank();
    if c.peek() == Some('{') {
        c.bump();
        loop {
            c.skip_blank();
            if c.peek() == Some('}') {
                c.bump();
                break;
            }
            let ln = c.ident(label_start, label_char).to_string();
            if ln.is_empty() {
                return Err(c.err("expected a label name or '}'"));
            }
            if pairs.iter().any(|(k, _)| *k == ln) {
                return Err(c.err(format!("duplicate label {ln:?}")));
            }
            c.skip_blank();
            if c.peek() != Some('=') {
                return Err(c.err(format!("expected '=' after label name {ln:?}")));
            }
            c.bump();
            c.skip_blank();
            if c.peek() != Some('"') {
                return Err(c.err("expected '\"' to start the label value"));
            }
            c.bump();
            pairs.push((ln, label_value(c)?));
            c.skip_blank();
            match c.peek() {
                Some(',') => {
                    c.bump();
                }
                Some('}') => {
                    c.bump();
                    break;
                }
                _ => return Err(c.err("expected ',' or '}' after a label value")),
            }
        }
    }
    c.skip_blank();
    let at = c.pos;
    let v = c.word();
    let value = parse_value(v).ok_or_else(|| {
        c.pos = at;
        c.err(format!("invalid sample value {v:?}"))
    })?;
    c.skip_blank();
    let mut timestamp = None;
    if !c.rest().is_empty() {
        let at = c.pos;
        let t = c.word();
        timestamp = Some(t.parse::<i64>().map_err(|_| {
            c.pos = at;
            c.err(format!("invalid timestamp {t:?}"))
        })?);
        c.skip_blank();
        if !c.rest().is_empty() {
            return Err(c.err("unexpected text after the timestamp"));
        }
    }
    Ok(Sample {
        labels: Labels::new(pairs),
        value,
        timestamp,
    })
}

/// The rest of a quoted label value (the opening quote is consumed); the
/// format's escapes are `\\`, `\"` and `\n`.
fn label_value(c: &mut Cursor) -> Result<String, ParseError> {
    let mut v = String::new();
    loop {
        match c.bump() {
            None => return Err(c.err("unterminated label value")),
            Some('"') => return Ok(v),
            Some('\\') => match c.bump() {
                Some('\\') => v.push('\\'),
                Some('"') => v.push('"'),
                Some('n') => v.push('\n'),
                Some(other) => {
                    // Point at the backslash.
                    c.pos -= 1 + other.len_utf8();
                    return Err(c.err(format!("invalid escape sequence \\{other}")));
                }
                None => return Err(c.err("unterminated label value")),
            },
            Some(ch) => v.push(ch),
        }
    }
}

/// A value as Go's `strconv.ParseFloat` reads the format's: decimals,
/// exponents, `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_comments_and_odd_spacing() {
        let body = b"# HELP http_requests_total The total.\n\
            # TYPE http_requests_total counter\n\
            http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
            \n   # a comment\n\
            http_requests_total{ method = \"get\" , code=\"400\", }\t3\r\n\
            msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
            metric_without_labels +Inf\n\
            nan_metric NaN -5\n\
            empty{} -Inf";
        let s = parse(body).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].labels.value("code"), "200");
        assert_eq!(s[0].timestamp, Some(1_395_066_363_000));
        assert_eq!(s[1].labels.value("method"), "get");
        assert_eq!(s[1].value, 3.0);
        assert_eq!(s[2].labels.value("path"), "C:\\DIR\\FILE.TXT");
        assert_eq!(
            s[2].labels.value("error"),
            "Cannot find file:\n\"FILE.TXT\""
        );
        assert_eq!(s[2].value, 1_458_255_915.0);
        assert_eq!(s[3].value, f64::INFINITY);
        assert!(s[4].value.is_nan());
        assert_eq!(s[4].timestamp, Some(-5));
        assert_eq!(s[5].value, f64::NEG_INFINITY);
        assert_eq!(s[5].labels.len(), 1);
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"ok 1\nbad{a=\"b\" 1",
                "2:11: expected ',' or '}' after a label value",
            ),
            (b"x{a=\"b\\q\"} 1", "1:7: invalid escape sequence \\q"),
            (b"x 1 2 3", "1:7: unexpected text after the timestamp"),
            (b"x one", "1:3: invalid sample value \"one\""),
            (b"x 1 1.5", "1:5: invalid timestamp \"1.5\""),
            (b"x{a=\"1\",a=\"2\"} 1", "1:10: duplicate label \"a\""),
            (b"{a=\"1\"} 1", "1:1: expected a metric name"),
            (b"# TYPE x countr", "1:16: unknown metric type \"countr\""),
            (b"x{a=\"unterminated", "1:18: unterminated label value"),
            (b"x 1\n\xff 2", "2:1: invalid UTF-8"),
            (b"x", "1:2: invalid sample value \"\""),
        ];
        for (body, want) in cases {
            let got = parse(body).unwrap_err().to_string();
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(body));
        }
    }
}
