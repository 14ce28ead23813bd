//! A YAML emitter that reproduces `sigs.k8s.io/yaml.Marshal` (JSON round trip,
//! then go-yaml v2's emitter): sorted keys in go-yaml's natural order, its
//! scalar style rules (plain, single, double, literal) and line folding at 80
//! columns, block sequences not indented under their key.

use std::fmt::Write as _;

use crate::value::Value;

/// A value after the JSON round trip: what go-yaml sees.
#[derive(Debug, Clone)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    /// go-yaml reads integers between 2^63 and 2^64 as uint64.
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// `sigs.k8s.io/yaml.Marshal(v)` (with the trailing newline).
pub fn marshal(v: &Value) -> String {
    let n = normalize(v);
    let mut e = Emitter {
        out: String::new(),
        column: 0,
    };
    match &n {
        Node::Map(m) if !m.is_empty() => e.block_map(m, 0, false),
        Node::Seq(s) if !s.is_empty() => e.block_seq(s, 0, false),
        other => {
            // go-yaml indents a root scalar's continuation lines by best_indent
            e.scalar_or_flow(other, 2, false);
            e.newline();
        }
    }
    e.out
}

/// JSON round trip: floats that are integral and below 1e21 become ints
/// (encoding/json prints them without a fraction; go-yaml reads them as ints).
fn normalize(v: &Value) -> Node {
    match v {
        Value::Invalid | Value::Nil => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Int(i) | Value::Int64(i) => Node::Int(*i),
        Value::Float(f) => {
            if f.is_nan() || f.is_infinite() {
                return Node::Null;
            }
            if f.fract() == 0.0 && f.abs() < 1e21 {
                // encoding/json writes the shortest digits ('f' format);
                // go-yaml reads that text back as an int, a uint64 or a float
                let text = crate::gofmt::format_float(*f, 'f', None);
                if let Ok(i) = text.parse::<i64>() {
                    return Node::Int(i);
                }
                if let Ok(u) = text.parse::<u64>() {
                    return Node::Uint(u);
                }
                return Node::Float(*f);
            }
            Node::Float(*f)
        }
        Value::Str(s) => Node::Str(s.to_string()),
        Value::List(l) => Node::Seq(l.iter().map(normalize).collect()),
        Value::Map(m) => {
            let mut entries: Vec<(String, Node)> = m
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect();
            entries.sort_by(|a, b| {
                if key_less(&a.0, &b.0) {
                    std::cmp::Ordering::Less
                } else if key_less(&b.0, &a.0) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            });
            Node::Map(entries)
        }
        Value::Object(o) => match o.struct_fields() {
            Some(f) => normalize(&Value::map(f.into_iter().collect())),
            None => Node::Str(o.display()),
        },
    }
}

