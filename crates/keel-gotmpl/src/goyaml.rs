//! Reading YAML the way Helm does: sigs.k8s.io/yaml's `Unmarshal`, i.e.
//! go-yaml v2 parses and resolves plain scalars by YAML 1.1 rules (`yes`/`on`
//! are booleans, `017` is octal, `1_000` is 1000, `<<` merges), then the
//! result makes a round trip through JSON, so every number becomes a
//! `float64` and map keys become strings. `serde_yaml_ng` resolves by YAML 1.2
//! and hides whether a scalar was quoted, so the events come from yaml-rust2
//! and the resolution is go-yaml's, written here.

use std::collections::BTreeMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::value::Value;

/// A YAML value after go-yaml v2's resolution (what `interface{}` holds
/// before sigs.k8s.io/yaml's JSON step).
#[derive(Clone, Debug, PartialEq)]
pub enum GoYaml {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<GoYaml>),
    /// Entries in document order; later duplicates win when converted.
    Map(Vec<(GoYaml, GoYaml)>),
}

/// go-yaml's node limit for nesting.
const MAX_DEPTH: usize = 10_000;

#[derive(Clone, Debug)]
enum Node {
    Scalar {
        value: String,
        plain: bool,
        tag: Option<String>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// An open collection: its anchor, its items, and how many nodes they hold.
enum Open {
    Seq(usize, Vec<Node>, usize),
    Map(usize, Vec<Node>, usize),
}

/// Nodes a document may expand to through aliases (a "billion laughs" file
/// is refused instead of filling memory, as go-yaml refuses excessive aliasing).
const MAX_NODES: usize = 1_000_000;

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// anchored nodes and their sizes in nodes
    anchors: BTreeMap<usize, (Node, usize)>,
    docs: Vec<Node>,
    err: Option<String>,
    total: usize,
}

fn tag_name(t: Option<Tag>) -> Option<String> {
    t.map(|t| {
        if t.handle == "!!" || t.handle == "tag:yaml.org,2002:" {
            format!("!!{}", t.suffix)
        } else {
            format!("{}{}", t.handle, t.suffix)
        }
    })
}

impl Builder {
    fn push(&mut self, n: Node, anchor: usize, size: usize) {
        self.total += size;
        if self.total > MAX_NODES {
            self.err = Some("document contains excessive aliasing".into());
            return;
        }
        if anchor > 0 {
            self.anchors.insert(anchor, (n.clone(), size));
        }
        match self.stack.last_mut() {
            Some(Open::Seq(_, v, s) | Open::Map(_, v, s)) => {
                v.push(n);
                *s += size;
            }
            None => self.docs.push(n),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, _mark: Marker) {
        if self.err.is_some() {
            return;
        }
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let n = Node::Scalar {
                    value,
                    plain: style == TScalarStyle::Plain,
                    tag: tag_name(tag),
                };
                self.push(n, anchor, 1);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                // refuse before copying: the copy is what would fill memory
                Some((_, size)) if self.total + size > MAX_NODES => {
                    self.err = Some("document contains excessive aliasing".into());
                }
                Some((n, size)) => {
                    let (n, size) = (n.clone(), *size);
                    self.push(n, 0, size);
                }
                None => self.err = Some("unknown anchor referenced".into()),
            },
            Event::SequenceStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.err = Some(format!("exceeded max depth of {MAX_DEPTH}"));
                    return;
                }
                self.stack.push(Open::Seq(anchor, Vec::new(), 0));
            }
            Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.err = Some(format!("exceeded max depth of {MAX_DEPTH}"));
                    return;
                }
                self.stack.push(Open::Map(anchor, Vec::new(), 0));
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq(anchor, items, size)) = self.stack.pop() {
                    // the items were counted as they came
                    self.total -= size;
                    self.push(Node::Seq(items), anchor, size + 1);
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(anchor, items, size)) = self.stack.pop() {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    self.total -= size;
                    self.push(Node::Map(pairs), anchor, size + 1);
                }
            }
            _ => {}
        }
    }
}