/// go-yaml v2's `keyList.Less` for string keys (digit runs compare numerically).
pub fn key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 {
                j -= 1;
                if !ar[j].is_ascii_digit() {
                    break;
                }
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .wrapping_mul(10)
                .wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .wrapping_mul(10)
                .wrapping_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Analysis {
    multiline: bool,
    block_plain: bool,
    single: bool,
    block: bool,
}

fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}
fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain: true,
            single: true,
            block: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let (mut block_ind, mut line_breaks, mut special) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_ind = true;
    }
    let mut preceded_ws = true;
    let n = chars.len();
    for i in 0..n {
        let c = chars[i];
        let followed_ws = i + 1 >= n || is_blank(chars[i + 1]) || is_break(chars[i + 1]);
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_ind = true,
                '?' | ':' | '-' if followed_ws => {
                    block_ind = true;
                }
                _ => {}
            }
        } else {
            match c {
                ':' if followed_ws => {
                    block_ind = true;
                }
                '#' if preceded_ws => {
                    block_ind = true;
                }
                _ => {}
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == n - 1 {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i == n - 1 {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = is_blank(c) || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain: true,
        single: true,
        block: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain = false;
    }
    if trailing_space {
        a.block = false;
    }
    if break_space {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special {
        a.block_plain = false;
        a.single = false;
        a.block = false;
    }
    if line_breaks {
        a.block_plain = false;
    }
    if block_ind {
        a.block_plain = false;
    }
    a
}

/// go-yaml v2's `resolve`: would this plain text read back as something other than a string?
fn resolves_non_string(s: &str) -> bool {
    match s {
        "" | "~" | "null" | "Null" | "NULL" | "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N"
        | "no" | "No" | "NO" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE" | "on"
        | "On" | "ON" | "off" | "Off" | "OFF" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf"
        | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN" | "<<" => return true,
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return false;
    }
    let plain = s.replace('_', "");
    if go_parse_int0(&plain) {
        return true;
    }
    if is_yaml_float(&plain) {
        return true;
    }
    if let Some(rest) = plain.strip_prefix("0b")
        && !rest.is_empty()
        && rest.bytes().all(|b| b == b'0' || b == b'1')
    {
        return true;
    }
    if let Some(rest) = plain.strip_prefix("-0b")
        && !rest.is_empty()
        && rest.bytes().all(|b| b == b'0' || b == b'1')
    {
        return true;
    }
    is_timestamp(s)
}

fn go_parse_int0(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() {
        return false;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, d) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    !d.is_empty() && u64::from_str_radix(d, radix).is_ok_and(|u| u <= 1u64 << 63)
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - st
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// go-yaml v2's `parseTimestamp`: `2006-1-2`, `2006-1-2T15:4:5.999999999Z07:00`
/// (also with `t`) and `2006-1-2 15:4:5.999999999`, as Go's `time.Parse`
/// reads those layouts (one- or two-digit fields, ranges checked).
fn is_timestamp(s: &str) -> bool {
    fn num(s: &str, i: &mut usize, min: usize, max: usize) -> Option<u32> {
        let b = s.as_bytes();
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - st < max {
            *i += 1;
        }
        if *i - st < min {
            return None;
        }
        s[st..*i].parse().ok()
    }
    let b = s.as_bytes();
    let mut i = 0;
    let Some(year) = num(s, &mut i, 4, 4) else {
        return false;
    };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(month) = num(s, &mut i, 1, 2) else {
        return false;
    };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(day) = num(s, &mut i, 1, 2) else {
        return false;
    };
    if day < 1 || day > crate::sprig::days_in_month(i64::from(year), month) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let zoned = match b[i] {
        b'T' | b't' => true,
        b' ' => false,
        _ => return false,
    };
    i += 1;
    let (Some(h), true) = (num(s, &mut i, 1, 2), b.get(i) == Some(&b':')) else {
        return false;
    };
    i += 1;
    let (Some(m), true) = (num(s, &mut i, 1, 2), b.get(i) == Some(&b':')) else {
        return false;
    };
    i += 1;
    let Some(sec) = num(s, &mut i, 1, 2) else {
        return false;
    };
    if h > 23 || m > 59 || sec > 59 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        let st = i + 1;
        i = st;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == st {
            return false;
        }
    }
    if !zoned {
        return i == b.len();
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let z = &s[i + 1..];
            z.len() == 5
                && z.as_bytes()[2] == b':'
                && z[..2].parse::<u32>().is_ok_and(|h| h < 24)
                && z[3..].parse::<u32>().is_ok_and(|m| m < 60)
        }
        _ => false,
    }
}

fn is_base60_float(s: &str) -> bool {
    // ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() && i - st < 2 {
            i += 1;
        }
        let g = &s[st..i];
        if g.is_empty() || (g.len() == 2 && g.as_bytes()[0] > b'5') {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

const BEST_WIDTH: usize = 80;

struct Emitter {
    out: String,
    column: usize,
}

impl Emitter {
    fn write(&mut self, s: &str) {
        for c in s.chars() {
            if c == '\n' {
                self.column = 0;
            } else {
                self.column += 1;
            }
        }
        self.out.push_str(s);
    }
    fn newline(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }
    fn indent_to(&mut self, n: usize) {
        self.newline();
        for _ in 0..n {
            self.out.push(' ');
        }
        self.column = n;
    }

    fn block_map(&mut self, m: &[(String, Node)], indent: usize, inline_first: bool) {
        for (i, (k, v)) in m.iter().enumerate() {
            if i > 0 || !inline_first {
                if !self.out.is_empty() && !self.out.ends_with('\n') {
                    self.newline();
                }
                for _ in 0..indent {
                    self.out.push(' ');
                }
                self.column = indent;
            }
            self.string_scalar(k, indent, true);
            self.write(":");
            match v {
                Node::Map(mm) if !mm.is_empty() => {
                    self.newline();
                    self.block_map(mm, indent + 2, false);
                }
                Node::Seq(ss) if !ss.is_empty() => {
                    self.newline();
                    self.block_seq(ss, indent, false);
                }
                other => {
                    self.write(" ");
                    self.scalar_or_flow(other, indent + 2, false);
                    self.newline();
                }
            }
        }
    }

    fn block_seq(&mut self, s: &[Node], indent: usize, inline_first: bool) {
        for (i, v) in s.iter().enumerate() {
            if i > 0 || !inline_first {
                if !self.out.is_empty() && !self.out.ends_with('\n') {
                    self.newline();
                }
                for _ in 0..indent {
                    self.out.push(' ');
                }
                self.column = indent;
            }
            self.write("- ");
            match v {
                Node::Map(mm) if !mm.is_empty() => self.block_map(mm, indent + 2, true),
                Node::Seq(ss) if !ss.is_empty() => self.block_seq(ss, indent + 2, true),
                other => {
                    self.scalar_or_flow(other, indent + 2, false);
                    self.newline();
                }
            }
        }
    }

    fn scalar_or_flow(&mut self, n: &Node, indent: usize, key: bool) {
        match n {
            Node::Null => self.write("null"),
            Node::Bool(b) => self.write(if *b { "true" } else { "false" }),
            Node::Int(i) => self.write(&i.to_string()),
            Node::Uint(u) => self.write(&u.to_string()),
            Node::Float(f) => {
                let s = if f.is_nan() {
                    ".nan".to_string()
                } else if f.is_infinite() {
                    if *f > 0.0 {
                        ".inf".into()
                    } else {
                        "-.inf".into()
                    }
                } else {
                    crate::gofmt::format_float(*f, 'g', None)
                };
                self.write(&s);
            }
            Node::Str(s) => self.string_scalar(s, indent, key),
            Node::Map(_) => self.write("{}"),
            Node::Seq(_) => self.write("[]"),
        }
    }

    fn string_scalar(&mut self, s: &str, indent: usize, key: bool) {
        let can_plain = !resolves_non_string(s) && !is_base60_float(s);
        let mut style = if s.contains('\n') {
            Style::Literal
        } else if can_plain {
            Style::Plain
        } else {
            Style::Double
        };
        let a = analyze(s);
        if style == Style::Plain && (!a.block_plain || (s.is_empty() && key)) {
            style = Style::Single;
        }
        if style == Style::Single && !a.single {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block || key) {
            style = Style::Double;
        }
        let _ = a.multiline;
        let allow_breaks = !key;
        match style {
            Style::Plain => self.write_plain(s, indent, allow_breaks),
            Style::Single => self.write_single(s, indent, allow_breaks),
            Style::Double => self.write_double(s, indent, allow_breaks),
            Style::Literal => self.write_literal(s, indent),
        }
    }

    fn write_plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for i in 0..chars.len() {
            let c = chars[i];
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.indent_to(indent);
                } else {
                    self.write(" ");
                }
                spaces = true;
            } else {
                let mut b = [0u8; 4];
                self.write(c.encode_utf8(&mut b));
                spaces = false;
            }
        }
    }

    fn write_single(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write("'");
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut breaks = false;
        let n = chars.len();
        for i in 0..n {
            let c = chars[i];
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i != 0
                    && i != n - 1
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.indent_to(indent);
                } else {
                    self.write(" ");
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.newline();
                }
                self.newline();
                breaks = true;
            } else {
                if breaks {
                    for _ in 0..indent {
                        self.out.push(' ');
                    }
                    self.column = indent;
                }
                if c == '\'' {
                    self.write("''");
                } else {
                    let mut b = [0u8; 4];
                    self.write(c.encode_utf8(&mut b));
                }
                spaces = false;
                breaks = false;
            }
        }
        self.write("'");
    }

    fn write_double(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write("\"");
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        let mut spaces = false;
        for i in 0..n {
            let c = chars[i];
            if !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                let esc = match c {
                    '\0' => "\\0".to_string(),
                    '\x07' => "\\a".into(),
                    '\x08' => "\\b".into(),
                    '\t' => "\\t".into(),
                    '\n' => "\\n".into(),
                    '\x0b' => "\\v".into(),
                    '\x0c' => "\\f".into(),
                    '\r' => "\\r".into(),
                    '\x1b' => "\\e".into(),
                    '"' => "\\\"".into(),
                    '\\' => "\\\\".into(),
                    '\u{85}' => "\\N".into(),
                    '\u{A0}' => "\\_".into(),
                    '\u{2028}' => "\\L".into(),
                    '\u{2029}' => "\\P".into(),
                    c if (c as u32) <= 0xFF => format!("\\x{:02X}", c as u32),
                    c if (c as u32) <= 0xFFFF => format!("\\u{:04X}", c as u32),
                    c => format!("\\U{:08X}", c as u32),
                };
                self.write(&esc);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i != 0 && i != n - 1 {
                    self.indent_to(indent);
                    if chars.get(i + 1) == Some(&' ') {
                        self.write("\\");
                    }
                } else {
                    self.write(" ");
                }
                spaces = true;
            } else {
                let mut b = [0u8; 4];
                self.write(c.encode_utf8(&mut b));
                spaces = false;
            }
        }
        self.write("\"");
    }

    fn write_literal(&mut self, s: &str, indent: usize) {
        let mut hint = String::from("|");
        if s.starts_with(' ') || s.starts_with(is_break) {
            hint.push('2');
        }
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        if n == 0 || !is_break(chars[n - 1]) {
            hint.push('-');
        } else if n == 1 || is_break(chars[n - 2]) {
            hint.push('+');
        }
        self.write(&hint);
        let mut breaks = true;
        self.newline();
        for c in chars {
            if is_break(c) {
                self.newline();
                breaks = true;
            } else {
                if breaks {
                    for _ in 0..indent {
                        self.out.push(' ');
                    }
                    self.column = indent;
                    breaks = false;
                }
                let mut b = [0u8; 4];
                self.write(c.encode_utf8(&mut b));
            }
        }
        // the caller adds the final line break; a literal ending in a break already has it
        if self.out.ends_with('\n') {
            self.out.pop();
            self.column = 1;
        }
    }
}