fn parse_nodes(text: &str) -> Result<Vec<Node>, String> {
    let mut b = Builder::default();
    let mut p = Parser::new_from_str(text);
    p.load(&mut b, true).map_err(|e| {
        // go-yaml: "yaml: line N: message" (1-based line)
        let m = e.marker();
        format!("yaml: line {}: {}", m.line().max(1), e.info())
    })?;
    if let Some(e) = b.err {
        return Err(format!("yaml: {e}"));
    }
    Ok(b.docs)
}

/// go-yaml v2's `resolve` for a plain (or `!!`-tagged) scalar.
fn resolve(value: &str, tag: Option<&str>) -> GoYaml {
    if tag == Some("!!null") {
        return GoYaml::Null;
    }
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return GoYaml::Null,
        "true" | "True" | "TRUE" | "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return GoYaml::Bool(true);
        }
        "false" | "False" | "FALSE" | "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return GoYaml::Bool(false);
        }
        ".nan" | ".NaN" | ".NAN" => return GoYaml::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return GoYaml::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return GoYaml::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = value.as_bytes()[0];
    if first == b'.' {
        if let Some(f) = go_parse_float(value) {
            return GoYaml::Float(f);
        }
    } else if first.is_ascii_digit() || first == b'+' || first == b'-' {
        let plain: String = value.chars().filter(|c| *c != '_').collect();
        if let Some(i) = go_parse_int(&plain) {
            return GoYaml::Int(i);
        }
        if let Some(u) = go_parse_uint(&plain) {
            return GoYaml::Uint(u);
        }
        if yaml_style_float(&plain)
            && let Some(f) = go_parse_float(&plain)
        {
            return GoYaml::Float(f);
        }
        if let Some(b) = plain.strip_prefix("-0b")
            && let Ok(u) = u64::from_str_radix(b, 2)
            && u <= 1 << 63
        {
            return GoYaml::Int((u as i64).wrapping_neg());
        }
    }
    GoYaml::Str(value.to_string())
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - st
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// `strconv.ParseInt(s, 0, 64)` (underscores already removed).
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let u = go_parse_uint(body)?;
    if neg {
        (u <= 1 << 63).then(|| (u as i64).wrapping_neg())
    } else {
        i64::try_from(u).ok()
    }
}

/// `strconv.ParseUint(s, 0, 64)`.
fn go_parse_uint(s: &str) -> Option<u64> {
    let (radix, digits) = if let Some(r) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (8, r)
    } else if let Some(r) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (2, r)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `strconv.ParseFloat(s, 64)` for the decimal forms go-yaml hands it.
fn go_parse_float(s: &str) -> Option<f64> {
    if !s
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    // Go reports out-of-range values as errors (go-yaml then keeps a string).
    f.is_finite().then_some(f)
}

fn resolve_node(n: &Node, depth: usize) -> Result<GoYaml, String> {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || match n {
        Node::Scalar { value, plain, tag } => Ok(match tag.as_deref() {
            // go-yaml resolves plain scalars and those with a core-schema tag;
            // quoted and custom-tagged ones stay strings
            None if *plain => resolve(value, None),
            Some(t @ ("!!bool" | "!!int" | "!!float" | "!!null" | "!!timestamp")) => {
                resolve(value, Some(t))
            }
            _ => GoYaml::Str(value.clone()),
        }),
        Node::Seq(items) => Ok(GoYaml::Seq(
            items
                .iter()
                .map(|x| resolve_node(x, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        Node::Map(pairs) => {
            let mut out = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                if matches!(k, Node::Scalar { value, plain: true, .. } if value == "<<") {
                    merge(v, &mut out, depth)?;
                    continue;
                }
                out.push((resolve_node(k, depth + 1)?, resolve_node(v, depth + 1)?));
            }
            Ok(GoYaml::Map(out))
        }
    })
}

/// go-yaml's `<<`: a map, or a list of maps where earlier ones win.
fn merge(v: &Node, out: &mut Vec<(GoYaml, GoYaml)>, depth: usize) -> Result<(), String> {
    match v {
        Node::Map(_) => {
            if let GoYaml::Map(m) = resolve_node(v, depth + 1)? {
                out.extend(m);
            }
            Ok(())
        }
        Node::Seq(items) => {
            for it in items.iter().rev() {
                if !matches!(it, Node::Map(_)) {
                    return Err(
                        "yaml: map merge requires map or sequence of maps as the value".into(),
                    );
                }
                merge(it, out, depth)?;
            }
            Ok(())
        }
        Node::Scalar { .. } => {
            Err("yaml: map merge requires map or sequence of maps as the value".into())
        }
    }
}

/// Parses every document of `text` with go-yaml v2's resolution.
pub fn parse_documents(text: &str) -> Result<Vec<GoYaml>, String> {
    parse_nodes(text)?
        .iter()
        .map(|n| resolve_node(n, 0))
        .collect()
}

/// Parses the first document (go-yaml's `Unmarshal`); an empty input is null.
pub fn parse(text: &str) -> Result<GoYaml, String> {
    Ok(parse_documents(text)?
        .into_iter()
        .next()
        .unwrap_or(GoYaml::Null))
}

/// sigs.k8s.io/yaml's JSON step into `interface{}`: numbers become float64,
/// map keys strings. Errors read like Helm's.
pub fn to_json_value(y: &GoYaml) -> Result<Value, String> {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
        Ok(match y {
            GoYaml::Null => Value::Nil,
            GoYaml::Bool(b) => Value::Bool(*b),
            GoYaml::Int(i) => Value::Float(*i as f64),
            GoYaml::Uint(u) => Value::Float(*u as f64),
            GoYaml::Float(f) => {
                if f.is_nan() {
                    return Err("json: unsupported value: NaN".into());
                }
                if f.is_infinite() {
                    let s = if *f > 0.0 { "+Inf" } else { "-Inf" };
                    return Err(format!("json: unsupported value: {s}"));
                }
                Value::Float(*f)
            }
            GoYaml::Str(s) => Value::str(s),
            GoYaml::Seq(items) => {
                Value::list(items.iter().map(to_json_value).collect::<Result<_, _>>()?)
            }
            GoYaml::Map(pairs) => {
                let mut m = BTreeMap::new();
                for (k, v) in pairs {
                    m.insert(key_string(k, v)?, to_json_value(v)?);
                }
                Value::map(m)
            }
        })
    })
}

/// sigs.k8s.io/yaml's conversion of a map key to a JSON object key.
fn key_string(k: &GoYaml, v: &GoYaml) -> Result<String, String> {
    Ok(match k {
        GoYaml::Str(s) => s.clone(),
        GoYaml::Int(i) => i.to_string(),
        GoYaml::Bool(b) => b.to_string(),
        GoYaml::Float(f) => float32_string(*f),
        _ => {
            let (ty, key) = match k {
                GoYaml::Null => ("%!s(<nil>)".to_string(), "<nil>".to_string()),
                GoYaml::Uint(u) => ("uint64".to_string(), format!("{u:#x}")),
                GoYaml::Seq(_) => (
                    "[]interface {}".to_string(),
                    "[]interface {}{...}".to_string(),
                ),
                _ => (
                    "map[interface {}]interface {}".to_string(),
                    "map[interface {}]interface {}{...}".to_string(),
                ),
            };
            return Err(format!(
                "unsupported map key of type: {ty}, key: {key}, value: {}",
                go_v(v)
            ));
        }
    })
}