/// Go's `encoding/json` string escaping (HTML-safe unless `raw`).
pub fn json_string(out: &mut String, s: &str, raw: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if !raw => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `json.Marshal` / `json.MarshalIndent(v, "", indent)`; `None` on NaN/Inf.
pub fn to_json(v: &Value, indent: Option<&str>, raw: bool) -> Option<String> {
    let mut out = String::new();
    json_value(&mut out, v, indent, 0, raw)?;
    Some(out)
}

fn json_value(
    out: &mut String,
    v: &Value,
    indent: Option<&str>,
    depth: usize,
    raw: bool,
) -> Option<()> {
    let nl = |out: &mut String, d: usize| {
        if let Some(ind) = indent {
            out.push('\n');
            for _ in 0..d {
                out.push_str(ind);
            }
        }
    };
    match v {
        Value::Invalid | Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => {
            if f.is_nan() || f.is_infinite() {
                return None;
            }
            let a = f.abs();
            if a != 0.0 && !(1e-6..1e21).contains(&a) {
                let mut s = crate::gofmt::format_float(*f, 'e', None);
                // clean up e-09 to e-9
                let n = s.len();
                if n >= 4 && &s[n - 4..n - 2] == "e-" && s.as_bytes()[n - 2] == b'0' {
                    s.remove(n - 2);
                }
                out.push_str(&s);
            } else {
                out.push_str(&crate::gofmt::format_float(*f, 'f', None));
            }
        }
        Value::Str(s) => json_string(out, s, raw),
        Value::List(l) => {
            if l.is_empty() {
                out.push_str("[]");
                return Some(());
            }
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                json_value(out, e, indent, depth + 1, raw)?;
            }
            nl(out, depth);
            out.push(']');
        }
        Value::Map(m) => {
            let m = m.borrow();
            if m.is_empty() {
                out.push_str("{}");
                return Some(());
            }
            out.push('{');
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                json_string(out, k, raw);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                json_value(out, e, indent, depth + 1, raw)?;
            }
            nl(out, depth);
            out.push('}');
        }
        // Go marshals structs in field order; keel's structs declare theirs sorted.
        Value::Object(o) => match o.struct_fields() {
            Some(f) => json_value(
                out,
                &Value::map(f.into_iter().collect()),
                indent,
                depth,
                raw,
            )?,
            None => json_string(out, &o.display(), raw),
        },
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn emits_like_go_yaml() {
        let mut m = BTreeMap::new();
        m.insert(
            "b".to_string(),
            Value::list(vec![Value::Int64(1), Value::str("x: y")]),
        );
        m.insert("a".to_string(), Value::str("true"));
        m.insert("c".to_string(), Value::str("line1\nline2"));
        assert_eq!(
            marshal(&Value::map(m)),
            "a: \"true\"\nb:\n- 1\n- 'x: y'\nc: |-\n  line1\n  line2\n"
        );
        assert!(key_less("a2", "a10"));
    }
}