/// `%v` of a resolved value, for error messages.
fn go_v(v: &GoYaml) -> String {
    match v {
        GoYaml::Null => "<nil>".into(),
        GoYaml::Bool(b) => b.to_string(),
        GoYaml::Int(i) => i.to_string(),
        GoYaml::Uint(u) => u.to_string(),
        GoYaml::Float(f) => crate::gofmt::format_float(*f, 'g', None),
        GoYaml::Str(s) => s.clone(),
        GoYaml::Seq(items) => format!("[{}]", items.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        GoYaml::Map(pairs) => format!(
            "map[{}]",
            pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", go_v(k), go_v(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// `strconv.FormatFloat(f, 'g', -1, 32)` with go-yaml's names for the
/// specials: how sigs.k8s.io/yaml writes a float where a string is wanted.
pub fn float32_string(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    let x = f as f32;
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` gives the shortest digits that round-trip as f32.
    let e = format!("{x:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    // Go's %g with shortest precision switches to exponent form below 1e-4
    // and from 1e6 up.
    if !(-4..6).contains(&exp) {
        let (d0, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{d0}{frac}e{es}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    if exp >= n - 1 {
        format!("{sign}{digits}{}", "0".repeat((exp - (n - 1)) as usize))
    } else if exp >= 0 {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{sign}{a}.{b}")
    } else {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    }
}

/// YAML text to a [`Value`] as Helm's `fromYaml` and values files see it
/// (first document only).
pub fn yaml_to_value(text: &str) -> Result<Value, String> {
    let y = parse(text).map_err(|e| format!("error converting YAML to JSON: {e}"))?;
    to_json_value(&y).map_err(|e| format!("error converting YAML to JSON: {e}"))
}

/// Helm's `LoadValues`: every document of a values file is a map (or
/// empty); later documents merge over earlier ones (`MergeMaps`).
pub fn load_values(text: &str) -> Result<BTreeMap<String, Value>, String> {
    let docs = parse_documents(text).map_err(|e| {
        format!("cannot unmarshal yaml document: error converting YAML to JSON: {e}")
    })?;
    let mut out = BTreeMap::new();
    for d in docs {
        let v = to_json_value(&d).map_err(|e| {
            format!("cannot unmarshal yaml document: error converting YAML to JSON: {e}")
        })?;
        match v {
            Value::Nil => {}
            Value::Map(m) => merge_maps(&mut out, &m.borrow()),
            other => {
                let kind = match other {
                    Value::Bool(_) => "bool",
                    Value::Float(_) => "number",
                    Value::List(_) => "array",
                    _ => "string",
                };
                return Err(format!(
                    "cannot unmarshal yaml document: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
                ));
            }
        }
    }
    Ok(out)
}

/// Helm's `MergeMaps`: `b` wins; maps on both sides merge recursively.
fn merge_maps(a: &mut BTreeMap<String, Value>, b: &BTreeMap<String, Value>) {
    for (k, v) in b {
        if let (Value::Map(bm), Some(Value::Map(am))) = (v, a.get(k)) {
            let mut merged = am.borrow().clone();
            merge_maps(&mut merged, &bm.borrow());
            a.insert(k.clone(), Value::map(merged));
            continue;
        }
        a.insert(k.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> GoYaml {
        parse(&format!("v: {s}\n")).map_or_else(
            |e| panic!("{s}: {e}"),
            |y| match y {
                GoYaml::Map(mut m) => m.remove(0).1,
                other => panic!("{other:?}"),
            },
        )
    }

    #[test]
    fn resolves_like_go_yaml_v2() {
        assert_eq!(r("yes"), GoYaml::Bool(true));
        assert_eq!(r("Off"), GoYaml::Bool(false));
        assert_eq!(r("\"yes\""), GoYaml::Str("yes".into()));
        assert_eq!(r("017"), GoYaml::Int(15));
        assert_eq!(r("0o17"), GoYaml::Int(15));
        assert_eq!(r("0x1F"), GoYaml::Int(31));
        assert_eq!(r("0b101"), GoYaml::Int(5));
        assert_eq!(r("-0b101"), GoYaml::Int(-5));
        assert_eq!(r("1_000"), GoYaml::Int(1000));
        assert_eq!(r("+5"), GoYaml::Int(5));
        assert_eq!(
            r("12345678901234567890"),
            GoYaml::Uint(12_345_678_901_234_567_890)
        );
        assert_eq!(r("1e3"), GoYaml::Float(1000.0));
        assert_eq!(r(".5"), GoYaml::Float(0.5));
        assert_eq!(r("1.10"), GoYaml::Float(1.1));
        assert_eq!(r("1.2.3"), GoYaml::Str("1.2.3".into()));
        assert_eq!(r("2024-01-02"), GoYaml::Str("2024-01-02".into()));
        assert_eq!(r("~"), GoYaml::Null);
        assert_eq!(r("!!str 12"), GoYaml::Str("12".into()));
        assert_eq!(r("'1'"), GoYaml::Str("1".into()));
        assert_eq!(r("1e400"), GoYaml::Str("1e400".into()));
    }

    #[test]
    fn merges_and_anchors() {
        let v = yaml_to_value("b: &x {p: 1, q: 2}\nc:\n  <<: *x\n  q: 3\n").unwrap();
        assert_eq!(
            crate::gofmt::sprint_value(&v),
            "map[b:map[p:1 q:2] c:map[p:1 q:3]]"
        );
    }

    #[test]
    fn json_step_makes_floats_and_string_keys() {
        let v = yaml_to_value("big: 1000000\n1.5: a\ntrue: b\n0x10: c\n").unwrap();
        assert_eq!(
            crate::gofmt::sprint_value(&v),
            "map[1.5:a 16:c big:1e+06 true:b]"
        );
        assert_eq!(
            yaml_to_value("a: .inf\n").unwrap_err(),
            "error converting YAML to JSON: json: unsupported value: +Inf"
        );
        assert_eq!(
            yaml_to_value("~: 1\n").unwrap_err(),
            "error converting YAML to JSON: unsupported map key of type: %!s(<nil>), key: <nil>, value: 1"
        );
    }

    #[test]
    fn values_documents_merge() {
        let m = load_values("a: 1\nb: {c: 1}\n---\n---\nb: {d: 2}\na: x\n").unwrap();
        assert_eq!(
            crate::gofmt::sprint_value(&Value::map(m)),
            "map[a:x b:map[c:1 d:2]]"
        );
        assert_eq!(
            load_values("- 1\n").unwrap_err(),
            "cannot unmarshal yaml document: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(
                &[
                    "a",
                    &i.to_string(),
                    ": &a",
                    &i.to_string(),
                    " [",
                    &refs,
                    "]\n",
                ]
                .concat(),
            );
        }
        assert_eq!(
            parse(&doc).unwrap_err(),
            "yaml: document contains excessive aliasing"
        );
    }

    #[test]
    fn float32_strings() {
        assert_eq!(float32_string(1.1), "1.1");
        assert_eq!(float32_string(1.0), "1");
        assert_eq!(float32_string(1000.0), "1000");
        assert_eq!(float32_string(0.1), "0.1");
        assert_eq!(float32_string(1.123_456_789), "1.1234568");
        assert_eq!(float32_string(1e-5), "1e-05");
        assert_eq!(float32_string(1e6), "1e+06");
        assert_eq!(float32_string(123_456.0), "123456");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = yaml_to_value(&s);
        }

        /// YAML-shaped input: anchors, aliases, merges, tags, flow and block forms.
        #[test]
        fn never_panics_on_yaml_shapes(s in "(a: |- |  |b|1|1.5|yes|0x1F|017|&x |\\*x|<<: |\\{|\\}|\\[|\\]|, |\n|'|\"|~|!!str |!!int |---\n|\\? ){0,40}") {
            let _ = load_values(&s);
            let _ = parse(&s);
        }
    }
}
